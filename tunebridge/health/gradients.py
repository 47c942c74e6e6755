"""Gradient-norm trouble, from the seed's table: healthy is stable and < 10, exploding is > 100
(or a jump by orders of magnitude), vanishing is < 0.001 for a sustained stretch.

Warm-up is skipped (norms are large while the optimizer settles). A lone NaN/inf norm is the
usual fp16 overflow step that the loss scaler skips and is not reported; a run of them means
no step is being taken at all.
"""

from __future__ import annotations

import math

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import fmt, median
from tunebridge.health.series import MetricSeries, warmup_end

EXPLODING = 100.0
SEVERE = 1000.0
GROWTH = 100.0  # a jump to 100x the recent median norm...
GROWTH_OVER_MAX = 10.0  # ...and 10x anything recent (not just one more large batch)...
GROWTH_FLOOR = 10.0  # ...that leaves the seed's healthy band (< 10)
BASELINE_LOGS = 20
MIN_BASELINE = 5
NONFINITE_RUN = 5
VANISHING = 1e-3
VANISHING_RUN = 3
VANISHING_SHARE = 0.10


def detect_exploding(series: MetricSeries) -> Finding | None:
    start = warmup_end(series)
    recent: list[float] = []
    nonfinite = 0
    for step, g in series.column("grad_norm"):
        if not math.isfinite(g):
            nonfinite += 1
            if nonfinite >= NONFINITE_RUN:
                message = f"Gradient norm has been NaN/inf for {nonfinite} logs in a row"
                return _exploding(step, Severity.CRITICAL, message, "nonfinite")
            continue
        nonfinite = 0
        finding = _judge_norm(step, g, recent, start)
        if finding is not None:
            return finding
        recent = (recent + [g])[-BASELINE_LOGS:]
    return None


def _judge_norm(step: int, g: float, recent: list[float], start: float) -> Finding | None:
    if step <= start:
        return None
    severity = Severity.CRITICAL if g >= SEVERE else Severity.WARNING
    if g > EXPLODING:
        return _exploding(step, severity, f"Gradient norm {fmt(g)} at step {step} (> 100)",
                          "absolute")
    if len(recent) >= MIN_BASELINE and g >= GROWTH_FLOOR:
        base = median(recent)
        if base > 0 and g >= GROWTH * base and g >= GROWTH_OVER_MAX * max(recent):
            message = (f"Gradient norm jumped to {fmt(g)} at step {step}, "
                       f"{g / base:.0f}x its recent median {fmt(base)}")
            return _exploding(step, severity, message, "growth")
    return None


def _exploding(step: int, severity: Severity, message: str, cause: str) -> Finding:
    return make_finding(FindingKind.GRAD_EXPLODING, step, severity, message, cause)


def detect_vanishing(series: MetricSeries) -> Finding | None:
    """At least 3 logs in a row below 0.001, and at least 10% of post-warm-up logs so far."""
    start = warmup_end(series)
    run = small = seen = 0
    for step, g in series.finite("grad_norm"):
        if step <= start:
            continue
        seen += 1
        tiny = g < VANISHING
        run = run + 1 if tiny else 0
        small += tiny
        if run >= VANISHING_RUN and small >= VANISHING_SHARE * seen:
            message = (f"Gradient norm below 0.001 for {run} logs in a row up to step {step} "
                       f"({small} of {seen} logs so far)")
            return make_finding(FindingKind.GRAD_VANISHING, step, Severity.WARNING, message)
    return None
