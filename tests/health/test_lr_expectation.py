"""The poller judges the logged learning rate against the job's own configured schedule
(peak lr, warm-up ratio, scheduler type from its resolved hyperparameters)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from storage.tables import Job
from tests.conftest import LiveApi, run_until
from tunebridge.health import LrSchedule, ScheduleType
from tunebridge.health_watch import schedule_for


def _run(live: LiveApi, data: bytes, curve: str) -> list[dict[str, Any]]:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=data).json()["id"]
        response = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "hyperparameters": {"warmup_ratio": 0.1, "learning_rate": 1e-4},
            "options": {"scripted_step_seconds": 0.01, "scripted_steps": 60,
                        "scripted_curve": curve}})
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        assert run_until(live.runtime, job_id, {"succeeded"}, timeout=30) == "succeeded"
        events = _events(http, job_id)
    return [e for e in events if e["kind"] == "health"]


def _events(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(http.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["data"])


def test_an_lr_that_skips_the_configured_warmup_is_reported(live: LiveApi,
                                                             chat_jsonl: bytes) -> None:
    health = _run(live, chat_jsonl, "lr_no_warmup")
    lr = [e for e in health if e["data"]["kind"] == "lr_schedule"]
    assert len(lr) == 1
    # warm-up is ceil(0.1 x 60) = 6 steps; logs 1..3 are each far above the ramp
    assert lr[0]["data"]["step"] == 3 and "linear schedule" in lr[0]["message"]


def test_an_lr_that_follows_the_configured_warmup_is_not(live: LiveApi,
                                                         chat_jsonl: bytes) -> None:
    health = _run(live, chat_jsonl, "healthy")
    assert [e["data"]["kind"] for e in health] == []


def _job(backend: str, **hyperparameters: Any) -> Job:
    return Job(id="job_1", backend=backend, base_model="m", method="sft", status="running",
               training_dataset_id="ds_1", creator="u", hyperparameters=hyperparameters)


@pytest.mark.parametrize(("job", "expected"), [
    (_job("local", learning_rate=2e-4, warmup_ratio=0.03),
     LrSchedule(ScheduleType.LINEAR, peak_lr=2e-4, warmup_ratio=0.03)),
    (_job("local", learning_rate=1e-4, warmup_ratio=0.0, lr_scheduler_type="cosine",
          max_steps=500), LrSchedule(ScheduleType.COSINE, peak_lr=1e-4, warmup_ratio=0.0,
                                     total_steps=500)),
    (_job("local", learning_rate=1e-4, warmup_steps=20,
          lr_scheduler_type="constant_with_warmup"),
     LrSchedule(ScheduleType.CONSTANT, peak_lr=1e-4, warmup_steps=20)),
    (_job("local", learning_rate=1e-4, warmup_ratio=0.03, lr_scheduler_type="constant"),
     LrSchedule(ScheduleType.CONSTANT, peak_lr=1e-4, warmup_steps=0)),
    (_job("local", learning_rate=1e-4, lr_scheduler_type="polynomial"), None),
    (_job("openai", learning_rate_multiplier=2.0), None),
])
def test_the_schedule_comes_from_the_jobs_hyperparameters(job: Job,
                                                          expected: LrSchedule | None) -> None:
    assert schedule_for(job) == expected


def test_the_local_trainer_takes_the_configured_scheduler_type() -> None:
    """The schedule the check expects is the one the local trainer runs (it used to drop
    `lr_scheduler_type` and always run linear, which the check then rightly flagged)."""
    from backends.local.hyperparams import HyperparameterError, resolve

    assert resolve("sft", {}).values["lr_scheduler_type"] == "linear"
    resolved = resolve("sft", {"lr_scheduler_type": "cosine"})
    assert resolved.values["lr_scheduler_type"] == "cosine" and resolved.ignored == ()
    with pytest.raises(HyperparameterError, match="lr_scheduler_type"):
        resolve("sft", {"lr_scheduler_type": "sawtooth"})
