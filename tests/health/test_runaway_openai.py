"""OpenAI reports a job's billed tokens (`trained_tokens`) only when it has succeeded: past its
cost cap at that price, the job is flagged once, for on-call, through the real SDK and the fake
OpenAI server; nothing is cancelled (it has finished)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from storage.repositories.audit import AuditRepository
from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, chat_line, jsonl, run_until, tick
from tests.fakes.openai_runtime import openai_runtime
from tests.fakes.openai_server import FakeOpenAI
from tunebridge.jobs import get_job
from tunebridge.runtime import Runtime
from tunebridge.settings import Settings

KEY = "sk-fake-runaway"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY, steps_per_epoch=4, default_epochs=2) as server:
        yield server


@pytest.fixture
def runtime(settings: Settings, fake: FakeOpenAI) -> Iterator[Runtime]:
    with openai_runtime(settings, fake, KEY) as rt:
        yield rt


@pytest.mark.parametrize(("cap", "flagged"), [(0.01, True), (1.0, False)])
def test_billed_tokens_past_the_cap_are_flagged_once(live: LiveApi, fake: FakeOpenAI,
                                                     cap: float, flagged: bool) -> None:
    data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=data).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "gpt-4o-mini-2024-07-18",
            "backend": "openai", "hyperparameters": {"n_epochs": 2},
            "options": {"max_cost_usd": cap, "auto_cancel_runaway": True}}).json()["id"]
        tick(live.runtime)
        external = get_job(db=live.runtime.db, job_id=job_id).external_id
        assert external is not None
        fake.advance(external, 3)
        run_until(live.runtime, job_id, {"running"})
        fake.run_to_end(external)
        run_until(live.runtime, job_id, {"succeeded"})
        for _ in range(3):  # later polls must not flag it again
            time.sleep(0.25)
            tick(live.runtime)
        job = http.get(f"/api/jobs/{job_id}").json()
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    assert job["status"] == "succeeded"
    trained = job["result"]["trained_tokens"]  # the fake bills 1,000 tokens a step, 8 steps
    runaway = [e for e in events if e["kind"] == "runaway"]
    if not flagged:
        assert runaway == []
        return
    assert [e["data"]["kind"] for e in runaway] == ["cost_cap"]
    assert runaway[0]["data"]["cost_usd"] == pytest.approx(trained / 1e6 * 3.0)
    assert f"{trained:,} billed tokens" in runaway[0]["message"]
    with live.runtime.db.session() as session:
        rows = [n for n in OutboxRepository(session).for_job(job_id) if n.kind == "runaway"]
        audit = AuditRepository(session).for_job(job_id)
    assert len(rows) == 1 and rows[0].payload["data"]["mention_oncall"]
    assert "It has finished." in rows[0].payload["text"] and audit == []
