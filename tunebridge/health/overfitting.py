"""Overfitting: validation loss climbing materially from its minimum while training loss keeps
falling (the widening gap), and the best evaluation — the checkpoint to keep.

Evaluations are few and noisy, so the rule asks for several things at once: at least two
evaluations after the minimum, a smoothed recent level clearly above the smoothed minimum (a
relative rise, and a rise well beyond the curve's own zig-zag), and a training loss that did not
rise with it (when both rise the run is unstable: the divergence detector's business).

It is a judgement about the run as it stands: a validation loss that rose for a while and came
back down below its old minimum (noisy evals, double descent) is not overfitting at the end, so
the finished run's report does not say so. The finding's step is where the current stretch of
"overfitting at every evaluation since" began, so it stays put while the run stays overfit.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from tunebridge.health.findings import Finding, FindingKind, Severity, make_finding
from tunebridge.health.robust import fmt, median, roughness
from tunebridge.health.series import Column, MetricSeries

MIN_EVALS = 3
MIN_AFTER_BEST = 2
MIN_RISE = 0.06  # the smoothed recent eval level must sit 6% above the smoothed minimum...
NOISE_MULTIPLE = 1.75  # ...and 1.75x the eval curve's zig-zag above it
TRAIN_SLACK = 0.20  # train loss may wobble 20% above its level at the best eval
MAX_SMOOTHING = 3  # evaluations averaged into one smoothed point (fewer on short series)
TRAIN_WINDOW = 5


@dataclass(frozen=True)
class BestEval:
    step: int
    loss: float
    index: int


def best_eval(evals: Column) -> BestEval | None:
    """Lowest evaluation loss; the earliest one on ties (the cheaper checkpoint)."""
    if not evals:
        return None
    index = min(range(len(evals)), key=lambda i: (evals[i][1], i))
    return BestEval(evals[index][0], evals[index][1], index)


def detect_overfitting(series: MetricSeries) -> Finding | None:
    evals = series.finite("eval_loss")
    train = series.finite("train_loss")
    rise = _rise_if_overfit(evals, train)
    if rise is None:
        return None
    since = len(evals)
    while since > MIN_EVALS and _rise_if_overfit(evals[:since - 1], train) is not None:
        since -= 1
    return _finding(series, evals, rise, evals[since - 1][0], bool(train))


def smoothed(values: list[float]) -> list[float]:
    """Trailing means over up to 3 evaluations: 1 below 6 evals, 2 below 9, then 3."""
    width = max(1, min(MAX_SMOOTHING, len(values) // 3))
    return [sum(values[j - width + 1:j + 1]) / width for j in range(width - 1, len(values))]


def _rise_if_overfit(evals: Column, train: Column) -> float | None:
    """The smoothed rise of recent evals over the minimum, when it counts as overfitting."""
    best = best_eval(evals)
    if best is None or best.loss <= 0 or len(evals) - 1 - best.index < MIN_AFTER_BEST:
        return None
    values = [v for _, v in evals]
    level = smoothed(values)
    low = min(level)
    rise = level[-1] / low - 1
    noise = roughness(values) / low
    if rise < MIN_RISE or rise < NOISE_MULTIPLE * noise or values[-1] <= best.loss:
        return None
    return rise if _train_kept_low(train, best.step, evals[-1][0]) else None


def _train_kept_low(train: Column, best_step: int, now_step: int) -> bool:
    """Training loss now is not above its level at the best eval (no train logs: assume so)."""
    at_best = _train_level(train, best_step)
    now = _train_level(train, now_step)
    if at_best is None or now is None:
        return True
    return now <= at_best * (1 + TRAIN_SLACK) + 1e-12


def _train_level(train: Column, step: int) -> float | None:
    end = bisect.bisect_right(train, step, key=lambda point: point[0])
    upto = [v for _, v in train[max(0, end - TRAIN_WINDOW):end]]
    if not upto:
        upto = [v for _, v in train[:TRAIN_WINDOW]]
    return median(upto) if upto else None


def _finding(series: MetricSeries, evals: Column, rise: float, since: int,
             has_train: bool) -> Finding:
    best = best_eval(evals)
    assert best is not None
    epoch = series.epoch_at(best.step)
    where = f"step {best.step}" + (f" (epoch {epoch:.2f})" if epoch is not None else "")
    severity = Severity.CRITICAL if rise >= 0.25 else Severity.WARNING
    gap = "while training loss keeps falling" if has_train else "(no training loss logged)"
    message = (f"Validation loss is {rise:.0%} above its minimum {fmt(best.loss)} at {where} "
               f"{gap}; keep the checkpoint from step {best.step}")
    return make_finding(FindingKind.OVERFITTING, since, severity, message)
