"""Runs the training-health detector on polls that brought metrics.

The detector rereads the whole series (a finding's step is where it became certain, so a late
run finds the same step an early one would have); that costs ~1.7 s of CPU for a 20,000-step
run. So a long series is re-analysed at most once a minute per job — sooner when the new points
cannot wait (a NaN/inf, a gradient norm past the exploding line, an evaluation, the run's end).
Short series (most runs) are analysed on every poll.

The poller runs the detector before its write transaction (`assess`): the stored points are read
without a write lock (SQLite has one for the whole database) and merged in memory with the poll's
new ones, so the series judged is the one the poll commits; one poll per job runs at a time.
`record` then stores the findings under the job's lock. Each (job, kind) finding is queued once
(the outbox dedupe key is the finding's kind, checked under that lock), in the same transaction
as the metrics it was found in. With the job option `auto_stop` (or the server default), a
finding the stop policy names moves the job to `cancelling`: the local trainer stops gracefully
and keeps its adapter, OpenAI jobs are cancelled.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from backends.base import MetricSample
from storage.database import Database
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import Job, JobEvent, MetricPoint
from tunebridge import metrics_store
from tunebridge.health import (
    AutoStopPolicy,
    HealthReport,
    LrSchedule,
    MetricSeries,
    ScheduleType,
    analyze,
    decide_stop,
)
from tunebridge.lifecycle import apply_transition, notify
from tunebridge.status import TRANSITIONS, JobStatus

_ROW_FIELDS = ("step", "epoch", "train_loss", "eval_loss", "grad_norm", "learning_rate")


MAX_POINTS = 100_000  # the longest series read back


def series_of(points: Sequence[MetricPoint], total_steps: int | None = None) -> MetricSeries:
    """Stored points (ordered by step) as the detector's series (NaN/inf restored from
    extras)."""
    rows: list[dict[str, Any]] = [
        {**{name: getattr(p, name) for name in _ROW_FIELDS}, "extra": p.extra or {}}
        for p in points[:MAX_POINTS]
    ]
    return MetricSeries.from_rows(rows, total_steps=total_steps)


def series_for(session: Session, job: Job, total_steps: int | None = None) -> MetricSeries:
    """The job's stored points as the detector's series."""
    return series_of(MetricRepository(session).page(job.id, after_step=None, limit=MAX_POINTS),
                     total_steps)


def schedule_for(job: Job) -> LrSchedule | None:
    """The lr schedule the job asked for, from its resolved hyperparameters: peak
    `learning_rate`, `warmup_ratio` (or `warmup_steps`), `lr_scheduler_type` (HF's default,
    linear, when unset) and `max_steps`. OpenAI jobs set only a multiplier and their metrics
    carry no lr, so they have none; nor has a scheduler type the check does not model."""
    hp = job.hyperparameters or {}
    peak = _number(hp.get("learning_rate"))
    if job.backend == "openai" or not peak:
        return None
    name = str(hp.get("lr_scheduler_type") or ScheduleType.LINEAR)
    try:  # HF's "constant" ignores warm-up; "constant_with_warmup" ramps first
        kind = ScheduleType(name.removesuffix("_with_warmup"))
    except ValueError:
        return None
    warmup_steps = _number(hp.get("warmup_steps")) or None  # HF: 0 defers to the ratio
    ratio = _number(hp.get("warmup_ratio"))
    if name == ScheduleType.CONSTANT:
        warmup_steps, ratio = 0.0, None
    max_steps = _number(hp.get("max_steps"))
    return LrSchedule(
        type=kind, peak_lr=peak,
        warmup_steps=int(warmup_steps) if warmup_steps is not None else None,
        warmup_ratio=ratio, total_steps=int(max_steps) if max_steps else None)


def _number(value: Any) -> float | None:
    """A non-negative number from the job's JSON, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


