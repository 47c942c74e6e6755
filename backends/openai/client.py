"""The thin, bounded layer over the SDK's async client that the backend's policies use.

Every request takes a slot of one semaphore, and the connection pool has the same size, so any
number of concurrent polls stays within `max_concurrency` requests in flight. Every SDK failure
leaves here as an OpenAIBackendError (see errors.py); nothing here retries or sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import httpx2
import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from backends.openai.errors import translate
from backends.openai.mapping import JOB_ID_METADATA_KEY

T = TypeVar("T")


class BoundedClient:
    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        *,
        max_concurrency: int,
        timeout_s: float,
        connect_timeout_s: float,
        max_retries: int,
        events_page_size: int,
        events_first_page: int,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._limit = asyncio.Semaphore(max_concurrency)
        self._events_page_size = events_page_size
        self._events_first_page = min(events_first_page, events_page_size)
        pool = httpx2.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )
        timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
        self.sdk = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=pool, timeout=timeout),
        )
        # A POST the SDK retries after a lost response can create a second job: never retry.
        self.writer = self.sdk.with_options(max_retries=0)

    async def aclose(self) -> None:
        await self.sdk.close()

    async def call(self, action: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one SDK request inside a concurrency slot, translating its failures."""
        async with self._limit:
            try:
                return await op()
            except openai.OpenAIError as exc:
                raise translate(exc, action) from exc

    async def create_job(self, params: dict[str, Any]) -> FineTuningJob:
        tb_id = params["metadata"][JOB_ID_METADATA_KEY]
        jobs = self.writer.fine_tuning.jobs
        return await self.call(f"create job for {tb_id}", lambda: jobs.create(**params))

    async def retrieve(self, job_id: str) -> FineTuningJob:
        jobs = self.sdk.fine_tuning.jobs
        return await self.call(f"retrieve {job_id}", lambda: jobs.retrieve(job_id))

    async def act(self, verb: str, job_id: str) -> FineTuningJob:
        """POST .../{job_id}/{verb} for cancel, pause and resume."""
        method = getattr(self.writer.fine_tuning.jobs, verb)
        job: FineTuningJob = await self.call(f"{verb} {job_id}", lambda: method(job_id))
        return job

    async def events_page(
        self, job_id: str, after: str | None
    ) -> tuple[list[FineTuningJobEvent], bool]:
        """One page of events, newest first.

        The first page is small because between two polls only a few events arrive, and every
        event on a page costs parsing; catching up on a long history uses full pages.
        """
        listing = self.sdk.fine_tuning.jobs.list_events
        limit = self._events_first_page if after is None else self._events_page_size
        page = await self.call(
            f"list events of {job_id}", partial(_page, listing, job_id, limit=limit, after=after)
        )
        return list(page.data), bool(page.has_more)

    async def checkpoints(self, job_id: str) -> list[FineTuningJobCheckpoint]:
        listing = self.sdk.fine_tuning.jobs.checkpoints.list
        found: list[FineTuningJobCheckpoint] = []
        after: str | None = None
        while True:
            page = await self.call(
                f"list checkpoints of {job_id}",
                partial(_page, listing, job_id, limit=100, after=after),
            )
            found.extend(page.data)
            if not page.has_more or not page.data:
                return found
            after = page.data[-1].id

    async def find_job(self, tb_job_id: str, scan: int) -> FineTuningJob | None:
        """The newest provider job whose metadata carries our job id, if any.

        Filters server-side with `metadata[tunebridge_job_id]=...` and checks client-side too,
        scanning at most `scan` jobs in case a proxy ignores the filter.
        """
        listing = self.sdk.fine_tuning.jobs.list
        wanted = {JOB_ID_METADATA_KEY: tb_job_id}
        after: str | None = None
        scanned = 0
        while scanned < scan:
            page = await self.call(
                f"find job {tb_job_id}",
                partial(_page, listing, metadata=wanted, limit=min(100, scan), after=after),
            )
            for job in page.data:
                if (job.metadata or {}).get(JOB_ID_METADATA_KEY) == tb_job_id:
                    return job
            scanned += len(page.data)
            if not page.has_more or not page.data:
                return None
            after = page.data[-1].id
        return None


async def _page(list_call: Callable[..., Any], *args: Any, after: str | None, **kw: Any) -> Any:
    """Await one page of an SDK list call; `after=None` means from the newest item."""
    if after is not None:
        kw["after"] = after
    return await list_call(*args, **kw)
