"""SQLite stays single-process: a second `serve` on the same file refuses to start its
scheduler, and a SIGKILLed first one leaves no stale lock behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.serve_process import ServeProcess

START_S = 120  # imports alone take seconds on a busy 2-core runner

pytestmark = pytest.mark.slow


def _second_serve(first: ServeProcess, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    second = ServeProcess(first.data_dir, first.env["TUNEBRIDGE_DATABASE_URL"])
    return subprocess.run(
        [sys.executable, "-m", "tunebridge.cli", "serve", "--port", str(second.port)],
        env=second.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_second_scheduler_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "var" / "tunebridge.db"
    first = ServeProcess(tmp_path / "var", f"sqlite:///{database}")
    try:
        first.start(timeout=START_S)
        refused = _second_serve(first, tmp_path)
        said = " ".join(refused.stderr.split())  # the console wraps long lines
        assert refused.returncode == 1, said
        assert "a scheduler already runs on this SQLite database" in said
        assert f"pid {first.proc.pid if first.proc else '?'}" in said
        assert "PostgreSQL" in said  # says what to do instead

        first.kill()  # the kernel drops a dead process's flock: nothing stale to clean up
        first.start(timeout=START_S)
    finally:
        first.stop()
