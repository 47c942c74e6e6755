"""The thin, bounded layer over the SDK's async client that the backend's policies use.

Every request takes a slot of one semaphore, so any number of concurrent polls stays within
`max_concurrency` requests in flight. Every SDK failure leaves here as an OpenAIBackendError
(see errors.py); nothing here retries or sleeps.

A poll cycle over many jobs is bound by this process's CPU, not by the network, so its requests
(a list page per 100 jobs' status, an events page per job) are made cheap, measured with
bench/poll.py:
- The connections are split over a few SDK clients (`pool_shards`) and each read goes to the
  least busy one: httpcore re-checks every idle connection of a pool on each request, so one
  pool of 32 costs several times the CPU per request of four pools of 8.
- Their bodies are read raw and validated by pydantic-core (`parse`), about 15x cheaper than
  the SDK's own pure-Python construction; a body the types reject (a status or level newer than
  this SDK) falls back to that lenient construction, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import httpx2
import openai
import pydantic
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from backends.openai.errors import OpenAIBackendError, translate
from backends.openai.mapping import JOB_ID_METADATA_KEY

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)


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
        pool_shards: int = 4,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._limit = asyncio.Semaphore(max_concurrency)
        self._events_page_size = events_page_size
        self._events_first_page = min(events_first_page, events_page_size)
        shards = max(1, min(pool_shards, max_concurrency))
        per_shard = -(-max_concurrency // shards)  # ceil: the shards together hold the bound
        timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
        self._readers = [
            _sdk(api_key, base_url, per_shard, timeout, max_retries) for _ in range(shards)
        ]
        self._busy = [0] * shards
        self.sdk = self._readers[0]
        # A POST the SDK retries after a lost response can create a second job: never retry.
        self.writer = self.sdk.with_options(max_retries=0)

    async def aclose(self) -> None:
        for sdk in self._readers:
            await sdk.close()

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

    async def read(self, action: str, op: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        """Like `call`, on the least busy shard: never more than its pool's share in flight."""
        async with self._limit:
            shard = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[shard] += 1
            try:
                return await op(self._readers[shard])
            except openai.OpenAIError as exc:
                raise translate(exc, action) from exc
            finally:
                self._busy[shard] -= 1

    async def retrieve(self, job_id: str) -> FineTuningJob:
        body = await self.read(
            f"retrieve {job_id}",
            lambda sdk: _raw_json(sdk.fine_tuning.jobs.with_raw_response.retrieve(job_id)),
        )
        return parse(FineTuningJob, body)

    async def jobs_page(
        self, after: str | None, *, limit: int, metadata: Mapping[str, str]
    ) -> tuple[list[FineTuningJob], bool]:
        """One page of the organisation's jobs with this metadata, newest first."""
        params: dict[str, Any] = {"limit": limit, "metadata": dict(metadata)}
        if after is not None:
            params["after"] = after
        body = await self.read(
            "list jobs",
            lambda sdk: _raw_json(sdk.fine_tuning.jobs.with_raw_response.list(**params)),
        )
        return [parse(FineTuningJob, j) for j in body.get("data") or ()], bool(body.get("has_more"))

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
        limit = self._events_first_page if after is None else self._events_page_size
        params: dict[str, Any] = {"limit": limit} if after is None else {"limit": limit,
                                                                          "after": after}
        body = await self.read(
            f"list events of {job_id}",
            lambda sdk: _raw_json(
                sdk.fine_tuning.jobs.with_raw_response.list_events(job_id, **params)),
        )
        events = [parse(FineTuningJobEvent, e) for e in body.get("data") or ()]
        return events, bool(body.get("has_more"))

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


def _sdk(api_key: str, base_url: str | None, pool_size: int, timeout: openai.Timeout,
         max_retries: int) -> openai.AsyncOpenAI:
    pool = httpx2.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout,
        http_client=openai.DefaultAsyncHttpxClient(limits=pool, timeout=timeout),
    )


async def _raw_json(response: Awaitable[Any]) -> Any:
    """The JSON body of an SDK `with_raw_response` call (errors were raised already)."""
    raw = await response
    try:
        return json.loads(raw.content)
    except ValueError as exc:  # e.g. an HTML page from a proxy: transient as far as we know
        raise OpenAIBackendError(f"OpenAI answered {raw.status_code} without JSON") from exc


def parse(model: type[M], data: Any) -> M:
    """Validate with pydantic-core; fall back to the SDK's lenient construction."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        if not isinstance(data, dict):
            raise OpenAIBackendError(f"OpenAI sent no {model.__name__} object") from exc
        constructed: M = model.construct(**data)
        return constructed


async def _page(list_call: Callable[..., Any], *args: Any, after: str | None, **kw: Any) -> Any:
    """Await one page of an SDK list call; `after=None` means from the newest item."""
    if after is not None:
        kw["after"] = after
    return await list_call(*args, **kw)
