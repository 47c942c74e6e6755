"""How well the training-health detector matches hand labels on real curves.

Usage: python bench/health_eval.py [--curves DIR] [--verbose]

Reads DIR/labels.csv (one row per run: a 0/1 column per kind, `healthy`, `best_eval_step`) and
DIR/runs/<id>.trainer_state.json, runs the detector on each file as a finished run, and prints
per-kind precision and recall, the false-alarm rate on runs labelled healthy (any finding
counts), and how often the reported best step is within one eval interval of the labelled one.
Exit status 1 when a goal from issue 8 is missed.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunebridge.health import FindingKind, analyze, load_series

KINDS = [k for k in FindingKind if k is not FindingKind.LR_SCHEDULE]
DEFAULT_CURVES = Path(__file__).resolve().parents[1].parent / "shared" / "curves"
GOALS = {"overfitting_precision": 0.9, "overfitting_recall": 0.9, "false_alarm_max": 0.05,
         "best_step": 0.9}


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)

    def add(self, run: str, *, labelled: bool, found: bool) -> None:
        if labelled and found:
            self.tp += 1
        elif labelled:
            self.fn += 1
            self.misses.append(run)
        elif found:
            self.fp += 1
            self.extras.append(run)

    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class Results:
    tallies: dict[FindingKind, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    healthy: int = 0
    false_alarms: list[str] = field(default_factory=list)
    best_total: int = 0
    best_ok: int = 0
    best_wrong: list[str] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(curves: Path) -> Results:
    results = Results()
    started = time.perf_counter()
    with (curves / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            _score_run(curves, row, results)
    results.seconds = time.perf_counter() - started
    return results


def _score_run(curves: Path, row: dict[str, str], results: Results) -> None:
    run = row["id"]
    series = load_series(curves / "runs" / f"{run}.trainer_state.json")
    report = analyze(series)
    found = {f.kind for f in report.findings}
    for kind in KINDS:
        results.tallies[kind].add(run, labelled=row.get(str(kind)) == "1", found=kind in found)
    if row.get("healthy") == "1":
        results.healthy += 1
        if found:
            results.false_alarms.append(f"{run}: {sorted(str(k) for k in found)}")
    if row.get("best_eval_step"):
        _score_best(run, int(row["best_eval_step"]), series.finite("eval_loss"),
                    report.best_eval_step, results)


def _score_best(run: str, want: int, evals: list[tuple[int, float]], got: int | None,
                results: Results) -> None:
    steps = [s for s, _ in evals]
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    interval = statistics.median(gaps) if gaps else 0
    results.best_total += 1
    if got is not None and abs(got - want) <= interval:
        results.best_ok += 1
    else:
        results.best_wrong.append(f"{run}: labelled {want}, got {got}")


def render(results: Results, verbose: bool) -> list[str]:
    lines = [f"{'kind':16} {'labelled':>8} {'found':>6} {'tp':>4} {'precision':>9} {'recall':>7}"]
    for kind, t in results.tallies.items():
        lines.append(f"{kind:16} {t.tp + t.fn:8d} {t.tp + t.fp:6d} {t.tp:4d} "
                     f"{t.precision():9.2f} {t.recall():7.2f}")
        if verbose:
            lines += [f"    missed: {m}" for m in t.misses] + [f"    extra: {e}" for e in t.extras]
    rate = len(results.false_alarms) / results.healthy if results.healthy else 0.0
    lines.append(f"false alarms on healthy runs: {len(results.false_alarms)}/{results.healthy}"
                 f" = {rate:.1%}")
    lines += [f"    {a}" for a in results.false_alarms] if verbose else []
    share = results.best_ok / results.best_total if results.best_total else 1.0
    lines.append(f"best step within one eval interval: {results.best_ok}/{results.best_total}"
                 f" = {share:.1%}")
    lines += [f"    {w}" for w in results.best_wrong] if verbose else []
    lines.append(f"time: {results.seconds:.2f}s")
    return lines


def goals_met(results: Results) -> bool:
    over = results.tallies[FindingKind.OVERFITTING]
    rate = len(results.false_alarms) / results.healthy if results.healthy else 0.0
    share = results.best_ok / results.best_total if results.best_total else 1.0
    return (over.precision() >= GOALS["overfitting_precision"]
            and over.recall() >= GOALS["overfitting_recall"]
            and rate <= GOALS["false_alarm_max"] and share >= GOALS["best_step"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=Path, default=DEFAULT_CURVES)
    parser.add_argument("--verbose", action="store_true", help="list misses and false alarms")
    args = parser.parse_args(argv)
    if not (args.curves / "labels.csv").exists():
        print(f"no labelled curves at {args.curves}", file=sys.stderr)
        return 2
    results = evaluate(args.curves)
    print("\n".join(render(results, args.verbose)))
    met = goals_met(results)
    print("goals: " + ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
