"""OpenAI fine-tuning as a tunebridge Backend, on the official SDK's async client.

Three properties shape this class:
- Crash safety: every job carries `metadata.tunebridge_job_id`; `submit` first looks for a job
  with our id and adopts it, so a crash (or a timed-out POST) between the provider's create and
  our commit never starts a second, billable job. Writes are never retried by the SDK itself.
- Restartability: `poll` needs only the Handle and the cursor the services stored, so a fresh
  instance after a gateway restart continues without duplicating or losing events.
- Bounded concurrency: all requests share one semaphore (client.py), so a poll cycle over a
  thousand jobs runs concurrently without flooding the provider. Failures surface as
  BackendError at once (retryable ones with Retry-After); the poller owns back-off.
- Few requests: inside `poll_cycle` (the poller opens one per tick) the jobs' statuses come from
  list pages, a request per 100 jobs (status_list.py), and each poll reads just its new events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import replace
from functools import partial

from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from backends.base import BackendError, Handle, JobSpec, RemoteStatus, Update
from backends.openai import mapping
from backends.openai.client import BoundedClient
from backends.openai.errors import OpenAIBackendError
from backends.openai.events import PollCursor, new_events
from backends.openai.files import FileUploader
from backends.openai.status_list import StatusListing

MiB = 1024 * 1024


class OpenAIBackend:
    """Backend protocol implementation; also offers poll_cycle, poll_many, cancel_job, pause and
    resume."""

    name = "openai"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        max_concurrency: int = 32,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 0,
        single_upload_limit: int = 64 * MiB,
        upload_part_size: int = 64 * MiB,
        events_page_size: int = 100,
        events_first_page: int = 10,
        adopt_scan: int = 100,
        status_max_age_s: float = 60.0,
        status_list_from: int = 20,
        pool_shards: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_concurrency = max_concurrency
        self._client = BoundedClient(
            api_key,
            base_url,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_retries=max_retries,
            events_page_size=events_page_size,
            events_first_page=events_first_page,
            pool_shards=pool_shards,
        )
        self._files = FileUploader(
            self._client.writer,
            self._client.call,
            single_upload_limit=single_upload_limit,
            part_size=upload_part_size,
            adopt_scan=adopt_scan,
        )
        self._adopt_scan = adopt_scan
        self._status_max_age_s = status_max_age_s
        self._status_list_from = status_list_from
        self._listing = StatusListing(
            partial(self._client.jobs_page, limit=100, metadata=mapping.OWNER_METADATA),
            page_size=100,
        )
        self._clock = clock

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- Backend protocol --------------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> Handle:
        """Adopt the job already created for `spec.job_id`, or upload the files and create it."""
        existing = await self._client.find_job(spec.job_id, self._adopt_scan)
        if existing is not None:
            self._listing.saw(existing)
            return _handle(existing, adopted=True)
        try:
            mapping.method_payload(spec)  # reject an unsupported method before uploading
            training = await self._files.ensure(spec.training_file, spec.job_id, "train")
            validation = None
            if spec.validation_file is not None:
                validation = await self._files.ensure(spec.validation_file, spec.job_id, "valid")
        except (OSError, mapping.UnsupportedMethod) as exc:
            raise BackendError(f"cannot submit to OpenAI: {exc}", retryable=False) from exc
        job = await self._client.create_job(mapping.create_params(spec, training, validation))
        self._listing.saw(job)
        return _handle(job, adopted=False)

    async def poll(self, handle: Handle, cursor: str | None) -> Update:
        """The new events, and the status: listed this cycle, or re-read only when it may have
        changed (events.py).

        A terminal status is never reported before its last events: a listed status was read
        before the events; after a retrieve, the events written since the first read are
        fetched too.
        """
        job_id = handle.external_id
        job = self._listing.take(job_id)
        state = PollCursor.load(cursor)
        if job is not None:
            state = self._with_status(state, job)
        fetch = partial(self._client.events_page, job_id)
        events, state = await new_events(fetch, state)
        if self._status_is_stale(state, events, listed=job is not None):
            job = await self._client.retrieve(job_id)
            self._listing.saw(job)
            state = self._with_status(state, job)
            if mapping.remote_status(job.status) in mapping.TERMINAL:
                tail, state = await new_events(fetch, state)
                events += tail
        status = mapping.remote_status(state.status or "")
        if status is None:
            raise OpenAIBackendError(f"OpenAI job {job_id} has unknown status {state.status!r}")
        if status in mapping.TERMINAL:
            self._listing.finished(job_id)
        return await self._update(job_id, job, status, events, state)

    async def cancel(self, handle: Handle) -> None:
        """Idempotent: cancelling a job that already finished is not an error (see cancel_job)."""
        await self.cancel_job(handle)

    # ----- extras ------------------------------------------------------------------------------
    async def cancel_job(self, handle: Handle) -> RemoteStatus:
        """Cancel and say what the job is now: CANCELLED, or the terminal status it already had.

        OpenAI refuses (4xx) to cancel a finished job; that is the outcome the caller wanted
        anyway, so we report the job's real final status instead of raising.
        """
        job_id = handle.external_id
        self._listing.forget(job_id)
        try:
            job = await self._client.act("cancel", job_id)
        except OpenAIBackendError as exc:
            if exc.status_code not in (400, 409):
                raise
            current = mapping.remote_status((await self._client.retrieve(job_id)).status)
            if current in mapping.TERMINAL:
                return current
            raise
        return mapping.remote_status(job.status) or RemoteStatus.CANCELLED

    async def pause(self, handle: Handle) -> RemoteStatus:
        self._listing.forget(handle.external_id)
        job = await self._client.act("pause", handle.external_id)
        return mapping.remote_status(job.status) or RemoteStatus.PAUSED

    async def resume(self, handle: Handle) -> RemoteStatus:
        self._listing.forget(handle.external_id)
        job = await self._client.act("resume", handle.external_id)
        return mapping.remote_status(job.status) or RemoteStatus.RUNNING

    def poll_cycle(self, handles: Sequence[Handle]) -> AbstractAsyncContextManager[None]:
        """Polls of these jobs made inside take their status from list pages read on entry.

        Below `status_list_from` jobs a cycle is cheap anyway, and each job keeps its own
        status request (and its own error).
        """
        if len(handles) < self._status_list_from:
            return nullcontext()
        return self._listing.cycle([handle.external_id for handle in handles])

    async def poll_many(
        self, items: Sequence[tuple[Handle, str | None]]
    ) -> list[Update | BackendError]:
        """One poll cycle over many jobs, concurrently; one job's failure never hides another's."""
        async with self.poll_cycle([handle for handle, _ in items]):
            results = await asyncio.gather(
                *(self.poll(handle, cursor) for handle, cursor in items), return_exceptions=True
            )
        out: list[Update | BackendError] = []
        for result in results:
            if not isinstance(result, Update | BackendError):
                raise result
            out.append(result)
        return out

    async def find_job(self, job_id: str) -> FineTuningJob | None:
        """The provider job created for tunebridge job `job_id`, found by its metadata."""
        return await self._client.find_job(job_id, self._adopt_scan)

    # ----- internals ---------------------------------------------------------------------------
    def _with_status(self, state: PollCursor, job: FineTuningJob) -> PollCursor:
        epochs = mapping.job_epochs(job) or state.n_epochs
        return replace(state, status=job.status, checked_at=self._clock(), n_epochs=epochs)

    def _status_is_stale(
        self, state: PollCursor, events: list[FineTuningJobEvent], *, listed: bool
    ) -> bool:
        """Skip the status request for a live job whose news is nothing but metrics, or for a
        final status listed this cycle (its events were read after it)."""
        status = mapping.remote_status(state.status or "")
        if listed and status in mapping.TERMINAL:
            return False
        if any(not mapping.is_metrics_event(e) for e in events):
            return True  # a status change logs a message: it may be newer than the listing
        if listed:
            return False
        if state.status is None or state.checked_at is None:
            return True
        if status in (None, *mapping.TERMINAL):
            return True  # terminal: the result or error comes from a fresh job object
        return self._clock() - state.checked_at >= self._status_max_age_s

    async def _update(
        self,
        job_id: str,
        job: FineTuningJob | None,
        status: RemoteStatus,
        events: list[FineTuningJobEvent],
        state: PollCursor,
    ) -> Update:
        metric_events = [e for e in events if mapping.is_metrics_event(e)]
        samples = [mapping.metric_sample(e, state.n_epochs) for e in metric_events]
        result = error = None
        if job is not None and status is RemoteStatus.SUCCEEDED:
            result = mapping.job_result(job, await self._client.checkpoints(job_id))
        if job is not None and status is RemoteStatus.FAILED:
            error = mapping.job_error(job)
        return Update(
            status=status,
            metrics=[s for s in samples if s is not None],
            events=[mapping.backend_event(e) for e in events if not mapping.is_metrics_event(e)],
            cursor=state.dump(),
            result=result,
            error=error,
        )


def _handle(job: FineTuningJob, *, adopted: bool) -> Handle:
    return Handle(
        external_id=job.id,
        state={
            "model": job.model,
            "training_file": job.training_file,
            "validation_file": job.validation_file,
            "adopted": adopted,
        },
    )
