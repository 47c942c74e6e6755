"""Load on loopback, CI-sized: bench/load.py (the same code as the full benchmark) with 20
concurrent 2 MB uploads, 20 signed Slack commands and 20 job reads while 50 jobs are polled.
The full run (100 x 10 MB, 50 commands, 200 jobs) is `python bench/load.py`; its figures are in
docs/reliability.md. This version is smaller only to keep the directory inside CI's time.

It runs on both databases. On SQLite (one write lock for the whole database) it used to fail
with 503 on job creates: the outbox sender held the write lock across a worker-thread hop that
queued behind poll writers waiting for that lock, and each poll held it through its health
analysis; neither does now (tests/storage/test_write_lock_across_threads.py,
tests/health/test_poll_write_lock.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ACK_DEADLINE_MS = 3000  # Slack's


def test_concurrent_uploads_and_slack_commands_while_jobs_poll(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--uploads", "20", "--upload-mb", "2",
         "--commands", "20", "--jobs", "50", "--database-url", database_url, "--json"],
        capture_output=True, text=True, timeout=280, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: result[k] for k in ("upload", "slack", "read", "api", "rss_idle_mb",
                                             "rss_peak_mb", "wall_s")}))
    assert result["failures"] == [], result.get("serve_log_tail")
    assert result["upload"]["n"] == 20 and result["slack"]["n"] == 20
    assert result["failed_jobs"] == 0 and result["polls_progressed"] and result["alive"], {
        k: result[k] for k in ("failed_jobs", "polls_progressed", "alive")}
    assert result["rss_peak_mb"] < result["rss_idle_mb"] + 300, "RSS grew with the load"
    # Slack's 3 s ack deadline is reported, not asserted: on a shared 2-core runner the
    # upload burst pushes acks past it (see docs/reliability.md, "Load").
    print(f"slowest Slack ack {result['slack']['max_ms']} ms (deadline {ACK_DEADLINE_MS} ms)")