class AnalysisPace:
    """Whether a poll's new points warrant rerunning the detector now. State is per process
    and only ever skips work: a restart (or an unknown job) analyses at once."""

    URGENT_GRAD_NORM = 100.0  # the seed's "exploding" line

    def __init__(self, *, small_series: int = 2_000, every_s: float = 60.0) -> None:
        self.small_series = small_series
        self.every_s = every_s
        self._last: dict[str, tuple[int, datetime]] = {}  # job -> (points analysed, when)
        self._lock = threading.Lock()

    def due(self, job_id: str, *, samples: Sequence[MetricSample], now: datetime,
            final: bool) -> bool:
        with self._lock:
            last = self._last.get(job_id)
        if last is None or final or any(_urgent(sample) for sample in samples):
            return True
        points, at = last
        return (points + len(samples) <= self.small_series
                or (now - at).total_seconds() >= self.every_s)

    def analysed(self, job_id: str, *, points: int, now: datetime, final: bool) -> None:
        with self._lock:
            if final:
                self._last.pop(job_id, None)
                return
            if len(self._last) > 100_000:  # jobs that ended without a final poll
                self._last.clear()
            self._last[job_id] = (points, now)


def _urgent(sample: MetricSample) -> bool:
    values = (sample.train_loss, sample.eval_loss, sample.grad_norm)
    if any(v is not None and not math.isfinite(v) for v in values):
        return True
    if sample.eval_loss is not None:
        return True
    return sample.grad_norm is not None and sample.grad_norm > AnalysisPace.URGENT_GRAD_NORM


PACE = AnalysisPace()


@dataclass(frozen=True)
class Assessment:
    """The detector's report on the series a poll is about to commit, made before the poll's
    write transaction. `rows` is how many steps the job will have stored once the poll's points
    are merged in (-1: unknown), so `record` can tell the series is still the one judged."""

    job_id: str
    series: MetricSeries
    report: HealthReport
    rows: int
    now: datetime
    final: bool


def total_steps_in(samples: Sequence[MetricSample]) -> int | None:
    """Backends that know the run's length put it in a sample's extra (`total_steps`)."""
    for sample in reversed(samples):
        value = sample.extra.get("total_steps") or sample.extra.get("max_steps")
        if value:
            return int(value)
    return None


def assess(db: Database, job_id: str, samples: Sequence[MetricSample], *, now: datetime,
           final: bool, pace: AnalysisPace = PACE) -> Assessment | None:
    """Run the detector outside the write lock, or None (pace says later; job gone or done).

    The stored points are read in a read-only transaction and the poll's samples merged into
    them in memory, exactly as `store_samples` will merge them; the analysis itself (up to ~2 s
    of CPU on a long series) holds no lock at all."""
    if not pace.due(job_id, samples=samples, now=now, final=final):
        return None
    with db.session() as session:
        job = JobRepository(session).get(job_id)
        if job is None or JobStatus(job.status).is_terminal:
            return None
        stored = MetricRepository(session).page(job_id, after_step=None, limit=MAX_POINTS)
    points = metrics_store.merged(stored, metrics_store.to_points(job_id, samples, now))
    series = series_of(points, total_steps_in(samples))
    report = analyze(series, schedule=schedule_for(job))
    return Assessment(job_id=job_id, series=series, report=report, now=now, final=final,
                      rows=len(points) if len(stored) < MAX_POINTS else -1)


def record(session: Session, job: Job, assessment: Assessment, *, now: datetime,
           auto_stop_default: bool) -> MetricSeries:
    """Store an assessment's findings, in the poll's transaction, after its points; returns
    the series judged. Should the stored series not be the one assessed (a writer other than
    this poll added steps in between), the detector is rerun here, under the lock, instead."""
    series, report = assessment.series, assessment.report
    if assessment.rows != MetricRepository(session).count(job.id):
        series = series_for(session, job, series.total_steps)
        report = analyze(series, schedule=schedule_for(job))
    _record_findings(session, job, report, now=now, auto_stop_default=auto_stop_default)
    return series


def analysed(assessment: Assessment, pace: AnalysisPace = PACE) -> None:
    """Once the assessment's transaction has committed: the pace counts it as done."""
    pace.analysed(assessment.job_id, points=len(assessment.series.points), now=assessment.now,
                  final=assessment.final)


def _record_findings(session: Session, job: Job, report: HealthReport, *, now: datetime,
                     auto_stop_default: bool) -> None:
    """Each finding once (dedupe key per kind); then the auto-stop policy, if the job has it."""
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
