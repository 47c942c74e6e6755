"""Pushes from providers (OpenAI's webhooks): find the job they are about and poll it now.

A push only says *that* a job changed; what changed is read by the regular poll, through the
same code and the same stored cursor. So a repeated push costs at most one more poll, and the
job's status never comes from the push's body.
"""

from __future__ import annotations

import asyncio

from storage.database import Database
from storage.repositories.jobs import JobRepository
from storage.tables import Job
from tunebridge.poller import Poller


def _find(db: Database, backend: str, external_id: str) -> Job | None:
    with db.session() as session:
        return JobRepository(session).by_external_id(backend, external_id)


async def job_changed(*, db: Database, poller: Poller, backend: str,
                      external_id: str) -> Job | None:
    """Poll the job `backend` knows as `external_id` at once; None when it is not ours.

    Returns the job as stored after that poll (unchanged when it had already finished).
    """
    job = await asyncio.to_thread(_find, db, backend, external_id)
    if job is None or not await poller.poll_now(job.id):
        return job
    return await asyncio.to_thread(_find, db, backend, external_id)
