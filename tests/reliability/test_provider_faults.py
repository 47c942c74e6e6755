"""OpenAI misbehaving under a dozen live jobs: 429 storms with Retry-After, 500/502/503,
answers slower than the client's timeout, connections reset. No job is ever marked failed, the
retries of different jobs are spread (jitter) and grow (exponential), and every poll resumes from
its stored cursor, so no event or metric point is duplicated or lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends.openai import OpenAIBackend
from storage.repositories.jobs import JobRepository
from storage.tables import Job
from tests.conftest import LiveApi, chat_line, jsonl, run_async
from tests.fakes.manual_clock import ManualClock
from tests.fakes.openai_server import FakeOpenAI
from tests.reliability.stack import OPENAI_MODEL
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

JOBS = 12
INTERVAL = 0.2  # the root settings fixture's poll interval


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime(settings: Settings, fake_openai: FakeOpenAI, clock: ManualClock) -> Iterator[Runtime]:
    backend = OpenAIBackend(fake_openai.api_key, fake_openai.base_url, timeout_s=1.0,
                            status_max_age_s=0.0)
    rt = build_runtime(settings, backends=[backend], clock=clock)
    yield rt
    run_async(backend.aclose())
    rt.close()


def _jobs(runtime: Runtime, ids: list[str]) -> list[Job]:
    with runtime.db.session() as session:
        repo = JobRepository(session)
        return [j for j in (repo.get(i) for i in ids) if j is not None]


def _delays(runtime: Runtime, ids: list[str], clock: ManualClock) -> list[float]:
    now = clock.now()
    return [((j.next_poll_at or now) - now).total_seconds() for j in _jobs(runtime, ids)]


def _tick(runtime: Runtime, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    run_async(runtime.poller.tick())


def test_openai_storms_never_fail_a_job_and_retries_spread(
        live: LiveApi, fake_openai: FakeOpenAI, clock: ManualClock) -> None:
    runtime = live.runtime
    with live.client() as http:
        data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
        dataset = http.post("/api/datasets", content=data).json()["id"]
        ids = [http.post("/api/jobs", json={
            "training_dataset_id": dataset, "base_model": OPENAI_MODEL, "backend": "openai",
            "hyperparameters": {"n_epochs": 2}}).json()["id"] for _ in range(JOBS)]

    # 429 storm with Retry-After: 7 s, three rounds. Every job waits at least 7 s, at most 20%
    # more, and no two jobs come back at the same instant.
    fake_openai.fail_next(3 * JOBS, 429, retry_after="7")
    for _ in range(3):
        _tick(runtime, clock, 9)
        delays = _delays(runtime, ids, clock)
        assert all(7 <= d <= 7 * 1.2 for d in delays), delays
        assert len(set(delays)) == JOBS, "retries are synchronised: no jitter"
    _tick(runtime, clock, 9)
    assert all(j.external_id for j in _jobs(runtime, ids)), "the storm ended, jobs submitted"
    externals = [j.external_id or "" for j in _jobs(runtime, ids)]
    for external in externals:
        fake_openai.advance(external, 4)

    # 500, 502, 503 without Retry-After: exponential ceiling, full jitter, never below a tick.
    ceilings = []
    for status in (500, 502, 503):
        fake_openai.fail_next(JOBS, status)
        _tick(runtime, clock, 3600)
        delays = _delays(runtime, ids, clock)
        ceilings.append(max(delays))
        assert all(d >= INTERVAL for d in delays), delays
        assert len(set(delays)) == JOBS, "retries are synchronised: no jitter"
    assert ceilings[2] > ceilings[0], f"back-off does not grow: {ceilings}"

    # Slower than the client's 1 s timeout, then connections reset mid-request.
    gates = [fake_openai.hold_next("GET", r"/v1/fine_tuning/jobs/[\w-]+/events")
             for _ in range(JOBS)]
    _tick(runtime, clock, 3600)
    for gate in gates:
        gate.open()
    fake_openai.drop_next(JOBS)
    _tick(runtime, clock, 3600)

    for external in externals:
        fake_openai.run_to_end(external)
    for _ in range(20):
        _tick(runtime, clock, 3600)
        if all(j.status == "succeeded" for j in _jobs(runtime, ids)):
            break
    jobs = _jobs(runtime, ids)
    assert [j.status for j in jobs] == ["succeeded"] * JOBS
    with live.client() as http:
        for job, external in zip(jobs, externals, strict=True):
            total = fake_openai.world.jobs[external].total_steps
            metrics = http.get(f"/api/jobs/{job.id}/metrics", params={"limit": 200}).json()
            assert [m["step"] for m in metrics["data"]] == list(range(1, total + 1))
            events = http.get(f"/api/jobs/{job.id}/events", params={"limit": 500}).json()["data"]
            assert "failed" not in [e["to_status"] for e in events]
            messages = [e["message"] for e in events if e["kind"] == "backend"]
            assert len(messages) == len(set(messages)), "a provider event was stored twice"
    assert len(fake_openai.requests_to("POST", "/v1/fine_tuning/jobs")) == JOBS
