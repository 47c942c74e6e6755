"""Polling: status mapping, incremental events across pages and restarts, metrics, results."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_support import BackendFactory, sft_spec, write_jsonl

from backends.base import Handle, RemoteStatus, Update
from backends.openai import OpenAIBackend
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio


class Collector:
    """Plays the services: stores what each poll returns and hands the cursor back next time."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.cursor: str | None = None
        self.event_ids: list[str] = []
        self.steps: list[int] = []
        self.last: Update | None = None

    async def poll(self, backend: OpenAIBackend) -> Update:
        update = await backend.poll(self.handle, self.cursor)
        self.cursor = update.cursor
        self.event_ids.extend(e.event_id for e in update.events)
        self.steps.extend(m.step for m in update.metrics)
        self.last = update
        return update


def message_ids(fake: FakeOpenAI, job_id: str) -> list[str]:
    return [e["id"] for e in fake.world.events_of(job_id) if e["type"] == "message"]


async def test_status_follows_the_job_through_its_lifecycle(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file))
    job = handle.external_id
    seen = [(await backend.poll(handle, None)).status]
    for _ in range(2):
        fake.advance(job)
        seen.append((await backend.poll(handle, None)).status)
    await backend.pause(handle)
    seen.append((await backend.poll(handle, None)).status)
    await backend.resume(handle)
    fake.run_to_end(job)
    seen.append((await backend.poll(handle, None)).status)

    assert seen == [
        RemoteStatus.QUEUED,  # validating_files
        RemoteStatus.QUEUED,
        RemoteStatus.RUNNING,
        RemoteStatus.PAUSED,
        RemoteStatus.SUCCEEDED,
    ]


async def test_events_arrive_once_in_order_across_many_pages_polls_and_a_restart(
    train_file: Path, make_backend: BackendFactory
) -> None:
    with FakeOpenAI("sk-fake-test", steps_per_epoch=9) as fake:  # 27 steps, ~35 events
        first = make_backend(base_url=fake.base_url, events_page_size=3)
        handle = await first.submit(sft_spec(train_file))
        job = handle.external_id
        services = Collector(handle)
        await services.poll(first)
        for ticks in (1, 7, 4):
            fake.advance(job, ticks)
            await services.poll(first)
        # Gateway restart: a brand-new backend with only the stored handle and cursor.
        second = make_backend(base_url=fake.base_url, events_page_size=4)
        fake.advance(job, 11)
        await services.poll(second)
        await services.poll(second)  # nothing new: nothing returned
        fake.run_to_end(job)
        final = await services.poll(second)
        event_pages = fake.requests_to("GET", rf"/v1/fine_tuning/jobs/{job}/events")

        assert final.status is RemoteStatus.SUCCEEDED
        assert services.event_ids == message_ids(fake, job)  # oldest → newest, none twice
        assert len(set(services.event_ids)) == len(services.event_ids)
        assert services.steps == list(range(1, 28))
        assert len(event_pages) > 12  # the paging path was really exercised


async def test_a_failed_page_does_not_advance_the_cursor(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend(events_page_size=2)
    handle = await backend.submit(sft_spec(train_file))
    services = Collector(handle)
    await services.poll(backend)
    fake.advance(handle.external_id, 6)
    fake.fail_next(1, 503, path=f"/v1/fine_tuning/jobs/{handle.external_id}/events")

    with pytest.raises(Exception):  # noqa: B017 - the error type is asserted in test_errors
        await services.poll(backend)
    await services.poll(backend)

    assert services.event_ids == message_ids(fake, handle.external_id)
    assert services.steps == [1, 2, 3, 4]


async def test_metrics_events_become_metric_samples(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path, tmp_path: Path
) -> None:
    valid = write_jsonl(tmp_path / "valid.jsonl", 2)
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file, validation_file=valid))
    fake.advance(handle.external_id, 2 + 4)  # to running, then 4 steps: epoch 1 of 3
    update = await backend.poll(handle, None)
    fake.run_to_end(handle.external_id)
    last = await backend.poll(handle, update.cursor)

    first = update.metrics[0]
    assert [m.step for m in update.metrics] == [1, 2, 3, 4]
    assert first.train_loss == pytest.approx(2.4 * 2.718281828 ** (-1 / 6) + 0.3, abs=1e-3)
    assert first.eval_loss == pytest.approx(first.train_loss + 0.1)
    assert first.token_accuracy is not None and first.eval_token_accuracy == 0.5
    assert update.metrics[3].epoch == pytest.approx(1.0)
    assert first.extra["total_steps"] == 12
    assert "full_valid_loss" in last.metrics[-1].extra
    assert all("training loss" not in e.message for e in update.events)


