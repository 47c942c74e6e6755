"""One entry point over all detectors: `analyze(series) -> HealthReport`.

Pure and deterministic, cheap enough to rerun on every poll. Each detector reports at most one
finding per kind, at the first log where its rule held using only the logs up to then, so a
finding's identity (its kind) and step stay put as the run grows: the poller can post each
(job, kind) once and never see it retracted by a later point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tunebridge.health.divergence import detect_nonfinite_loss, detect_rising_loss
from tunebridge.health.findings import Finding, FindingKind, HealthReport
from tunebridge.health.gradients import detect_exploding, detect_vanishing
from tunebridge.health.overfitting import best_eval, detect_overfitting
from tunebridge.health.plateau import detect_plateau
from tunebridge.health.schedule import LrSchedule, detect_lr_schedule
from tunebridge.health.series import MetricSeries, Objective
from tunebridge.health.spikes import detect_spikes

Detector = Callable[[MetricSeries], Finding | None]

DETECTORS: tuple[Detector, ...] = (
    detect_nonfinite_loss,
    detect_rising_loss,
    detect_overfitting,
    detect_spikes,
    detect_plateau,
    detect_exploding,
    detect_vanishing,
)

_ORDER = list(FindingKind)


def analyze(series: MetricSeries, *, schedule: LrSchedule | None = None) -> HealthReport:
    """All findings (one per kind, earliest first) and the best evaluation to keep."""
    series = with_inferred_objective(series)
    found: dict[FindingKind, Finding] = {}
    for detector in DETECTORS:
        finding = detector(series)
        if finding is not None and finding.kind not in found:
            found[finding.kind] = finding
    lr = detect_lr_schedule(series, schedule)
    if lr is not None:
        found[lr.kind] = lr
    findings = sorted(found.values(), key=lambda f: (f.step, _ORDER.index(f.kind)))
    return _with_best(series, findings)


def _with_best(series: MetricSeries, findings: list[Finding]) -> HealthReport:
    evals = series.finite("eval_loss")
    best = best_eval(evals)
    if best is None:
        return HealthReport(findings)
    return HealthReport(
        findings,
        best_eval_step=best.step,
        best_eval_epoch=series.epoch_at(best.step),
        best_eval_loss=best.loss,
        evals_since_best=len(evals) - 1 - best.index,
    )


def with_inferred_objective(series: MetricSeries) -> MetricSeries:
    """A negative training loss cannot be a likelihood: it is an RL surrogate (GRPO/PPO), for
    which the loss-shape rules (plateau, spikes, rising) do not apply."""
    if series.objective is Objective.REINFORCEMENT:
        return series
    if any(v < 0 for _, v in series.finite("train_loss")):
        return replace(series, objective=Objective.REINFORCEMENT, _sorted=True)
    return series
