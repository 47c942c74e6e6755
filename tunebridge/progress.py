"""How far a job is: step, epoch, latest losses, best validation point, ETA — and the periodic
progress/loss-summary notifications built from it.

`measure` is pure (tests pin it); `snapshot` loads what it needs; `queue_progress` writes
time-bucketed outbox rows, so running it twice, on two replicas, or after a crash adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from storage.database import Database
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.metrics import MetricRepository
from storage.tables import Job, JobEvent, MetricPoint
from tunebridge.clock import Clock
from tunebridge.errors import NotFound
from tunebridge.lifecycle import notify
from tunebridge.status import JobStatus

MAX_POINTS = 20_000
_TOTAL_KEYS = ("total_steps", "max_steps")


@dataclass(frozen=True)
class Progress:
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    total_epochs: float | None = None
    train_loss: float | None = None
    first_train_loss: float | None = None
    eval_loss: float | None = None
    best_eval_step: int | None = None
    best_eval_loss: float | None = None
    fraction: float | None = None  # 0..1 when a total is known
    eta_s: float | None = None


@dataclass(frozen=True)
class JobSnapshot:
    job: Job
    progress: Progress
    points: list[MetricPoint]


def _total_steps(job: Job, points: Sequence[MetricPoint], events: Sequence[JobEvent]
                 ) -> int | None:
    """max_steps from the request, else what the backend announced (events, metric extras)."""
    candidates: list[Any] = [job.hyperparameters.get("max_steps")]
    candidates += [(e.data or {}).get(k) for e in reversed(events) for k in _TOTAL_KEYS]
    if points:
        candidates += [(points[-1].extra or {}).get(k) for k in _TOTAL_KEYS]
    for value in candidates:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def _fraction(job: Job, step: int | None, total: int | None, epoch: float | None) -> float | None:
    if job.status == JobStatus.SUCCEEDED:
        return 1.0
    epochs = job.hyperparameters.get("n_epochs")
    if step is not None and total:
        value = step / total
    elif epoch is not None and isinstance(epochs, int | float) and epochs > 0:
        value = epoch / epochs
    else:
        return None
    return max(0.0, min(1.0, value))


def measure(job: Job, points: Sequence[MetricPoint], events: Sequence[JobEvent],
            now: datetime) -> Progress:
    train = [p for p in points if p.train_loss is not None]
    evals = [p for p in points if p.eval_loss is not None]
    best = min(evals, key=lambda p: (p.eval_loss, p.step)) if evals else None
    last = points[-1] if points else None
    step = last.step if last else None
    epoch = next((p.epoch for p in reversed(points) if p.epoch is not None), None)
    total = _total_steps(job, points, events)
    fraction = _fraction(job, step, total, epoch)
    eta = None
    if job.status == JobStatus.RUNNING and job.started_at and fraction and 0 < fraction < 1:
        elapsed = (now - job.started_at).total_seconds()
        eta = max(0.0, elapsed * (1 - fraction) / fraction)
    epochs = job.hyperparameters.get("n_epochs")
    return Progress(
        step=step, total_steps=total, epoch=epoch,
        total_epochs=float(epochs) if isinstance(epochs, int | float) else None,
        train_loss=train[-1].train_loss if train else None,
        first_train_loss=train[0].train_loss if train else None,
        eval_loss=evals[-1].eval_loss if evals else None,
        best_eval_step=best.step if best else None,
        best_eval_loss=best.eval_loss if best else None, fraction=fraction, eta_s=eta)


def snapshot(*, db: Database, job_id: str, now: datetime) -> JobSnapshot:
    with db.session() as session:
        job = JobRepository(session).get(job_id)
        if job is None:
            raise NotFound("job", job_id)
        points = MetricRepository(session).page(job_id, after_step=None, limit=MAX_POINTS)
        events = JobEventRepository(session).page(job_id, after_id=None, limit=1000)
    return JobSnapshot(job=job, progress=measure(job, points, events, now), points=points)


def duration_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def summary_text(job: Job, progress: Progress) -> str:
    """One line for a thread or a console: where the run is and how its losses look."""
    parts = [f"Job {job.id}"]
    if progress.step is not None:
        total = f"/{progress.total_steps}" if progress.total_steps else ""
        parts.append(f"step {progress.step}{total}")
    if progress.train_loss is not None:
        start = progress.first_train_loss
        parts.append(f"train loss {progress.train_loss:.4f}"
                     + (f" (from {start:.4f})" if start is not None else ""))
    if progress.eval_loss is not None:
        parts.append(f"val loss {progress.eval_loss:.4f}, best {progress.best_eval_loss:.4f} "
                     f"at step {progress.best_eval_step}")
    if progress.eta_s is not None:
        parts.append(f"ETA {duration_text(progress.eta_s)}")
    return " · ".join(parts)


def queue_progress(*, db: Database, clock: Clock, card_every_s: float,
                   summary_every_s: float) -> int:
    """Queue a `progress` row per running job every `card_every_s` (the card refresh) and a
    `loss_summary` row every `summary_every_s`; returns how many rows were added."""
    now = clock.now()
    with db.session() as session:
        running = JobRepository(session).page(limit=500, statuses=[JobStatus.RUNNING])
    added = 0
    for job in running:
        if job.started_at is None:
            continue
        elapsed = (now - job.started_at).total_seconds()
        if elapsed < card_every_s:
            continue
        snap = snapshot(db=db, job_id=job.id, now=now)
        if not snap.points:
            continue
        try:
            added += _queue_one(db, snap, now, int(elapsed // card_every_s),
                                int(elapsed // summary_every_s))
        except IntegrityError:
            continue  # another replica queued the same bucket first
    return added


def _queue_one(db: Database, snap: JobSnapshot, now: datetime, card: int, summary: int) -> int:
    text = summary_text(snap.job, snap.progress)
    data = {"step": snap.progress.step, "train_loss": snap.progress.train_loss,
            "eval_loss": snap.progress.eval_loss}
    added = 0
    with db.session() as session:
        job = JobRepository(session).get(snap.job.id)
        if job is None or job.status != JobStatus.RUNNING:
            return 0
        added += notify(session, job, kind="progress", dedupe_key=f"{job.id}:progress:{card}",
                        text=text, now=now, data=data) is not None
        if summary >= 1:
            added += notify(session, job, kind="loss_summary", now=now, data=data,
                            dedupe_key=f"{job.id}:summary:{summary}", text=text) is not None
    return added
