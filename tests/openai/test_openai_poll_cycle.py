"""The poller's tick over many OpenAI jobs, through our API, the real SDK and the fake server:
one list request reads every job's status, a throttled list backs every job off (Retry-After,
never failed), and a rejected key on it raises the configuration alert."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_support import API_KEY
from sqlmodel import select

from backends.openai import OpenAIBackend
from storage.repositories.jobs import JobRepository
from storage.tables import Job, Notification
from tests.conftest import LiveApi, chat_line, jsonl, run_async
from tests.fakes.manual_clock import ManualClock
from tests.fakes.openai_server import FakeOpenAI
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

JOBS = 25
LIST = "/v1/fine_tuning/jobs"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime(settings: Settings, fake: FakeOpenAI, clock: ManualClock) -> Iterator[Runtime]:
    backend = OpenAIBackend(API_KEY, fake.base_url, status_max_age_s=0.0)
    rt = build_runtime(settings, backends=[backend], clock=clock)
    yield rt
    run_async(backend.aclose())
    rt.close()


def _tick(runtime: Runtime, clock: ManualClock, seconds: float = 3600) -> None:
    clock.advance(seconds)
    run_async(runtime.poller.tick())


def _jobs(runtime: Runtime, ids: list[str]) -> list[Job]:
    with runtime.db.session() as session:
        repo = JobRepository(session)
        return [j for j in (repo.get(i) for i in ids) if j is not None]


@pytest.fixture
def running(live: LiveApi, fake: FakeOpenAI, clock: ManualClock) -> list[str]:
    """JOBS jobs submitted through the API, running at the provider, caught up once."""
    with live.client() as http:
        data = jsonl([chat_line(f"q{i}", f"a{i}") for i in range(12)])
        dataset = http.post("/api/datasets", content=data).json()["id"]
        ids = [http.post("/api/jobs", json={
            "training_dataset_id": dataset, "base_model": "gpt-4o-mini-2024-07-18",
            "backend": "openai", "hyperparameters": {"n_epochs": 2}}).json()["id"]
            for _ in range(JOBS)]
    _tick(live.runtime, clock)  # submit
    for job in _jobs(live.runtime, ids):
        fake.advance(job.external_id or "", 3)
    _tick(live.runtime, clock)  # the creation messages
    assert {j.status for j in _jobs(live.runtime, ids)} == {"running"}
    return ids


def test_a_tick_reads_every_status_with_one_list_request(
        live: LiveApi, fake: FakeOpenAI, clock: ManualClock, running: list[str]) -> None:
    for job in _jobs(live.runtime, running):
        fake.advance(job.external_id or "", 2)
    fake.reset_stats()

    _tick(live.runtime, clock)

    assert len(fake.requests_to("GET", LIST)) == 1
    assert fake.requests_to("GET", r"/v1/fine_tuning/jobs/[\w-]+") == []
    assert len(fake.requests_to("GET", r"/v1/fine_tuning/jobs/[\w-]+/events")) == JOBS
    with live.client() as http:
        for job_id in running:
            metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
            assert [m["step"] for m in metrics] == [1, 2, 3]


def test_a_throttled_list_backs_off_every_job_and_fails_none(
        live: LiveApi, fake: FakeOpenAI, clock: ManualClock, running: list[str]) -> None:
    fake.fail_next(1, 429, retry_after="7", method="GET", path=LIST)
    fake.reset_stats()

    _tick(live.runtime, clock)

    now = clock.now()
    jobs = _jobs(live.runtime, running)
    delays = [((j.next_poll_at or now) - now).total_seconds() for j in jobs]
    assert len(fake.requests) == 1  # the list; no request per job into the rate limit
    assert {j.status for j in jobs} == {"running"}
    assert all(7 <= d <= 7 * 1.2 for d in delays), delays
    assert len(set(delays)) == JOBS, "retries are synchronised: no jitter"


def test_a_rejected_key_on_the_list_raises_the_configuration_alert(
        live: LiveApi, fake: FakeOpenAI, clock: ManualClock, running: list[str]) -> None:
    fake.fail_next(1, 401, method="GET", path=LIST)

    _tick(live.runtime, clock)

    with live.runtime.db.session() as session:
        alerts = session.exec(select(Notification).where(Notification.kind == "alert")).all()
    assert {a.job_id for a in alerts} == set(running)
    assert "configuration error" in alerts[0].payload["text"]
    assert {j.status for j in _jobs(live.runtime, running)} == {"running"}
