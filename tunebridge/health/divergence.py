"""Divergence: a NaN/inf training loss, or a loss that climbs far above its best level and stays
there.

"Stays there" is what separates divergence from a spike: the level compared is a running
median over the last tenth of the logs so far, which only moves once more than half of that
window is up. Warm-up is excluded from the best level, because loss often bounces while the
learning rate ramps (the run has not really started). Like overfitting it describes the run as
it stands: the step is where the current stretch of "far above its best" began.
"""

from __future__ import annotations

import math

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import SlidingMedian, fmt
from tunebridge.health.series import MetricSeries, loss_shape_applies, warmup_end

RISE_RATIO = 1.5  # level at least 1.5x its best...
RISE_OF_SCALE = 0.10  # ...by at least 10% of the highest level seen (ignores rises near zero)
NOISE_MULTIPLE = 4.0  # ...and 4x the typical log-to-log change so far
WINDOW_FRACTION = 10  # smoothing window: a tenth of the logs so far
MIN_WINDOW = 2
PERSIST = 2  # consecutive logs the condition must hold


def detect_nonfinite_loss(series: MetricSeries) -> Finding | None:
    for step, value in series.column("train_loss"):
        if not math.isfinite(value):
            message = f"Training loss became {value} at step {step}: the run has diverged"
            return make_finding(FindingKind.DIVERGING, step, Severity.CRITICAL, message, "nan")
    return None


def detect_rising_loss(series: MetricSeries) -> Finding | None:
    """Loss trending up: smoothed level far above its best post-warm-up level, persistently,
    and still so at the newest log (a loss that came back down was a long spike)."""
    if not loss_shape_applies(series):
        return None
    train = series.finite("train_loss")
    flags = _rising_flags(series, [v for _, v in train])
    held = 0
    while held < len(flags) and flags[len(flags) - 1 - held] is not None:
        held += 1
    if held < PERSIST:
        return None
    level, best = flags[-1] or (0.0, 0.0)
    step = train[len(flags) - held + PERSIST - 1][0]
    message = (f"Training loss is rising: smoothed level {fmt(level)} by step {train[-1][0]} "
               f"vs best {fmt(best)}, not coming back down")
    return make_finding(FindingKind.DIVERGING, step, Severity.CRITICAL, message, "trend")


def _rising_flags(series: MetricSeries, values: list[float]) -> list[tuple[float, float] | None]:
    """Per log: (level, best) when the level is far above the best so far, else None."""
    steps = [s for s, _ in series.finite("train_loss")]
    start = warmup_end(series)
    window = SlidingMedian(values)
    diffs = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    noise = SlidingMedian(diffs)
    best, top = math.inf, -math.inf
    flags: list[tuple[float, float] | None] = []
    for i, step in enumerate(steps):
        width = max(MIN_WINDOW, (i + 1) // WINDOW_FRACTION)
        level = window.window(max(0, i + 1 - width), i + 1)
        typical = noise.window(0, i) if i > 0 else 0.0
        flags.append(None)
        if i + 1 < MIN_WINDOW or step <= start:
            continue
        best, top = min(best, level), max(top, level)
        rise = level - best
        up = (best > 0 and level >= best * RISE_RATIO and rise >= RISE_OF_SCALE * top
              and rise >= NOISE_MULTIPLE * typical)
        flags[-1] = (level, best) if up else None
    return flags
