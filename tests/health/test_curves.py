"""The detector against real, hand-labelled training curves (shared/curves): issue 8's goals,
so a change that costs precision, recall or quiet on healthy runs fails here first."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.health_eval import Results, evaluate
from tunebridge.health import FindingKind

CURVES = Path(__file__).resolve().parents[2].parent / "shared" / "curves"

pytestmark = pytest.mark.skipif(
    not (CURVES / "labels.csv").exists(),
    reason=f"labelled curves not found at {CURVES} (they live in the shared folder beside the "
           "repository, not in it)",
)


@pytest.fixture(scope="module")
def results() -> Results:
    return evaluate(CURVES)


def test_overfitting_precision_and_recall_at_least_90_percent(results: Results) -> None:
    tally = results.tallies[FindingKind.OVERFITTING]
    assert tally.precision() >= 0.9, tally.extras
    assert tally.recall() >= 0.9, tally.misses


def test_at_most_5_percent_false_alarms_on_healthy_runs(results: Results) -> None:
    assert results.healthy > 0
    assert len(results.false_alarms) <= 0.05 * results.healthy, results.false_alarms


def test_best_step_within_one_eval_interval_in_90_percent(results: Results) -> None:
    assert results.best_total > 0
    assert results.best_ok >= 0.9 * results.best_total, results.best_wrong


def test_every_kind_keeps_its_current_quality(results: Results) -> None:
    """Floors a little under today's numbers: a regression in any detector shows."""
    floors = {FindingKind.DIVERGING: (0.6, 0.5), FindingKind.LOSS_SPIKES: (0.6, 0.6),
              FindingKind.PLATEAU: (0.8, 0.8), FindingKind.GRAD_EXPLODING: (0.8, 0.8),
              FindingKind.GRAD_VANISHING: (0.6, 0.6)}
    for kind, (precision, recall) in floors.items():
        tally = results.tallies[kind]
        assert tally.precision() >= precision, (kind, tally.extras)
        assert tally.recall() >= recall, (kind, tally.misses)


def test_whole_set_is_fast(results: Results) -> None:
    assert results.seconds < 10
