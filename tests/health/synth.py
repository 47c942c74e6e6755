"""Small synthetic runs for the health tests: a believable curve plus the one defect under test.

Curves are deterministic (seeded noise) so a test that fails, fails the same way every time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from tunebridge.health import MetricSeries

Curve = Callable[[int], float]


def decaying(start: float = 2.5, floor: float = 0.6, rate: float = 0.02) -> Curve:
    """A healthy training loss: fast drop, then a slow approach to a floor."""
    return lambda step: floor + (start - floor) * math.exp(-rate * step)


def noisy(curve: Curve, share: float, seed: int = 7) -> Curve:
    """Multiplicative noise of about `share` (e.g. 0.05 = 5%), fixed per step."""
    rng = random.Random(seed)
    table: dict[int, float] = {}

    def value(step: int) -> float:
        if step not in table:
            table[step] = 1 + rng.uniform(-share, share)
        return curve(step) * table[step]

    return value


def make_run(steps: int, train: Curve, *, every: int = 1, evals: dict[int, float] | None = None,
             grad: Curve | None = None, lr: Curve | None = None,
             total_steps: int | None = None) -> MetricSeries:
    """Train logs every `every` steps from `every` to `steps`, eval logs at the given steps."""
    rows: list[dict[str, Any]] = []
    for step in range(every, steps + 1, every):
        row: dict[str, Any] = {"step": step, "epoch": step / steps, "loss": train(step)}
        if grad is not None:
            row["grad_norm"] = grad(step)
        if lr is not None:
            row["learning_rate"] = lr(step)
        rows.append(row)
    rows += [{"step": s, "eval_loss": v} for s, v in (evals or {}).items()]
    return MetricSeries.from_rows(rows, total_steps=total_steps or steps)


def evals_at(steps: list[int], values: list[float]) -> dict[int, float]:
    return dict(zip(steps, values, strict=True))
