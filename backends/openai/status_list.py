"""Many jobs' status from list pages, once per poll cycle: a request per 100 jobs, not per job.

The API lists an organisation's jobs newest first; we ask only for the ones tunebridge created
(`metadata[created_by]=tunebridge`, see mapping.OWNER_METADATA). A cycle pages until every job
it tracks was seen, or until a page is older than every job still missing (creation times are
learnt from each job object we read), and never past as many pages as the jobs would fill plus
one. A job not seen (created before the marker existed, by hand, or beyond those pages) is just
absent, and its poll falls back to `retrieve`.

Each listed status is handed out once (`take`) and only inside the cycle that read it, so no
poll acts on a status older than its cycle. An error on a page is handed to every job still
missing: a 429 makes them all back off, instead of sending a retrieve per job into it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

from openai.types.fine_tuning import FineTuningJob

from backends.base import BackendError

ListPage = Callable[[str | None], Awaitable[tuple[list[FineTuningJob], bool]]]
Listed = FineTuningJob | BackendError


class StatusListing:
    def __init__(self, list_page: ListPage, *, page_size: int) -> None:
        self._list_page = list_page
        self._page_size = page_size
        self._listed: dict[str, Listed] = {}  # this cycle's statuses (or errors), not yet taken
        self._created: dict[str, int] = {}  # job id -> created_at, from any job object we read

    def saw(self, job: FineTuningJob) -> None:
        """Remember when a job was created, so later cycles know when to stop paging."""
        self._created[job.id] = job.created_at

    def forget(self, job_id: str) -> None:
        """Drop a listed status that an action (cancel, pause, resume) has just made stale."""
        self._listed.pop(job_id, None)

    def finished(self, job_id: str) -> None:
        """A job that ended is polled no more: nothing about it needs remembering."""
        self._listed.pop(job_id, None)
        self._created.pop(job_id, None)

    def take(self, job_id: str) -> FineTuningJob | None:
        """This cycle's listed job, once; None when it was not listed; raises the page's error."""
        entry = self._listed.pop(job_id, None)
        if isinstance(entry, BackendError):
            raise copy.copy(entry)  # one exception object per poll: tracebacks are not shared
        return entry

    @asynccontextmanager
    async def cycle(self, job_ids: Collection[str]) -> AsyncIterator[None]:
        """List the jobs' status for the polls made inside; what they did not take is dropped."""
        found = await self._read(set(job_ids))
        self._listed.update(found)
        try:
            yield
        finally:
            for job_id, entry in found.items():
                if self._listed.get(job_id) is entry:
                    del self._listed[job_id]

    async def _read(self, wanted: set[str]) -> dict[str, Listed]:
        found: dict[str, Listed] = {}
        after: str | None = None
        for _ in range(-(-len(wanted) // self._page_size) + 1):
            try:
                page, has_more = await self._list_page(after)
            except BackendError as exc:
                return found | dict.fromkeys(wanted - found.keys(), exc)
            for job in page:
                if job.id in wanted:
                    self.saw(job)
                    found[job.id] = job
            if not has_more or not page or self._passed(page[-1], wanted - found.keys()):
                break
            after = page[-1].id
        return found

    def _passed(self, oldest_listed: FineTuningJob, missing: set[str]) -> bool:
        """True when no job still missing can come on a later page (or none is missing)."""
        if any(job_id not in self._created for job_id in missing):
            return False
        return all(self._created[j] > oldest_listed.created_at for j in missing)
