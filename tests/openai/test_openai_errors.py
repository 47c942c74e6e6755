"""Provider failures: throttling and outages are retryable, a bad key is a configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_support import BackendFactory, sft_spec

from backends.base import BackendError, Handle, RemoteStatus
from backends.openai import OpenAIBackend, OpenAIBackendError
from backends.openai.errors import retry_after_seconds
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.anyio


async def running_job(fake: FakeOpenAI, backend: OpenAIBackend, train_file: Path) -> Handle:
    handle = await backend.submit(sft_spec(train_file))
    fake.advance(handle.external_id, 3)
    return handle


async def test_429_is_retryable_and_carries_retry_after(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await running_job(fake, backend, train_file)
    fake.fail_next(1, 429, retry_after="7")

    with pytest.raises(BackendError) as throttled:
        await backend.poll(handle, None)

    assert throttled.value.retryable
    assert throttled.value.retry_after == 7.0
    assert "429" in str(throttled.value)
    assert (await backend.poll(handle, None)).status is RemoteStatus.RUNNING


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path, status: int
) -> None:
    backend = make_backend()
    handle = await running_job(fake, backend, train_file)
    fake.fail_next(1, status, retry_after="1")

    with pytest.raises(BackendError) as outage:
        await backend.poll(handle, None)

    assert outage.value.retryable and outage.value.retry_after == 1.0
    assert isinstance(outage.value, OpenAIBackendError) and outage.value.status_code == status


async def test_dropped_connection_is_retryable(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    backend = make_backend()
    handle = await running_job(fake, backend, train_file)
    fake.drop_next()

    with pytest.raises(BackendError) as dropped:
        await backend.poll(handle, None)

    assert dropped.value.retryable and dropped.value.retry_after is None


async def test_rejected_key_is_a_non_retryable_configuration_error(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    handle = await running_job(fake, make_backend(), train_file)
    wrong = make_backend(api_key="sk-wrong")

    with pytest.raises(BackendError) as on_poll:
        await wrong.poll(handle, None)
    with pytest.raises(BackendError) as on_submit:
        await wrong.submit(sft_spec(train_file, job_id="tb-other"))

    for error in (on_poll.value, on_submit.value):
        assert not error.retryable
        assert "configuration" in str(error) and "401" in str(error)
        assert isinstance(error, OpenAIBackendError) and error.is_configuration
    assert "sk-wrong" not in str(on_poll.value)


async def test_unknown_job_is_not_retryable(make_backend: BackendFactory) -> None:
    with pytest.raises(BackendError) as missing:
        await make_backend().poll(Handle("ftjob-doesnotexist"), None)

    assert not missing.value.retryable and "404" in str(missing.value)


async def test_sdk_retries_are_off_by_default_and_writes_are_never_retried(
    fake: FakeOpenAI, make_backend: BackendFactory, train_file: Path
) -> None:
    handle = await running_job(fake, make_backend(), train_file)
    fake.reset_stats()
    fake.fail_next(1, 503, retry_after="0.01")

    with pytest.raises(BackendError):
        await make_backend().poll(handle, None)
    assert len(fake.requests) == 1

    patient = make_backend(max_retries=2)
    fake.fail_next(1, 503, retry_after="0.01", method="GET")
    assert (await patient.poll(handle, None)).status is RemoteStatus.RUNNING
    fake.fail_next(1, 503, retry_after="0.01", method="POST")
    with pytest.raises(BackendError):
        await patient.cancel(handle)
    assert len(fake.requests_to("POST", r".*/cancel")) == 1


def test_retry_after_formats() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == 10.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
