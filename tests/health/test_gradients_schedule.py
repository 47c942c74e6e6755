"""Gradient norms (exploding, vanishing, NaN) and the learning-rate schedule check."""

from __future__ import annotations

import math

from tests.health.synth import decaying, make_run
from tunebridge.health import FindingKind, LrSchedule, ScheduleType, Severity, analyze
from tunebridge.health.schedule import expected_lr


def test_norm_above_100_after_warmup_is_exploding() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 250.0 if s == 600 else 1.0)
    finding = analyze(run).get(FindingKind.GRAD_EXPLODING)
    assert finding is not None
    assert (finding.step, finding.severity) == (600, Severity.WARNING)
    assert "Enable gradient clipping (max_grad_norm 1.0)" in finding.fixes


def test_large_norms_during_warmup_are_ignored() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 120.0 if s <= 40 else 1.0)
    assert not analyze(run).has(FindingKind.GRAD_EXPLODING)


def test_orders_of_magnitude_growth_below_100_is_exploding() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 45.0 if s == 700 else 0.1)
    finding = analyze(run).get(FindingKind.GRAD_EXPLODING)
    assert finding is not None and finding.step == 700 and finding.cause == "growth"


def test_growth_within_the_healthy_band_is_fine() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 3.0 if s == 700 else 0.005)
    assert not analyze(run).has(FindingKind.GRAD_EXPLODING)


def test_lone_nan_norm_is_a_skipped_fp16_step() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: math.nan if s == 500 else 1.0)
    assert analyze(run).findings == []


def test_persistent_nan_norm_is_critical() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: math.nan if s >= 500 else 1.0)
    finding = analyze(run).get(FindingKind.GRAD_EXPLODING)
    assert finding is not None
    assert (finding.step, finding.severity, finding.cause) == (540, Severity.CRITICAL, "nonfinite")


def test_sustained_tiny_norm_is_vanishing() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 1e-5 if s >= 600 else 0.5)
    finding = analyze(run).get(FindingKind.GRAD_VANISHING)
    assert finding is not None
    assert finding.step >= 620  # three logs in a row, and 10% of logs so far
    assert "Raise the learning rate" in finding.fixes


def test_isolated_tiny_norms_are_not_vanishing() -> None:
    run = make_run(1000, decaying(), every=10, grad=lambda s: 1e-4 if s % 200 == 0 else 0.5)
    assert not analyze(run).has(FindingKind.GRAD_VANISHING)


COSINE = LrSchedule(ScheduleType.COSINE, peak_lr=2e-4, warmup_steps=100, total_steps=1000)


def test_lr_following_its_schedule_is_silent() -> None:
    run = make_run(1000, decaying(), every=10,
                   lr=lambda s: expected_lr(ScheduleType.COSINE, 2e-4, 100, 1000, s))
    assert not analyze(run, schedule=COSINE).has(FindingKind.LR_SCHEDULE)


def test_lr_off_schedule_is_reported() -> None:
    run = make_run(1000, decaying(), every=10, lr=lambda s: 2e-4)  # constant, no warm-up
    finding = analyze(run, schedule=COSINE).get(FindingKind.LR_SCHEDULE)
    assert finding is not None
    assert finding.step == 30  # third log in a row above the warm-up ramp
    assert "cosine" in finding.message


def test_lr_not_judged_without_a_schedule_or_lr_logs() -> None:
    run = make_run(1000, decaying(), every=10, lr=lambda s: 2e-4)
    assert not analyze(run).has(FindingKind.LR_SCHEDULE)
    assert not analyze(make_run(1000, decaying()), schedule=COSINE).has(FindingKind.LR_SCHEDULE)


def test_linear_schedule_with_warmup_ratio() -> None:
    schedule = LrSchedule(ScheduleType.LINEAR, peak_lr=1e-4, warmup_ratio=0.1)
    good = make_run(1000, decaying(), every=10,
                    lr=lambda s: expected_lr(ScheduleType.LINEAR, 1e-4, 100, 1000, s - 1))
    assert not analyze(good, schedule=schedule).has(FindingKind.LR_SCHEDULE)
    stuck = make_run(1000, decaying(), every=10,
                     lr=lambda s: expected_lr(ScheduleType.LINEAR, 1e-4, 100, 1000, min(s, 500)))
    finding = analyze(stuck, schedule=schedule).get(FindingKind.LR_SCHEDULE)
    assert finding is not None and 500 < finding.step <= 700
