"""Runs the runaway checks on every poll of a running job, inside the poll's transaction.

Each kind (time budget, cost cap, overrun) is stored as a job event and queued for the job's
thread once — the dedupe key is the kind — with the on-call group mentioned. When the job's
policy says so (`auto_cancel_runaway`, or the server default) the job moves to `cancelling`,
audited like any other cancel with actor "tunebridge" from source "policy".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlmodel import Session

from storage.repositories.audit import AuditRepository
from storage.repositories.events import JobEventRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import AuditLog, Job, JobEvent
from tunebridge import runaway
from tunebridge.lifecycle import apply_transition, notify
from tunebridge.runaway import RunawayDefaults, RunawayFinding, RunawayKind, RunawayPolicy
from tunebridge.status import TRANSITIONS, JobStatus

WATCHED = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})
ACTOR, SOURCE = "tunebridge", "policy"


def watch(session: Session, job: Job, *, now: datetime, defaults: RunawayDefaults) -> None:
    """Running jobs: every limit, and cancel when the policy says. A job that has just
    succeeded with a billed-token count (OpenAI reports it only then): the cost cap alone."""
    status = JobStatus(job.status)
    finished = status is JobStatus.SUCCEEDED and bool((job.result or {}).get("trained_tokens"))
    if status not in WATCHED and not finished:
        return
    policy = runaway.policy_for(job.options, defaults)
    result = runaway.check(job, now=now, fraction=_fraction(session, job, policy),
                           policy=policy)
    if finished:
        costs = [f for f in result.findings if f.kind is RunawayKind.COST_CAP]
        result = runaway.RunawayCheck(costs, [])
        policy = replace(policy, auto_cancel=False)
    events = JobEventRepository(session)
    for note in result.unchecked:
        key = f"runaway:unchecked:{note.split(':')[0]}"[:200]
        if not events.has_dedupe_key(job.id, key):
            events.add(JobEvent(job_id=job.id, kind="runaway", level="info", message=note,
                                dedupe_key=key, data={"unchecked": note}, created_at=now))
    for finding in result.findings:
        _flag_once(session, events, job, finding, policy, now)
    if result.findings and policy.auto_cancel:
        _cancel(session, job, result.findings[0], now)


def _fraction(session: Session, job: Job, policy: RunawayPolicy) -> float | None:
    """Share of the planned steps done; only OpenAI's pro-rated cost needs it."""
    if job.backend != "openai" or policy.max_cost_usd is None:
        return None
    point = MetricRepository(session).latest(job.id)
    if point is None:
        return None
    total = (point.extra or {}).get("total_steps") or job.hyperparameters.get("max_steps")
    if not isinstance(total, int | float) or isinstance(total, bool) or total <= 0:
        return None
    return point.step / float(total)


def _flag_once(session: Session, events: JobEventRepository, job: Job, finding: RunawayFinding,
               policy: RunawayPolicy, now: datetime) -> None:
    key = f"runaway:{finding.kind}"
    if events.has_dedupe_key(job.id, key):
        return
    data = {"kind": str(finding.kind), **finding.data, "auto_cancel": policy.auto_cancel,
            "mention_oncall": True, "mention_creator": True}
    events.add(JobEvent(job_id=job.id, kind="runaway", level="warning", message=finding.message,
                        dedupe_key=key, data=data, created_at=now))
    if JobStatus(job.status).is_terminal:
        then = "It has finished."
    elif policy.auto_cancel:
        then = "It is being cancelled (runaway policy)."
    else:
        then = "On-call: cancel it if it should not go on."
    notify(session, job, kind="runaway", dedupe_key=f"{job.id}:{key}",
           text=f"Runaway job {job.id} ({finding.kind}): {finding.message} {then}",
           now=now, data=data)


def _cancel(session: Session, job: Job, finding: RunawayFinding, now: datetime) -> None:
    current = JobStatus(job.status)
    if not job.handle or JobStatus.CANCELLING not in TRANSITIONS[current]:
        return
    job.next_poll_at = None  # the next tick forwards the cancel to the backend
    apply_transition(session, job, JobStatus.CANCELLING, now=now,
                     reason=f"runaway ({finding.kind}), cancelled by policy: {finding.message}",
                     data={"runaway": str(finding.kind), "actor": ACTOR})
    AuditRepository(session).add(AuditLog(
        actor=ACTOR, action="cancel", job_id=job.id, source=SOURCE,
        detail={"outcome": str(JobStatus.CANCELLING), "runaway": str(finding.kind),
                "reason": finding.message}, created_at=now))
