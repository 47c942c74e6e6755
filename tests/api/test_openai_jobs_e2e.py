"""A job routed to OpenAI through our API and poller, against the fake OpenAI server, through
the real SDK: submitted once, metrics stored, the fine-tuned model recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveApi, chat_line, jsonl, tick
from tests.fakes.openai_runtime import openai_runtime
from tests.fakes.openai_server import FakeOpenAI
from tunebridge.jobs import get_job
from tunebridge.runtime import Runtime
from tunebridge.settings import Settings

KEY = "sk-fake-e2e"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY, steps_per_epoch=4, default_epochs=2) as server:
        yield server


@pytest.fixture
def runtime(settings: Settings, fake: FakeOpenAI) -> Iterator[Runtime]:
    with openai_runtime(settings, fake, KEY) as rt:
        yield rt


def test_openai_job_end_to_end(live: LiveApi, fake: FakeOpenAI) -> None:
    data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=data).json()["id"]
        created = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "gpt-4o-mini-2024-07-18",
            "backend": "openai", "hyperparameters": {"n_epochs": 2}})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert created.json()["estimate"]["cost"]["model"].startswith("gpt-4o-mini")
        tick(live.runtime)  # upload + create at the provider
        external = get_job(db=live.runtime.db, job_id=job_id).external_id
        assert external is not None
        fake.run_to_end(external)
        for _ in range(10):
            tick(live.runtime)
            if get_job(db=live.runtime.db, job_id=job_id).status == "succeeded":
                break
        job = http.get(f"/api/jobs/{job_id}").json()
        metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
    assert job["status"] == "succeeded", job
    assert job["result"]["fine_tuned_model"].startswith("ft:gpt-4o-mini")
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    assert len(metrics) == 8 and all(m["train_loss"] is not None for m in metrics)
    creates = [r for r in fake.requests if r.method == "POST" and r.path == "/v1/fine_tuning/jobs"]
    assert len(creates) == 1
