"""Backend metric samples → MetricPoint rows (merged per step, so replays are harmless)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from backends.base import MetricSample
from storage.repositories.metrics import MetricRepository, combine
from storage.tables import MetricPoint


def _finite_or_none(value: float | None) -> float | None:
    # NaN/inf are facts about a run (health checks want them) but JSON and Postgres floats
    # round-trip them badly; they are kept in `extra` as strings and the column left empty.
    if value is None or math.isfinite(value):
        return value
    return None


def to_points(job_id: str, samples: Sequence[MetricSample], now: datetime) -> list[MetricPoint]:
    """The rows one poll's samples become (not yet merged with each other or stored ones)."""
    points = []
    for sample in samples:
        fields = {
            "epoch": sample.epoch, "train_loss": sample.train_loss,
            "eval_loss": sample.eval_loss, "grad_norm": sample.grad_norm,
            "learning_rate": sample.learning_rate, "token_accuracy": sample.token_accuracy,
            "eval_token_accuracy": sample.eval_token_accuracy,
        }
        extra: dict[str, object] = {k: v for k, v in sample.extra.items() if math.isfinite(v)}
        extra.update({f"nonfinite_{k}": str(v) for k, v in fields.items()
                      if v is not None and not math.isfinite(v)})
        clean = {k: _finite_or_none(v) for k, v in fields.items()}
        point = MetricPoint(job_id=job_id, step=sample.step, extra=extra or None, created_at=now)
        for name, value in clean.items():
            setattr(point, name, value)
        points.append(point)
    return points


def store_samples(session: Session, job_id: str, samples: Sequence[MetricSample],
                  now: datetime) -> None:
    MetricRepository(session).merge_many(job_id, to_points(job_id, samples, now))


def merged(stored: Sequence[MetricPoint], new: Sequence[MetricPoint]) -> list[MetricPoint]:
    """The job's points, by step, as they will read once `new` is stored: `merge_many`'s rule
    applied in memory, on copies (neither argument's rows are changed)."""
    by_step = {point.step: point for point in stored}
    copied: set[int] = set()  # steps whose row in `by_step` is already our own copy
    for point in new:
        if point.step not in copied:
            row = by_step.get(point.step)
            by_step[point.step] = MetricPoint(**(row or point).model_dump())
            copied.add(point.step)
            if row is None:
                continue
        combine(by_step[point.step], point)
    return [by_step[step] for step in sorted(by_step)]
