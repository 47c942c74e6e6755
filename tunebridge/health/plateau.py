"""Plateau: no real progress of the training loss after the first part of the run.

"Early" is the median of the first 40% of logs (mostly the level reached after the initial
drop), "last" the median of the final quarter. It is a plateau when the loss fell by less than
5% between them and by less than twice the log-to-log noise, so a slow but steady decline is
not called flat. A loss already near zero has nothing left to learn and is not a plateau,
except a loss that is exactly zero throughout, which means nothing is being trained at all
(e.g. every label masked). Judged at fixed checkpoints once half the planned run is done, and
reported only while it still holds: a run that got moving again is not flat.
"""

from __future__ import annotations

import math

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import fmt, geometric_checkpoints, median, step_noise
from tunebridge.health.series import MetricSeries, loss_shape_applies, warmup_end

MIN_LOGS = 8
EARLY_SHARE = 0.40
LAST_SHARE = 0.25
MAX_DROP = 0.05
NOISE_MULTIPLE = 2.0
NEAR_ZERO = 0.01
MIN_PROGRESS = 0.5


def detect_plateau(series: MetricSeries) -> Finding | None:
    """Judged at fixed checkpoints; reported when the run is flat at its newest checkpoint, at
    the first checkpoint of the current flat stretch."""
    train = series.finite("train_loss")
    if not train or not (loss_shape_applies(series) or _all_zero(train)):
        return None
    start = warmup_end(series)
    floor = MIN_PROGRESS * series.total_steps if series.total_steps else -math.inf
    checks = [n for n in geometric_checkpoints(len(train), start=MIN_LOGS)
              if train[n - 1][0] > start and train[n - 1][0] >= floor]
    verdicts = [_flat(train[:n]) for n in reversed(checks)]
    streak = 0
    while streak < len(verdicts) and verdicts[streak] is not None:
        streak += 1
    if streak == 0:
        return None
    step = train[checks[len(checks) - streak] - 1][0]
    return make_finding(FindingKind.PLATEAU, step, Severity.WARNING, verdicts[0] or "")


def _all_zero(train: list[tuple[int, float]]) -> bool:
    return all(v == 0 for _, v in train[len(train) // 4:])


def _flat(train: list[tuple[int, float]]) -> str | None:
    """A one-line reason when this prefix is a plateau."""
    values = [v for _, v in train]
    n = len(values)
    early = median(values[:math.ceil(EARLY_SHARE * n)])
    last = median(values[-math.ceil(LAST_SHARE * n):])
    later = values[n // 4:]
    if all(v == 0 for v in later):
        return f"Training loss has been exactly 0 since step {train[n // 4][0]}: nothing is learned"
    if early < NEAR_ZERO:
        return None
    drop = early - last
    noise = step_noise(later)
    if abs(drop) >= MAX_DROP * abs(early) or drop >= NOISE_MULTIPLE * noise:
        return None  # falling for real, or rising (the divergence detector's business)
    return (f"Training loss is flat: {fmt(early)} early, {fmt(last)} by step {train[-1][0]} "
            f"({drop / abs(early):.1%} lower, within log-to-log noise)")
