"""The one place a job changes status: event row and outbox row in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from storage.repositories.events import JobEventRepository
from storage.repositories.outbox import OutboxRepository
from storage.tables import Job, JobEvent, Notification
from tunebridge import subscriptions
from tunebridge.status import JobStatus, check_transition

_STATUS_TEXT = {
    JobStatus.VALIDATING: "is validating its data",
    JobStatus.AWAITING_APPROVAL: "is waiting for approval (its estimate is above the cap)",
    JobStatus.QUEUED: "is queued",
    JobStatus.RUNNING: "is running",
    JobStatus.PAUSED: "is paused",
    JobStatus.CANCELLING: "is being cancelled",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "was cancelled",
}


def notify(
    session: Session, job: Job, *, kind: str, dedupe_key: str, text: str, now: datetime,
    data: dict[str, Any] | None = None,
) -> Notification | None:
    """Queue a notification about `job` (and a copy per subscribed channel); a dedupe key
    already queued is silently skipped."""
    row = OutboxRepository(session).add_once(
        Notification(
            dedupe_key=dedupe_key,
            job_id=job.id,
            channel=job.slack_channel,
            kind=kind,
            payload={"text": text, "job_id": job.id, "data": data or {}},
            created_at=now,
        )
    )
    if row is not None:
        subscriptions.fan_out(session, job, row)
    return row


def record_creation(session: Session, job: Job, *, now: datetime, actor: str,
                    reasons: list[str] | None = None) -> JobEvent:
    state = _STATUS_TEXT[JobStatus(job.status)]
    why = f": {'; '.join(reasons)}" if reasons else ""
    event = JobEventRepository(session).add(
        JobEvent(job_id=job.id, kind="status", message=f"Job created by {actor}; it {state}{why}.",
                 to_status=job.status, data={"reasons": reasons} if reasons else None,
                 created_at=now)
    )
    notify(session, job, kind="status", dedupe_key=f"{job.id}:status:{event.id}",
           text=f"Job {job.id} ({job.backend}, {job.base_model}) {state}{why}.",
           now=now, data={"status": job.status, "creator": actor, "reasons": reasons or []})
    return event


def apply_transition(
    session: Session, job: Job, target: JobStatus, *, now: datetime, reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Raise IllegalTransition, or move the job and write its event and notification."""
    current = JobStatus(job.status)
    check_transition(job.id, current, target)
    job.status = target
    job.updated_at = now
    if target is JobStatus.RUNNING and job.started_at is None:
        job.started_at = now
    if target.is_terminal:
        job.finished_at = now
        job.next_poll_at = None
    session.add(job)
    message = f"Job {job.id} {_STATUS_TEXT[target]}" + (f": {reason}" if reason else ".")
    event = JobEventRepository(session).add(
        JobEvent(job_id=job.id, kind="status", message=message, from_status=current,
                 to_status=target, data=data, created_at=now)
    )
    notify(session, job, kind="status", dedupe_key=f"{job.id}:status:{event.id}", text=message,
           now=now, data={"status": str(target), "previous": str(current), **(data or {})})
    return event
