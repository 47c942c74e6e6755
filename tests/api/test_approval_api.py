"""A job whose estimate is over a cap waits for an admin's approval, then runs."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveApi, run_until, token_counting_model


def test_over_the_cap_waits_for_approval(live: LiveApi, chat_jsonl: bytes,
                                          tmp_path: Path) -> None:
    live.runtime.settings.max_gpu_hours = 0.0
    reader = live.key("read", "jobs:write")
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        created = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": str(token_counting_model(tmp_path)),
            "backend": "scripted", "options": {"scripted_step_seconds": 0.01}})
        job = created.json()
        assert created.status_code == 201, created.text
        assert job["status"] == "awaiting_approval"
        assert job["estimate"]["gpu_time"]["gpu_hours"] > 0
        assert job["estimate"]["tokens"]["examples"] == 12
        run_until(live.runtime, job["id"], {"awaiting_approval"})  # the poller leaves it alone
        with live.client(reader) as other:
            assert other.post(f"/api/jobs/{job['id']}/approve").status_code == 403
        approved = http.post(f"/api/jobs/{job['id']}/approve")
        assert approved.status_code == 200 and approved.json()["status"] == "queued"
        again = http.post(f"/api/jobs/{job['id']}/approve")
        assert again.status_code == 409
    assert run_until(live.runtime, job["id"], {"succeeded"}) == "succeeded"
