"""A poll cycle reads its jobs' status from list pages (a request per 100 jobs), pages no further
than it must, falls back to `retrieve` for a job the list does not show, and hands a failed
page's error to every job it did not cover, without a request per job."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from openai_support import BackendFactory

from backends.base import BackendError, Handle, RemoteStatus, Update
from backends.openai import OpenAIBackend
from backends.openai.mapping import JOB_ID_METADATA_KEY, job_metadata
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio

LIST = "/v1/fine_tuning/jobs"
RETRIEVE = r"/v1/fine_tuning/jobs/[\w-]+"
EVENTS = r"/v1/fine_tuning/jobs/[\w-]+/events"


def seed(fake: FakeOpenAI, count: int, *, ours: bool = True, ticks: int = 2) -> list[str]:
    """`count` jobs created as tunebridge creates them (or by hand), `ticks` into their run."""
    training = fake.world.create_file("train.jsonl", b'{"messages": []}\n', "fine-tune")
    ids = []
    for i in range(count):
        tb_id = f"tb-{len(fake.world.jobs)}-{i}"
        metadata = job_metadata(tb_id) if ours else {JOB_ID_METADATA_KEY: tb_id}
        job = fake.world.create_job({"model": "gpt-4o-mini-2024-07-18",
                                     "training_file": training["id"], "metadata": metadata})
        fake.advance(job["id"], ticks)
        ids.append(job["id"])
    return ids


class Services:
    """Plays the services for many jobs: stores each poll's cursor and what it delivered."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.handles = [Handle(external_id=i) for i in ids]
        self.cursors: dict[str, str | None] = dict.fromkeys(ids)
        self.steps: dict[str, list[int]] = {i: [] for i in ids}

    async def cycle(self, backend: OpenAIBackend) -> list[Update | BackendError]:
        items = [(h, self.cursors[h.external_id]) for h in self.handles]
        results = await backend.poll_many(items)
        for handle, result in zip(self.handles, results, strict=True):
            if isinstance(result, Update):
                self.cursors[handle.external_id] = result.cursor
                self.steps[handle.external_id] += [m.step for m in result.metrics]
        return results


def count(fake: FakeOpenAI, path: str) -> int:
    return len(fake.requests_to("GET", path))


async def test_250_statuses_come_from_3_list_pages_and_no_retrieve(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    backend = make_backend(status_max_age_s=0)  # without the list, every poll would retrieve
    ids = seed(fake, 250)
    services = Services(ids)
    await services.cycle(backend)  # catching up on the creation messages
    for job_id in ids:
        fake.advance(job_id, 2)  # two training steps: metrics events only
    fake.reset_stats()

    updates = await services.cycle(backend)

    assert all(isinstance(u, Update) and u.status is RemoteStatus.RUNNING for u in updates)
    assert count(fake, LIST) == 3
    assert count(fake, RETRIEVE) == 0
    assert count(fake, EVENTS) == 250
    assert fake.requests_to("GET", LIST)[0].query == {
        "limit": "100", "metadata[created_by]": "tunebridge"}
    assert all(steps == [1, 2] for steps in services.steps.values())


async def test_paging_stops_once_every_tracked_job_was_seen(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    older = seed(fake, 250)
    for job_id in older:
        fake.run_to_end(job_id)
    services = Services(seed(fake, 30))
    fake.reset_stats()

    updates = await services.cycle(make_backend())

    assert all(isinstance(u, Update) and u.status is RemoteStatus.RUNNING for u in updates)
    assert count(fake, LIST) == 1  # although the list has 250 more of ours


async def test_a_job_missing_from_the_list_is_retrieved_and_bounds_later_paging(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    backend = make_backend(status_max_age_s=0)
    for job_id in seed(fake, 250):
        fake.run_to_end(job_id)
    fake.world.now += 10
    (by_hand,) = seed(fake, 1, ours=False)  # without our owner mark: the filter hides it
    fake.world.now += 10
    active = seed(fake, 30)
    services = Services([by_hand, *active])
    fake.reset_stats()

    first = await services.cycle(backend)

    assert all(isinstance(u, Update) and u.status is RemoteStatus.RUNNING for u in first)
    assert count(fake, LIST) == 2  # creation time unknown: as many pages as 31 jobs fill, +1
    assert len(fake.requests_to("GET", rf"/v1/fine_tuning/jobs/{by_hand}")) == 1

    fake.run_to_end(by_hand)
    for job_id in active:
        fake.advance(job_id)
    fake.reset_stats()
    second = await services.cycle(backend)

    statuses = [u.status for u in second if isinstance(u, Update)]
    assert statuses == [RemoteStatus.SUCCEEDED] + [RemoteStatus.RUNNING] * 30
    assert count(fake, LIST) == 1  # the first page reaches jobs older than the one missing
    assert [r.path for r in fake.requests_to("GET", RETRIEVE)] == [f"{LIST}/{by_hand}"]


async def test_a_throttled_list_backs_every_job_off_with_one_request(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    backend = make_backend()
    services = Services(seed(fake, 40))
    await services.cycle(backend)
    for job_id in services.cursors:
        fake.advance(job_id, 3)
    fake.reset_stats()
    fake.fail_next(1, 429, retry_after="7", method="GET", path=LIST)

    throttled = await services.cycle(backend)

    assert len(fake.requests) == 1
    assert all(isinstance(e, BackendError) and e.retryable and e.retry_after == 7.0
               for e in throttled)
    assert len({id(e) for e in throttled}) == 40  # one exception object per job

    recovered = await services.cycle(backend)
    assert all(isinstance(u, Update) and u.status is RemoteStatus.RUNNING for u in recovered)
    assert all(steps == [1, 2, 3] for steps in services.steps.values())


async def test_a_failure_on_a_later_page_leaves_the_earlier_pages_statuses(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    services = Services(seed(fake, 150))
    fake.after_next("GET", LIST, lambda: fake.fail_next(1, 503, method="GET", path=LIST))

    results = await services.cycle(make_backend())

    failed = [r for r in results if isinstance(r, BackendError)]
    assert len(failed) == 50 and all(e.retryable for e in failed)  # the oldest 50: page 2
    assert all(isinstance(r, Update) for r in results[50:])  # newest first: page 1


async def test_a_rejected_key_on_the_list_is_a_configuration_error_for_each_job(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    services = Services(seed(fake, 20))
    fake.fail_next(1, 401, method="GET", path=LIST)

    results = await services.cycle(make_backend())

    assert all(isinstance(e, BackendError) and e.is_configuration for e in results)


async def test_listed_statuses_serve_only_the_cycle_and_small_cycles_do_not_list(
    fake: FakeOpenAI, make_backend: BackendFactory
) -> None:
    backend = make_backend(status_max_age_s=0)
    ids = seed(fake, 20)
    services = Services(ids)
    await services.cycle(backend)
    fake.reset_stats()

    async with backend.poll_cycle(services.handles):
        await backend.poll(services.handles[0], services.cursors[ids[0]])
        await backend.poll(services.handles[0], services.cursors[ids[0]])  # taken: retrieved
    await backend.poll(services.handles[1], services.cursors[ids[1]])  # after it: retrieved
    await Services(ids[:19]).cycle(backend)  # under status_list_from (20): retrieve each

    assert count(fake, LIST) == 1
    assert count(fake, RETRIEVE) == 2 + 19
