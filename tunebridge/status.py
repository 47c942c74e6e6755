"""Job status and its single transition table."""

from __future__ import annotations

from enum import StrEnum

from tunebridge.errors import Conflict


class JobStatus(StrEnum):
    VALIDATING = "validating"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return not self.is_terminal


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# A job is born validating (checks that need the whole file) or queued (checks already done).
INITIAL = frozenset({JobStatus.VALIDATING, JobStatus.AWAITING_APPROVAL, JobStatus.QUEUED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.VALIDATING: frozenset(
        {JobStatus.QUEUED, JobStatus.AWAITING_APPROVAL, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.AWAITING_APPROVAL: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED,
         JobStatus.SUCCEEDED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.PAUSED, JobStatus.CANCELLING, JobStatus.SUCCEEDED, JobStatus.FAILED,
         JobStatus.CANCELLED}
    ),
    JobStatus.PAUSED: frozenset(
        {JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.FAILED}
    ),
    JobStatus.CANCELLING: frozenset(
        {JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Conflict):
    def __init__(self, job_id: str, current: JobStatus, target: JobStatus) -> None:
        super().__init__(
            "illegal_transition",
            f"Job {job_id} is {current}; it cannot become {target}.",
            details={"job_id": job_id, "status": str(current), "requested": str(target)},
        )
        self.current = current
        self.target = target


def check_transition(job_id: str, current: JobStatus, target: JobStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current, target)
