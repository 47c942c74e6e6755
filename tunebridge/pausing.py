"""Pause and resume a running job where its backend can (OpenAI can; the local trainer cannot).

Cancel is forwarded by the poller, because a job must stop even if the provider is down for a
while. Pause and resume are asked of the provider at once instead, so the caller learns straight
away whether it worked; the poller keeps following the job either way. Every attempt is audited,
refused ones too, as cancels are.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol, runtime_checkable

from backends.base import BackendError, Handle, RemoteStatus
from backends.registry import BackendRegistry, UnknownBackend
from storage.database import Database
from storage.repositories.audit import AuditRepository
from storage.repositories.jobs import JobRepository
from storage.tables import AuditLog, Job
from tunebridge.clock import Clock
from tunebridge.errors import Conflict, NotFound, TunebridgeError, Unavailable
from tunebridge.jobs import Actor
from tunebridge.lifecycle import apply_transition
from tunebridge.poller import REMOTE_TO_JOB, Poller
from tunebridge.status import TRANSITIONS, JobStatus, check_transition


@runtime_checkable
class PausableBackend(Protocol):
    """A backend whose provider can hold a job and continue it later."""

    async def pause(self, handle: Handle) -> RemoteStatus: ...

    async def resume(self, handle: Handle) -> RemoteStatus: ...


async def pause_job(*, db: Database, poller: Poller, clock: Clock, job_id: str,
                    actor: Actor) -> Job:
    """Pause a running job at its provider; 409 when the job or its backend cannot pause."""
    return await _ask(db=db, poller=poller, clock=clock, job_id=job_id, actor=actor,
                      verb="pause", target=JobStatus.PAUSED)


async def resume_job(*, db: Database, poller: Poller, clock: Clock, job_id: str,
                     actor: Actor) -> Job:
    """Continue a paused job at its provider; 409 when it is not paused."""
    return await _ask(db=db, poller=poller, clock=clock, job_id=job_id, actor=actor,
                      verb="resume", target=JobStatus.RUNNING)


async def _ask(*, db: Database, poller: Poller, clock: Clock, job_id: str, actor: Actor,
               verb: str, target: JobStatus) -> Job:
    try:
        async with poller.exclusive(job_id):  # no poll of this job commits in between
            backend, handle = await asyncio.to_thread(
                _checked, db, poller.registry, job_id, verb, target)
            action = backend.pause if verb == "pause" else backend.resume
            try:
                remote = await action(handle)
            except BackendError as exc:
                raise _provider_error(job_id, verb, exc) from exc
            return await asyncio.to_thread(_record, db, clock, job_id, actor, verb, remote)
    except (Conflict, Unavailable) as refused:
        await asyncio.to_thread(_audit, db, clock, actor, job_id, verb,
                                {"outcome": "refused", "code": refused.code})
        raise


def _checked(db: Database, registry: BackendRegistry, job_id: str, verb: str,
             target: JobStatus) -> tuple[PausableBackend, Handle]:
    """The job's backend and handle, if this job can `verb` now; else the reason, raised."""
    with db.session() as session:
        job = JobRepository(session).get(job_id)
    if job is None:
        raise NotFound("job", job_id)
    try:
        backend = registry.get(job.backend)
    except UnknownBackend:
        backend = None
    if not isinstance(backend, PausableBackend):
        raise Conflict(f"{verb}_unsupported",
                       f"Backend {job.backend!r} cannot {verb} jobs; cancel the job instead.",
                       details={"job_id": job_id, "backend": job.backend})
    check_transition(job_id, JobStatus(job.status), target)
    if job.handle is None:
        raise Conflict("not_submitted", f"Job {job_id} has not reached {job.backend} yet.",
                       details={"job_id": job_id, "status": job.status})
    return backend, Handle(external_id=job.external_id or "", state=job.handle)


def _provider_error(job_id: str, verb: str, exc: BackendError) -> TunebridgeError:
    if exc.retryable:
        return Unavailable(f"The provider did not {verb} job {job_id} now ({exc}); retry.")
    return Conflict(f"{verb}_refused", f"The provider refused to {verb} job {job_id}: {exc}",
                    details={"job_id": job_id})


def _record(db: Database, clock: Clock, job_id: str, actor: Actor, verb: str,
            remote: RemoteStatus) -> Job:
    """Follow what the provider now says; a status it has not reached yet is left to the poller."""
    now = clock.now()
    with db.session() as session:
        job = JobRepository(session).get(job_id, for_update=True)
        if job is None:
            raise NotFound("job", job_id)
        reached = REMOTE_TO_JOB[remote]
        if reached != job.status and reached in TRANSITIONS[JobStatus(job.status)]:
            apply_transition(session, job, reached, now=now, reason=f"{verb}d by {actor.name}")
        job.next_poll_at = None  # due now: a woken poller follows the change at once
        AuditRepository(session).add(_entry(actor, job_id, verb, {"outcome": str(reached)}, now))
        return job


def _audit(db: Database, clock: Clock, actor: Actor, job_id: str, verb: str,
           detail: dict[str, str]) -> None:
    with db.session() as session:
        AuditRepository(session).add(_entry(actor, job_id, verb, detail, clock.now()))


def _entry(actor: Actor, job_id: str, verb: str, detail: dict[str, str],
           now: datetime) -> AuditLog:
    return AuditLog(actor=actor.name, action=verb, job_id=job_id, source=actor.source,
                    remote=actor.remote, detail=detail, created_at=now)
