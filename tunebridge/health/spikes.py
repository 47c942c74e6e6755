"""Loss spikes: a sharp jump of the training loss that comes back down within a few logs.

A jump is measured against the median of the logs just before it (a baseline one bad batch
cannot move) and must beat a ratio and the *large* log-to-log changes seen just before it (the
90th percentile, not the median), so per-batch losses that always jump around stay quiet while
an otherwise smooth curve that suddenly leaps is caught. It is certain only when the loss has
come back down; a jump that does not recover is left to the divergence detector.
"""

from __future__ import annotations

import math

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import fmt, median, quantile
from tunebridge.health.series import MetricSeries, loss_shape_applies, warmup_end

BASELINE_LOGS = 20
MIN_BASELINE = 5
JUMP_RATIO = 2.5  # the spike is at least 2.5x the baseline...
NOISE_MULTIPLE = 4.0  # ...4x the large log-to-log changes just before it...
NOISE_QUANTILE = 0.9
JUMP_OF_SCALE = 0.05  # ...and 5% of the highest loss so far (not a wiggle near zero)
RECOVERY_LOGS = 5  # it must come back within 5 logs (or a tenth of the logs so far)...
RECOVERY_SHARE = 0.5  # ...to below baseline + half the jump


def detect_spikes(series: MetricSeries) -> Finding | None:
    if not loss_shape_applies(series):
        return None
    train = series.finite("train_loss")
    values = [v for _, v in train]
    start = warmup_end(series)
    scale = -math.inf
    for i in range(MIN_BASELINE, len(values)):
        scale = max(scale, values[i - 1])
        if train[i][0] > start and _is_jump(values, i, scale):
            base = median(values[max(0, i - BASELINE_LOGS):i])
            back = _recovered_at(values, i, base + RECOVERY_SHARE * (values[i] - base))
            if back is not None:
                return _finding(train[i][0], train[back][0], values[i], base)
    return None


def _is_jump(values: list[float], i: int, scale: float) -> bool:
    before = values[max(0, i - BASELINE_LOGS):i]
    base = median(before)
    jump = values[i] - base
    if jump <= 0 or values[i] < base * JUMP_RATIO or jump < JUMP_OF_SCALE * scale:
        return False
    diffs = [abs(b - a) for a, b in zip(before, before[1:], strict=False)]
    return jump >= NOISE_MULTIPLE * quantile(diffs, NOISE_QUANTILE)


def _recovered_at(values: list[float], i: int, below: float) -> int | None:
    patience = max(RECOVERY_LOGS, i // 10)
    for j in range(i + 1, min(len(values), i + 1 + patience)):
        if values[j] <= below:
            return j
    return None


def _finding(spike_step: int, back_step: int, peak: float, base: float) -> Finding:
    message = (f"Training loss spiked to {fmt(peak)} at step {spike_step} (from about "
               f"{fmt(base)}) and recovered by step {back_step}")
    return make_finding(FindingKind.LOSS_SPIKES, back_step, Severity.INFO, message)