async def test_success_reports_model_result_files_and_checkpoints(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file))
    fake.run_to_end(handle.external_id)

    update = await backend.poll(handle, None)

    job = fake.world.jobs[handle.external_id].obj
    assert update.status is RemoteStatus.SUCCEEDED
    assert update.result is not None
    assert update.result["fine_tuned_model"] == job["fine_tuned_model"]
    assert job["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:org-fake:support-bot:")
    assert update.result["result_files"] == job["result_files"]
    steps = [c["step"] for c in update.result["checkpoints"]]
    assert steps == [4, 8, 12]
    best = update.result["checkpoints"][-1]
    assert best["fine_tuned_model_checkpoint"].endswith(":ckpt-step-12")
    assert best["metrics"]["train_loss"] == pytest.approx(update.metrics[-1].train_loss)
    assert update.error is None
    assert update.events[-1].message == "The job has successfully completed"


async def test_failure_reports_the_providers_error(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file))
    job = handle.external_id
    fake.world.fail_job(job, "invalid_training_file", "Line 3 is not JSON", at_step=2)
    fake.advance(handle.external_id, 10)

    update = await backend.poll(handle, None)

    assert update.status is RemoteStatus.FAILED
    assert update.error == {
        "code": "invalid_training_file",
        "message": "Line 3 is not JSON",
        "param": None,
    }
    assert update.result is None
    assert update.events[-1].level == "error"
    assert [m.step for m in update.metrics] == [1, 2]


async def test_poll_many_runs_concurrently_within_the_bound(
    make_backend: BackendFactory, train_file: Path
) -> None:
    with FakeOpenAI("sk-fake-test") as fake:
        backend = make_backend(base_url=fake.base_url, max_concurrency=4)
        handles = [await backend.submit(sft_spec(train_file, job_id=f"j{i}")) for i in range(40)]
        for handle in handles:
            fake.advance(handle.external_id, 3)
        caught_up = await backend.poll_many([(h, None) for h in handles])
        cursors = [u.cursor for u in caught_up if isinstance(u, Update)]
        for handle in handles:
            fake.advance(handle.external_id, 2)  # training: metrics events only
        fake.reset_stats()
        fake.latency_s = 0.005  # a network round trip, so that requests overlap

        updates = await backend.poll_many(list(zip(handles, cursors, strict=True)))

        assert all(isinstance(u, Update) and u.status is RemoteStatus.RUNNING for u in updates)
        assert all(len(u.metrics) == 2 for u in updates if isinstance(u, Update))
        assert 2 <= fake.max_in_flight <= 4
        assert len(fake.requests_to("GET", "/v1/fine_tuning/jobs")) == 1  # 40 statuses
        assert len(fake.requests) == 41  # and one events page per job


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_training_progress_alone_skips_the_status_request_until_it_is_stale(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    clock = Clock()
    backend = make_backend(clock=clock, status_max_age_s=60)
    handle = await backend.submit(sft_spec(train_file))
    job = handle.external_id
    fake.advance(job, 2)
    services = Collector(handle)
    await services.poll(backend)  # first poll always reads the status
    retrieves = rf"/v1/fine_tuning/jobs/{job}"

    fake.advance(job, 3)  # three metrics events, no status change
    assert (await services.poll(backend)).status is RemoteStatus.RUNNING
    assert len(fake.requests_to("GET", retrieves)) == 1

    # A status change the provider logged no event for is still seen once the status is stale.
    fake.world.jobs[job].obj["status"] = "failed"
    clock.now += 30
    assert (await services.poll(backend)).status is RemoteStatus.RUNNING
    clock.now += 31
    assert (await services.poll(backend)).status is RemoteStatus.FAILED
    assert len(fake.requests_to("GET", retrieves)) == 2
    assert services.steps == [1, 2, 3]


async def test_a_message_event_triggers_a_status_read(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend(clock=Clock())
    handle = await backend.submit(sft_spec(train_file))
    services = Collector(handle)
    await services.poll(backend)
    fake.advance(handle.external_id)  # validating_files → queued, with a message event

    await services.poll(backend)

    assert len(fake.requests_to("GET", rf"/v1/fine_tuning/jobs/{handle.external_id}")) == 2


async def test_events_written_while_the_job_finished_are_not_lost(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend(status_max_age_s=0)
    handle = await backend.submit(sft_spec(train_file))
    job = handle.external_id
    fake.advance(job, 2)
    services = Collector(handle)
    await services.poll(backend)
    # The job finishes between our events read and our status read.
    fake.after_next("GET", rf"/v1/fine_tuning/jobs/{job}/events", lambda: fake.run_to_end(job))

    final = await services.poll(backend)

    assert final.status is RemoteStatus.SUCCEEDED
    assert final.events[-1].message == "The job has successfully completed"
    assert services.event_ids == message_ids(fake, job)
    assert services.steps == list(range(1, 13))
