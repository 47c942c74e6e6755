"""Training-loss shape: NaN, divergence, spikes that recover, plateau — and healthy noise."""

from __future__ import annotations

import math

from tests.health.synth import decaying, make_run, noisy
from tunebridge.health import FindingKind, MetricSeries, Severity, analyze


def with_nan_at(step: int) -> MetricSeries:
    base = decaying()
    return make_run(300, lambda s: math.nan if s == step else base(s), every=10)


def test_nan_loss_is_critical_divergence_at_that_step() -> None:
    finding = analyze(with_nan_at(150)).get(FindingKind.DIVERGING)
    assert finding is not None
    assert (finding.step, finding.severity, finding.cause) == (150, Severity.CRITICAL, "nan")
    assert "Lower the learning rate" in finding.fixes


def test_infinite_loss_counts_too() -> None:
    run = make_run(100, lambda s: math.inf if s >= 60 else 2.0 - s / 100, every=10)
    finding = analyze(run).get(FindingKind.DIVERGING)
    assert finding is not None and finding.step == 60


def test_loss_climbing_and_staying_up_is_divergence() -> None:
    base = noisy(decaying(rate=0.01), 0.03)
    run = make_run(1000, lambda s: base(s) if s < 600 else base(s) * (1 + (s - 600) / 100),
                   every=10)
    report = analyze(run)
    finding = report.get(FindingKind.DIVERGING)
    assert finding is not None and finding.cause == "trend"
    assert 600 < finding.step < 800
    assert not report.has(FindingKind.PLATEAU)


def test_spike_that_recovers_is_a_spike_not_divergence() -> None:
    base = noisy(decaying(rate=0.01), 0.02)
    run = make_run(1000, lambda s: 5.0 if s in (500, 510) else base(s), every=10)
    report = analyze(run)
    finding = report.get(FindingKind.LOSS_SPIKES)
    assert finding is not None
    assert finding.step == 520  # certain once the loss is back down
    assert finding.severity is Severity.INFO
    assert not report.has(FindingKind.DIVERGING)


def test_jump_that_never_recovers_is_divergence_not_a_spike() -> None:
    base = decaying(rate=0.02, floor=0.5)
    run = make_run(1000, lambda s: 3.0 if s >= 500 else base(s), every=10)
    report = analyze(run)
    assert report.has(FindingKind.DIVERGING)
    assert not report.has(FindingKind.LOSS_SPIKES)


def test_noisy_per_batch_loss_is_healthy() -> None:
    run = make_run(2000, noisy(decaying(rate=0.003, floor=0.3), 0.4, seed=11), every=10)
    assert analyze(run).findings == []


def test_smooth_healthy_run_has_no_findings() -> None:
    run = make_run(1000, decaying(), every=1, grad=lambda s: 1.0 + 0.1 * math.sin(s),
                   lr=lambda s: 2e-4 * min(1.0, s / 30))
    report = analyze(run)
    assert report.findings == []
    assert report.best_eval_step is None


def test_flat_loss_after_first_quarter_is_a_plateau() -> None:
    drop = decaying(start=2.5, floor=1.4, rate=0.1)
    run = make_run(2000, noisy(drop, 0.02), every=10)
    finding = analyze(run).get(FindingKind.PLATEAU)
    assert finding is not None
    assert finding.step >= 1000  # not judged before half the planned run
    assert "Raise the learning rate (SFT range 1e-5 to 5e-4)" in finding.fixes


def test_slow_steady_decline_is_not_a_plateau() -> None:
    run = make_run(2000, lambda s: 1.5 - 0.2 * s / 2000, every=10)
    assert not analyze(run).has(FindingKind.PLATEAU)


def test_plateau_is_not_judged_before_half_the_planned_run() -> None:
    flat = make_run(400, noisy(lambda s: 1.4, 0.02), every=10, total_steps=1000)
    assert not analyze(flat).has(FindingKind.PLATEAU)


def test_loss_exactly_zero_is_a_degenerate_plateau() -> None:
    run = make_run(500, lambda s: 0.0 if s > 20 else 0.3, every=10)
    finding = analyze(run).get(FindingKind.PLATEAU)
    assert finding is not None and "exactly 0" in finding.message


def test_rl_surrogate_loss_gets_no_shape_rules() -> None:
    wobble = noisy(lambda s: 0.02, 3.0, seed=5)  # swings across zero like a GRPO loss
    run = make_run(500, lambda s: wobble(s) - 0.02 if s % 70 else 0.4, every=5)
    assert analyze(run).findings == []
