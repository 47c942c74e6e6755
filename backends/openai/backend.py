"""OpenAI fine-tuning as a tunebridge Backend, on the official SDK's async client.

Three properties shape this class:
- Crash safety: every job carries `metadata.tunebridge_job_id`; `submit` first looks for a job
  with our id and adopts it, so a crash (or a timed-out POST) between the provider's create and
  our commit never starts a second, billable job. Writes are never retried by the SDK itself.
- Restartability: `poll` needs only the Handle and the cursor the services stored, so a fresh
  instance after a gateway restart continues without duplicating or losing events.
- Bounded concurrency: every HTTP request takes a slot of one semaphore (and the connection pool
  has the same size), so a poll cycle over a thousand jobs runs concurrently without flooding
  the provider. Failures surface as BackendError at once; the poller owns back-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx2
import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from backends.base import BackendError, Handle, JobSpec, RemoteStatus, Update
from backends.openai import mapping
from backends.openai.errors import OpenAIBackendError, translate
from backends.openai.events import EventCursor, new_events
from backends.openai.files import FileUploader

T = TypeVar("T")
MiB = 1024 * 1024


class OpenAIBackend:
    """Backend protocol implementation; also offers `pause`, `resume` and `poll_many`."""

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
        adopt_scan: int = 100,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self._limit = asyncio.Semaphore(max_concurrency)
        self._events_page_size = events_page_size
        self._adopt_scan = adopt_scan
        pool = httpx2.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )
        timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=pool, timeout=timeout),
        )
        # A POST the SDK retries after a lost response can create a second job: never retry.
        self._writer = self._client.with_options(max_retries=0)
        self._files = FileUploader(
            self._writer,
            self._call,
            single_upload_limit=single_upload_limit,
            part_size=upload_part_size,
            adopt_scan=adopt_scan,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- Backend protocol --------------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> Handle:
        """Adopt the job already created for `spec.job_id`, or upload the files and create it."""
        existing = await self.find_job(spec.job_id)
        if existing is not None:
            return self._handle(existing, adopted=True)
        try:
            mapping.method_payload(spec)  # reject an unsupported method before uploading
            training = await self._files.ensure(spec.training_file, spec.job_id, "train")
            validation = None
            if spec.validation_file is not None:
                validation = await self._files.ensure(spec.validation_file, spec.job_id, "valid")
        except (OSError, mapping.UnsupportedMethod) as exc:
            raise BackendError(f"cannot submit to OpenAI: {exc}", retryable=False) from exc
        params = mapping.create_params(spec, training, validation)
        job = await self._call(
            f"create job for {spec.job_id}",
            lambda: self._writer.fine_tuning.jobs.create(**params),
        )
        return self._handle(job, adopted=False)

    async def poll(self, handle: Handle, cursor: str | None) -> Update:
        """Status first, then events: a terminal status is never reported before its last events."""
        job_id = handle.external_id
        job = await self._retrieve(job_id)
        status = mapping.remote_status(job.status)
        if status is None:
            raise OpenAIBackendError(f"OpenAI job {job_id} has unknown status {job.status!r}")
        events, next_cursor = await new_events(
            partial(self._events_page, job_id), EventCursor.load(cursor)
        )
        metrics_events = [e for e in events if mapping.is_metrics_event(e)]
        epochs = _epochs(job)
        samples = [mapping.metric_sample(e, epochs) for e in metrics_events]
        result = None
        if status is RemoteStatus.SUCCEEDED:
            result = mapping.job_result(job, await self._checkpoints(job_id))
        return Update(
            status=status,
            metrics=[s for s in samples if s is not None],
            events=[mapping.backend_event(e) for e in events if not mapping.is_metrics_event(e)],
            cursor=next_cursor.dump(),
            result=result,
            error=mapping.job_error(job) if status is RemoteStatus.FAILED else None,
        )

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
        try:
            job = await self._call(
                f"cancel {job_id}", lambda: self._writer.fine_tuning.jobs.cancel(job_id)
            )
        except OpenAIBackendError as exc:
            if exc.status_code not in (400, 409):
                raise
            current = mapping.remote_status((await self._retrieve(job_id)).status)
            if current in mapping.TERMINAL:
                return current
            raise
        return mapping.remote_status(job.status) or RemoteStatus.CANCELLED

    async def pause(self, handle: Handle) -> RemoteStatus:
        job_id = handle.external_id
        job = await self._call(
            f"pause {job_id}", lambda: self._writer.fine_tuning.jobs.pause(job_id)
        )
        return mapping.remote_status(job.status) or RemoteStatus.PAUSED

    async def resume(self, handle: Handle) -> RemoteStatus:
        job_id = handle.external_id
        job = await self._call(
            f"resume {job_id}", lambda: self._writer.fine_tuning.jobs.resume(job_id)
        )
        return mapping.remote_status(job.status) or RemoteStatus.RUNNING

    async def poll_many(
        self, items: Sequence[tuple[Handle, str | None]]
    ) -> list[Update | BackendError]:
        """One poll cycle over many jobs, concurrently; one job's failure never hides another's."""
        results = await asyncio.gather(
            *(self.poll(handle, cursor) for handle, cursor in items), return_exceptions=True
        )
        out: list[Update | BackendError] = []
        for result in results:
            if isinstance(result, Update | BackendError):
                out.append(result)
            else:
                raise result
        return out

    async def find_job(self, job_id: str) -> FineTuningJob | None:
        """The newest provider job whose metadata carries our job id, if any.

        Filters server-side with `metadata[tunebridge_job_id]=...` and checks client-side too,
        scanning at most `adopt_scan` jobs in case a proxy ignores the filter.
        """
        jobs = self._client.fine_tuning.jobs
        after: str | None = None
        scanned = 0
        while scanned < self._adopt_scan:
            page = await self._call(
                f"find job {job_id}",
                partial(_first_page, jobs.list, metadata={mapping.JOB_ID_METADATA_KEY: job_id},
                        limit=min(100, self._adopt_scan), after=after),
            )  # fmt: skip
            for job in page.data:
                if (job.metadata or {}).get(mapping.JOB_ID_METADATA_KEY) == job_id:
                    return job
            scanned += len(page.data)
            if not page.has_more or not page.data:
                return None
            after = page.data[-1].id
        return None

    # ----- internals ---------------------------------------------------------------------------
    async def _call(self, action: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one SDK request inside a concurrency slot, translating its failures."""
        async with self._limit:
            try:
                return await op()
            except openai.OpenAIError as exc:
                raise translate(exc, action) from exc

    async def _retrieve(self, job_id: str) -> FineTuningJob:
        return await self._call(
            f"retrieve {job_id}", lambda: self._client.fine_tuning.jobs.retrieve(job_id)
        )

    async def _events_page(
        self, job_id: str, after: str | None
    ) -> tuple[list[FineTuningJobEvent], bool]:
        page = await self._call(
            f"list events of {job_id}",
            partial(_first_page, self._client.fine_tuning.jobs.list_events, job_id,
                    limit=self._events_page_size, after=after),
        )  # fmt: skip
        return list(page.data), bool(page.has_more)

    async def _checkpoints(self, job_id: str) -> list[FineTuningJobCheckpoint]:
        listing = self._client.fine_tuning.jobs.checkpoints.list
        found: list[FineTuningJobCheckpoint] = []
        after: str | None = None
        while True:
            page = await self._call(
                f"list checkpoints of {job_id}",
                partial(_first_page, listing, job_id, limit=100, after=after),
            )
            found.extend(page.data)
            if not page.has_more or not page.data:
                return found
            after = page.data[-1].id

    def _handle(self, job: FineTuningJob, *, adopted: bool) -> Handle:
        return Handle(
            external_id=job.id,
            state={
                "model": job.model,
                "training_file": job.training_file,
                "validation_file": job.validation_file,
                "adopted": adopted,
            },
        )


async def _first_page(
    list_call: Callable[..., Any], *args: Any, after: str | None, **kw: Any
) -> Any:
    """Await one page of an SDK list call; `after=None` means from the newest item."""
    if after is not None:
        kw["after"] = after
    return await list_call(*args, **kw)


def _epochs(job: FineTuningJob) -> int | None:
    """The job's resolved epoch count, from the top level or from its method's hyperparameters."""
    candidates: list[Any] = [job.hyperparameters.n_epochs if job.hyperparameters else None]
    if job.method is not None:
        for settings in (job.method.supervised, job.method.dpo):
            if settings is not None and settings.hyperparameters is not None:
                candidates.append(settings.hyperparameters.n_epochs)
    return next((c for c in candidates if isinstance(c, int) and not isinstance(c, bool)), None)
