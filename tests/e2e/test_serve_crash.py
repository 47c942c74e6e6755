"""SIGKILL `tunebridge serve` mid-run, twice, and restart it: nothing lost, nothing repeated."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import chat_line, jsonl
from tests.e2e.serve_process import ServeProcess

pytestmark = pytest.mark.slow

STEPS = 40


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path / "var", database_url, SCRIPTED_STEP_SECONDS="0.05")
    yield process
    process.stop()


def _wait_for(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_sigkill_loses_nothing_and_sends_nothing_twice(serve: ServeProcess) -> None:
    serve.start()
    key = serve.admin_key()
    assert oct((serve.data_dir / "admin.key").stat().st_mode & 0o777) == "0o600"
    http = httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {key}"})
    data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
    dataset_id = http.post("/api/datasets", content=data).json()["id"]
    job_ids = [http.post("/api/jobs", json={
        "training_dataset_id": dataset_id, "base_model": "m",
        "options": {"scripted_steps": STEPS}}).json()["id"] for _ in range(3)]

    def metric_count() -> int:
        return sum(len(http.get(f"/api/jobs/{j}/metrics").json()["data"]) for j in job_ids)

    _wait_for(lambda: metric_count() >= 10)
    serve.kill()
    serve.start()
    _wait_for(lambda: metric_count() >= 50)
    serve.kill()
    serve.start()

    def all_done() -> bool:
        return all(http.get(f"/api/jobs/{j}").json()["status"] == "succeeded" for j in job_ids)

    _wait_for(all_done)
    journal_file = serve.data_dir / "console-notifications.jsonl"
    # three status posts and a completion summary (with its chart file) per job
    _wait_for(lambda: len(journal_file.read_text().splitlines()) >= 12)
    time.sleep(0.5)  # a 13th line would be a repeat

    for job_id in job_ids:
        metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
        assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
        status_path = [e["to_status"] for e in events if e["kind"] == "status"]
        assert status_path == ["queued", "running", "succeeded"]
        step_events = [e["message"] for e in events if e["message"].startswith("Step ")]
        assert step_events == [f"Step {s}/{STEPS}" for s in range(5, STEPS + 1, 5)]
        record = json.loads((serve.data_dir / "scripted-provider" / f"scr-{job_id}.json")
                            .read_text())
        assert record["submissions"] == 1, "the job was submitted to the provider twice"

    printed = [line for line in serve.output().splitlines() if line.startswith("[tunebridge")]
    per_job = Counter(line.split()[2] for line in printed if line.split()[1] == "Job")
    assert per_job == dict.fromkeys(job_ids, 4), printed
    assert len(printed) == len(set(printed)), "a notification was printed twice"
    journal = journal_file.read_text().splitlines()
    keys = [json.loads(line)["dedupe_key"] for line in journal]
    assert len(keys) == len(set(keys)) == 12
    charts = [serve.data_dir / "charts" / f"{job_id}-loss.png" for job_id in job_ids]
    assert all(chart.read_bytes().startswith(b"\x89PNG") for chart in charts)
