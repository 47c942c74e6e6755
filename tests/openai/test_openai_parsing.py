"""Bodies are parsed by pydantic-core for speed; anything newer than the SDK's types (a status
or event level it does not know) still parses, through the SDK's lenient construction, and a
body that is not an object at all is a retryable backend error, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_support import BackendFactory, sft_spec

from backends.base import BackendError, RemoteStatus
from backends.openai import OpenAIBackendError
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio


async def test_unknown_event_level_and_status_words_still_parse(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend(status_max_age_s=0.0)
    handle = await backend.submit(sft_spec(train_file))
    job = fake.world.jobs[handle.external_id]
    fake.advance(handle.external_id, 3)
    job.events[-2]["level"] = "notice"  # not in the SDK's Literal["info", "warn", "error"]
    update = await backend.poll(handle, None)
    job.obj["status"] = "migrating"  # a status this SDK has never heard of
    with pytest.raises(OpenAIBackendError, match="unknown status 'migrating'"):
        await backend.poll(handle, update.cursor)
    assert update.status is RemoteStatus.RUNNING
    assert [m.step for m in update.metrics] == [1]
    assert [e.level for e in update.events][-1] == "notice"
    assert update.events[-1].message == "Fine-tuning job started"


async def test_a_body_that_is_not_an_object_is_a_retryable_error(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend(status_max_age_s=0.0)
    handle = await backend.submit(sft_spec(train_file))
    fake.world.jobs[handle.external_id].events.append("not an event")  # type: ignore[arg-type]
    with pytest.raises(BackendError) as failed:
        await backend.poll(handle, None)
    assert failed.value.retryable
