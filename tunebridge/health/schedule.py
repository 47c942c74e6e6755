"""Learning-rate schedule check: does the logged lr follow the configured warm-up and decay?

Only judged against a schedule the caller states (the job's config); without one, or without
logged learning rates, it stays silent — guessing the intended schedule from the logs would
flag every unusual but deliberate choice. Trainers log the lr before or after the scheduler
step, so each log is compared with the expected value one step either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import fmt
from tunebridge.health.series import MetricSeries

TOLERANCE = 0.10  # of the peak lr
MIN_OFF_LOGS = 3  # consecutive logs off schedule before it is certain


class ScheduleType(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


@dataclass(frozen=True)
class LrSchedule:
    """The configured schedule. Warm-up is linear from 0 over `warmup_steps` (or
    `warmup_ratio` of the total); decay goes to 0 at `total_steps` (else the series' own)."""

    type: ScheduleType
    peak_lr: float | None = None
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    total_steps: int | None = None


def detect_lr_schedule(series: MetricSeries, schedule: LrSchedule | None) -> Finding | None:
    lrs = series.finite("learning_rate")
    total = (schedule.total_steps if schedule else None) or series.total_steps
    if schedule is None or not lrs or not total:
        return None
    peak = schedule.peak_lr or max(v for _, v in lrs)
    if peak <= 0:
        return None
    warmup = _warmup_steps(schedule, total)
    off = 0
    for step, lr in lrs:
        expected = [expected_lr(schedule.type, peak, warmup, total, step + d) for d in (-1, 0, 1)]
        error = min(abs(lr - e) for e in expected)
        off = off + 1 if error > TOLERANCE * peak else 0
        if off >= MIN_OFF_LOGS:
            want = expected[1]
            message = (f"Learning rate {fmt(lr)} at step {step} does not follow the configured "
                       f"{schedule.type} schedule (expected about {fmt(want)})")
            return make_finding(FindingKind.LR_SCHEDULE, step, Severity.WARNING, message)
    return None


def _warmup_steps(schedule: LrSchedule, total: int) -> int:
    if schedule.warmup_steps is not None:
        return max(0, schedule.warmup_steps)
    if schedule.warmup_ratio is not None:
        return math.ceil(schedule.warmup_ratio * total)
    return 0


def expected_lr(kind: ScheduleType, peak: float, warmup: int, total: int, step: int) -> float:
    """The lr a scheduler of `kind` sets at `step` (HF conventions)."""
    step = max(0, step)
    if step < warmup:
        return peak * step / max(1, warmup)
    if kind is ScheduleType.CONSTANT:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind is ScheduleType.LINEAR:
        return peak * (1 - progress)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))
