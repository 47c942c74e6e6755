"""Who may cancel a job (its creator, on-call, admins) or approve one held by a cost cap (on-call
and admins: a cap is a second pair of eyes, so the creator alone cannot release it). Every
refusal is audited like the action it refused.

The chat side says whether the caller is on-call or an admin (it owns those directories); the
rule and the audit trail live here, so HTTP, Slack and the CLI cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.database import Database
from storage.repositories.audit import AuditRepository
from storage.tables import AuditLog, Job
from tunebridge.clock import Clock
from tunebridge.errors import TunebridgeError
from tunebridge.jobs import Actor, approve_job, cancel_job, get_job


class NotAllowed(TunebridgeError):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            "cancel_not_allowed",
            f"Only the creator of {job_id}, on-call or an admin can cancel it.",
            details={"job_id": job_id})


class ApprovalNotAllowed(TunebridgeError):
    def __init__(self, job_id: str) -> None:
        super().__init__(
            "approve_not_allowed",
            f"Only on-call or an admin can approve {job_id}: its estimate is over a cap.",
            details={"job_id": job_id})


@dataclass(frozen=True)
class Grants:
    admin: bool = False
    oncall: bool = False


def cancel_as(*, db: Database, clock: Clock, job_id: str, actor: Actor,
              grants: Callable[[], Grants]) -> Job:
    """Cancel if `actor` created the job or `grants()` says on-call/admin; else audit and raise.

    `grants` is only called for non-creators: it may ask a directory over the network.
    """
    job = get_job(db=db, job_id=job_id)
    if job.creator != actor.name:
        granted = grants()
        if not (granted.admin or granted.oncall):
            _refused(db, clock, actor, job_id, "cancel", NotAllowed(job_id))
    return cancel_job(db=db, clock=clock, job_id=job_id, actor=actor)


def approve_as(*, db: Database, clock: Clock, job_id: str, actor: Actor,
               grants: Callable[[], Grants]) -> Job:
    """Approve if `grants()` says on-call/admin; else audit the refusal and raise."""
    get_job(db=db, job_id=job_id)  # an unknown job is a 404, not a refusal
    granted = grants()
    if not (granted.admin or granted.oncall):
        _refused(db, clock, actor, job_id, "approve", ApprovalNotAllowed(job_id))
    return approve_job(db=db, clock=clock, job_id=job_id, actor=actor)


def _refused(db: Database, clock: Clock, actor: Actor, job_id: str, action: str,
             error: TunebridgeError) -> None:
    with db.session() as session:
        AuditRepository(session).add(AuditLog(
            actor=actor.name, action=action, job_id=job_id, source=actor.source,
            remote=actor.remote, created_at=clock.now(),
            detail={"outcome": "refused", "code": error.code}))
    raise error
