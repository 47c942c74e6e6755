"""Runs the training-health detector on every poll that brought metrics.

Each (job, kind) finding is queued once (the outbox dedupe key is the finding's kind), in the
same transaction as the metrics it was found in. With the job option `auto_stop` (or the server
default), a finding the stop policy names moves the job to `cancelling`: the local trainer stops
gracefully and keeps its adapter, OpenAI jobs are cancelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from storage.repositories.events import JobEventRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import Job, JobEvent
from tunebridge.health import AutoStopPolicy, MetricSeries, analyze, decide_stop
from tunebridge.lifecycle import apply_transition, notify
from tunebridge.status import TRANSITIONS, JobStatus

_ROW_FIELDS = ("step", "epoch", "train_loss", "eval_loss", "grad_norm", "learning_rate")


def _series(session: Session, job: Job, total_steps: int | None) -> MetricSeries:
    points = MetricRepository(session).page(job.id, after_step=None, limit=100_000)
    rows: list[dict[str, Any]] = [
        {**{name: getattr(p, name) for name in _ROW_FIELDS}, "extra": p.extra or {}}
        for p in points
    ]
    return MetricSeries.from_rows(rows, total_steps=total_steps)


def watch(session: Session, job: Job, *, now: datetime, total_steps: int | None,
          auto_stop_default: bool) -> None:
    report = analyze(_series(session, job, total_steps))
    events = JobEventRepository(session)
    for finding in report.findings:
        key = f"health:{finding.kind}"
        if events.has_dedupe_key(job.id, key):
            continue
        data = {**finding.as_dict(), "best_eval_step": report.best_eval_step,
                "mention_creator": True}
        events.add(JobEvent(job_id=job.id, kind="health", level=str(finding.severity),
                            message=finding.message, dedupe_key=key, data=data,
                            created_at=now))
        notify(session, job, kind="health", dedupe_key=f"{job.id}:{key}",
               text=f"{finding.severity.upper()} {finding.kind} at step {finding.step}: "
                    f"{finding.message} Fixes: {'; '.join(finding.fixes)}",
               now=now, data=data)
    if not bool(job.options.get("auto_stop", auto_stop_default)):
        return
    decision = decide_stop(report, AutoStopPolicy())
    current = JobStatus(job.status)
    if decision.stop and JobStatus.CANCELLING in TRANSITIONS[current] and job.handle:
        job.next_poll_at = None
        apply_transition(session, job, JobStatus.CANCELLING, now=now,
                         reason=f"auto-stop: {decision.reason}",
                         data={"auto_stop": decision.kind, "keep_step": decision.keep_step})
