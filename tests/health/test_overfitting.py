"""Overfitting: the widening gap, the checkpoint to keep, and silence on noise."""

from __future__ import annotations

from tests.health.synth import decaying, evals_at, make_run, noisy
from tunebridge.health import FindingKind, analyze

STEPS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


def test_clean_overfit_reports_best_checkpoint_and_when_it_became_certain() -> None:
    evals = evals_at(STEPS, [1.2, 0.9, 0.8, 0.78, 0.8, 0.85, 0.9, 0.96, 1.0, 1.05])
    report = analyze(make_run(1000, decaying(rate=0.004, floor=0.1), every=10, evals=evals))

    finding = report.get(FindingKind.OVERFITTING)
    assert finding is not None
    assert report.best_eval_step == 400
    assert report.best_eval_epoch == 0.4
    assert report.evals_since_best == 6
    assert "keep the checkpoint from step 400" in finding.message
    # 0.78 -> 0.80, 0.85 is not yet 6% up; the smoothed level crosses it at step 700
    assert finding.step == 700
    assert "Reduce epochs (try 1-2 instead of 3+)" in finding.fixes
    assert any("20% general" in fix for fix in finding.fixes)


def test_noisy_but_healthy_evals_stay_silent() -> None:
    wobble = noisy(decaying(start=1.2, floor=0.7, rate=0.003), 0.04, seed=3)
    evals = {s: wobble(s) for s in range(100, 3001, 100)}
    report = analyze(make_run(3000, decaying(), every=10, evals=evals))
    assert not report.has(FindingKind.OVERFITTING)
    assert report.best_eval_step == min(evals, key=lambda s: evals[s])


def test_sparse_evals_three_points_are_enough() -> None:
    evals = evals_at([400, 800, 1200], [0.16, 0.19, 0.2])
    report = analyze(make_run(1200, decaying(rate=0.004, floor=0.05), every=50, evals=evals))
    finding = report.get(FindingKind.OVERFITTING)
    assert finding is not None and finding.step == 1200
    assert report.best_eval_step == 400


def test_two_evals_are_never_enough() -> None:
    evals = evals_at([500, 1000], [0.37, 0.45])
    report = analyze(make_run(1000, decaying(), every=50, evals=evals))
    assert not report.has(FindingKind.OVERFITTING)
    assert report.best_eval_step == 500


def test_small_rise_within_noise_is_not_material() -> None:
    evals = evals_at(STEPS, [1.2, 0.9, 0.8, 0.78, 0.79, 0.785, 0.79, 0.795, 0.79, 0.8])
    report = analyze(make_run(1000, decaying(), every=10, evals=evals))
    assert not report.has(FindingKind.OVERFITTING)


def test_eval_rising_with_train_loss_is_instability_not_overfitting() -> None:
    evals = evals_at(STEPS, [1.2, 0.9, 0.8, 0.78, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4])
    rising = make_run(1000, lambda s: 0.8 if s < 400 else 0.8 + (s - 400) / 400, every=10,
                      evals=evals)
    assert not analyze(rising).has(FindingKind.OVERFITTING)


def test_recovered_eval_is_not_overfitting_at_the_end_but_was_while_it_rose() -> None:
    values = [1.2, 0.9, 0.8, 0.78, 0.85, 0.9, 0.95, 0.7, 0.6, 0.55]
    run = make_run(1000, decaying(), every=10, evals=evals_at(STEPS, values))
    assert analyze(run.prefix(700)).has(FindingKind.OVERFITTING)
    assert not analyze(run).has(FindingKind.OVERFITTING)
    assert analyze(run).best_eval_step == 1000


def test_finding_step_stays_put_while_the_run_stays_overfit() -> None:
    evals = evals_at(STEPS, [1.2, 0.9, 0.8, 0.78, 0.8, 0.85, 0.9, 0.96, 1.0, 1.05])
    run = make_run(1000, decaying(rate=0.004, floor=0.1), every=10, evals=evals)
    steps = set()
    for last in (700, 800, 900, 1000):
        finding = analyze(run.prefix(last)).get(FindingKind.OVERFITTING)
        assert finding is not None
        steps.add(finding.step)
    assert steps == {700}
