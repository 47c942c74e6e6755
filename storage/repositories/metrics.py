from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.tables import MetricPoint

_MERGED_FIELDS = (
    "epoch",
    "train_loss",
    "eval_loss",
    "grad_norm",
    "learning_rate",
    "token_accuracy",
    "eval_token_accuracy",
)


_CHUNK = 500  # steps per IN (...) list: well under SQLite's bound-parameter limit


def combine(existing: MetricPoint, point: MetricPoint) -> None:
    """Merge `point` into `existing` (one step): values it has win, extras are merged."""
    for name in _MERGED_FIELDS:
        value = getattr(point, name)
        if value is not None:
            setattr(existing, name, value)
    if point.extra:
        existing.extra = {**(existing.extra or {}), **point.extra}


class MetricRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def merge(self, point: MetricPoint) -> MetricPoint:
        """One row per (job, step): train and eval records for a step meet here; replays are
        harmless because a repeated value overwrites itself."""
        existing = self.session.exec(
            select(MetricPoint).where(
                MetricPoint.job_id == point.job_id, MetricPoint.step == point.step
            )
        ).first()
        if existing is None:
            self.session.add(point)
            self.session.flush()
            return point
        combine(existing, point)
        self.session.add(existing)
        self.session.flush()
        return existing

    def merge_many(self, job_id: str, points: Sequence[MetricPoint]) -> None:
        """`merge` for one poll's worth of points of one job: one SELECT per chunk of steps and
        one flush, instead of a SELECT and a flush per step (a poll can bring hundreds of steps,
        and the poller shares the CPU with the trainer it watches)."""
        for start in range(0, len(points), _CHUNK):
            chunk = points[start:start + _CHUNK]
            steps = {p.step for p in chunk}
            rows = self.session.exec(select(MetricPoint).where(
                MetricPoint.job_id == job_id, col(MetricPoint.step).in_(steps)))
            known = {row.step: row for row in rows}
            for point in chunk:
                row = known.get(point.step)
                if row is None:  # a train and an eval record of one step may share a chunk
                    known[point.step] = point
                    self.session.add(point)
                else:
                    combine(row, point)
                    self.session.add(row)
            self.session.flush()

    def page(self, job_id: str, *, after_step: int | None, limit: int) -> list[MetricPoint]:
        statement = (
            select(MetricPoint)
            .where(MetricPoint.job_id == job_id)
            .order_by(col(MetricPoint.step))
            .limit(limit)
        )
        if after_step is not None:
            statement = statement.where(col(MetricPoint.step) > after_step)
        return list(self.session.exec(statement))

    def count(self, job_id: str) -> int:
        """How many steps the job has stored."""
        statement = select(func.count()).select_from(MetricPoint).where(
            MetricPoint.job_id == job_id)
        return int(self.session.exec(statement).one())

    def latest(self, job_id: str) -> MetricPoint | None:
        """The point with the highest step (how far a run got)."""
        statement = (
            select(MetricPoint)
            .where(MetricPoint.job_id == job_id)
            .order_by(col(MetricPoint.step).desc())
            .limit(1)
        )
        return self.session.exec(statement).first()
