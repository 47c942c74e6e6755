"""Cancel, pause and resume through the provider; cancelling twice or too late is not a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_support import BackendFactory, sft_spec

from backends.base import BackendError, RemoteStatus
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio


async def test_cancel_a_running_job(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file))
    fake.advance(handle.external_id, 4)

    await backend.cancel(handle)

    assert fake.world.jobs[handle.external_id].obj["status"] == "cancelled"
    assert len(fake.requests_to("POST", rf"/v1/fine_tuning/jobs/{handle.external_id}/cancel")) == 1
    update = await backend.poll(handle, None)
    assert update.status is RemoteStatus.CANCELLED
    assert update.result is None and update.error is None


async def test_cancelling_a_finished_job_reports_its_final_status(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    done = await backend.submit(sft_spec(train_file, job_id="done"))
    fake.run_to_end(done.external_id)
    cancelled = await backend.submit(sft_spec(train_file, job_id="cancelled"))
    await backend.cancel(cancelled)

    assert await backend.cancel_job(done) is RemoteStatus.SUCCEEDED
    assert await backend.cancel_job(cancelled) is RemoteStatus.CANCELLED
    await backend.cancel(done)  # the protocol call: no exception either
    assert fake.world.jobs[done.external_id].obj["status"] == "succeeded"


async def test_pause_and_resume(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await backend.submit(sft_spec(train_file))

    with pytest.raises(BackendError) as too_early:
        await backend.pause(handle)  # still validating files
    fake.advance(handle.external_id, 2)
    paused = await backend.pause(handle)
    fake.advance(handle.external_id, 5)  # a paused job does not train
    paused_steps = fake.world.jobs[handle.external_id].step
    resumed = await backend.resume(handle)

    assert not too_early.value.retryable and "400" in str(too_early.value)
    assert (paused, resumed) == (RemoteStatus.PAUSED, RemoteStatus.RUNNING)
    assert paused_steps == 0
