"""The whole report: polling stability, determinism, and the auto-stop decision."""

from __future__ import annotations

import math

from tests.health.synth import decaying, evals_at, make_run, noisy
from tunebridge.health import (
    AutoStopPolicy,
    FindingKind,
    HealthReport,
    MetricSeries,
    analyze,
    decide_stop,
)

STEPS = list(range(100, 1101, 100))


def troubled_run() -> MetricSeries:
    """Overfits from step ~700 on, one spike at 300, a gradient blow-up at 450."""
    base = noisy(decaying(rate=0.005, floor=0.1), 0.02)
    evals = evals_at(STEPS, [1.2, 0.9, 0.8, 0.78, 0.8, 0.85, 0.9, 0.96, 1.0, 1.05, 1.1])
    return make_run(1100, lambda s: 4.0 if s == 300 else base(s), every=10, evals=evals,
                    grad=lambda s: 500.0 if s == 450 else 1.0)


def test_findings_come_in_step_order_one_per_kind() -> None:
    report = analyze(troubled_run())
    kinds = [f.kind for f in report.findings]
    assert kinds == [FindingKind.LOSS_SPIKES, FindingKind.GRAD_EXPLODING, FindingKind.OVERFITTING]
    assert [f.step for f in report.findings] == sorted(f.step for f in report.findings)


def test_polling_never_moves_or_retracts_a_finding() -> None:
    """Replays the run as a poller sees it: each finding, once reported, keeps its step."""
    run = troubled_run()
    first_seen: dict[FindingKind, int] = {}
    for last in range(20, 1101, 20):
        for finding in analyze(run.prefix(last)).findings:
            assert first_seen.setdefault(finding.kind, finding.step) == finding.step
            assert finding.step <= last
    final = {f.kind: f.step for f in analyze(run).findings}
    assert final == first_seen


def test_analysis_is_deterministic() -> None:
    run = troubled_run()
    assert analyze(run) == analyze(run)
    shuffled = MetricSeries(tuple(reversed(run.points)), run.total_steps)
    assert analyze(shuffled).as_dict() == analyze(run).as_dict()


def test_empty_series_is_healthy_with_no_best_step() -> None:
    report = analyze(MetricSeries(()))
    assert report == HealthReport([])
    assert report.as_dict() == {"findings": [], "best_eval_step": None}


def test_no_policy_never_stops() -> None:
    assert not decide_stop(analyze(troubled_run()), None).stop


def test_default_policy_stops_on_exploding_gradients_first() -> None:
    decision = decide_stop(analyze(troubled_run()), AutoStopPolicy())
    assert decision.stop and decision.kind is FindingKind.GRAD_EXPLODING
    assert decision.step == 450 and decision.keep_step == 400
    assert "gradients exploded" in decision.reason


def test_overfitting_stops_only_after_n_evals_past_the_best() -> None:
    policy = AutoStopPolicy(stop_on_grad_exploding=False, overfitting_evals=5)
    run = troubled_run()
    assert not decide_stop(analyze(run.prefix(800)), policy).stop  # 4 evals since best
    decision = decide_stop(analyze(run.prefix(900)), policy)
    assert decision.stop and decision.kind is FindingKind.OVERFITTING
    assert decision.keep_step == 400
    never = AutoStopPolicy(stop_on_grad_exploding=False, overfitting_evals=None)
    assert not decide_stop(analyze(run), never).stop


def test_nan_and_trend_divergence_are_separate_switches() -> None:
    nan_run = make_run(300, lambda s: math.nan if s >= 150 else 2.0 - s / 300, every=10)
    report = analyze(nan_run)
    assert decide_stop(report, AutoStopPolicy()).reason.startswith("loss became NaN")
    assert not decide_stop(report, AutoStopPolicy(stop_on_nan=False)).stop
