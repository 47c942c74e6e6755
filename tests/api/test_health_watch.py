"""The detector runs on every poll: each finding is stored and posted once, and auto-stop
cancels a job that overfits or goes NaN."""

from __future__ import annotations

import httpx

from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, run_until


def _start(http: httpx.Client, data: bytes, **options: object) -> str:
    dataset_id = http.post("/api/datasets", content=data).json()["id"]
    body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "options": {"scripted_step_seconds": 0.01, **options}}
    response = http.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_overfitting_is_reported_once_with_the_best_step(live: LiveApi, chat_jsonl: bytes
                                                         ) -> None:
    with live.client() as http:
        job_id = _start(http, chat_jsonl, scripted_steps=60, scripted_curve="overfit")
        assert run_until(live.runtime, job_id, {"succeeded"}, timeout=30) == "succeeded"
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 500}).json()["data"]
    health = [e for e in events if e["kind"] == "health"]
    assert [e["data"]["kind"] for e in health] == ["overfitting"]
    assert health[0]["data"]["best_eval_step"] == 20
    assert any("dropout" in fix for fix in health[0]["data"]["fixes"])
    with live.runtime.db.session() as session:
        rows = [n for n in OutboxRepository(session).for_job(job_id) if n.kind == "health"]
    assert len(rows) == 1 and "overfitting" in rows[0].payload["text"]


def test_healthy_run_stays_silent(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = _start(http, chat_jsonl, scripted_steps=40)
        run_until(live.runtime, job_id, {"succeeded"}, timeout=30)
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 500}).json()["data"]
    assert [e for e in events if e["kind"] == "health"] == []


def test_auto_stop_cancels_a_nan_run(live: LiveApi, chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = _start(http, chat_jsonl, scripted_steps=1000, scripted_curve="nan",
                        auto_stop=True)
        assert run_until(live.runtime, job_id, {"cancelled", "succeeded"}, timeout=30) == (
            "cancelled")
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 500}).json()["data"]
    reasons = [e["message"] for e in events if e.get("to_status") == "cancelling"]
    assert len(reasons) == 1 and "auto-stop" in reasons[0]
