"""The metric series the detectors read: one run's logs, in step order, with gaps allowed.

Trainers log sparsely and unevenly (every step or every few hundred, eval now and then, grad
norm sometimes never), so every field of a point may be missing and NaN/inf are kept as facts:
a NaN loss is itself the finding. Detectors ask for one column at a time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Objective(StrEnum):
    """What the loss measures; the loss-shape rules only hold for likelihood-style losses."""

    SUPERVISED = "supervised"
    PREFERENCE = "preference"  # DPO/ORPO-style: starts near ln 2 and falls like SFT
    REINFORCEMENT = "reinforcement"  # GRPO/PPO: the "loss" is a surrogate, its shape means little


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One log record. A record with both losses is fine (storage merges by step)."""

    step: int
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    grad_norm: float | None = None
    learning_rate: float | None = None


Column = list[tuple[int, float]]

LIKELIHOOD_FLOOR = 0.1

_ALIASES = {
    "loss": "train_loss",
    "train_loss": "train_loss",
    "eval_loss": "eval_loss",
    "valid_loss": "eval_loss",
    "val_loss": "eval_loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "epoch": "epoch",
}


@dataclass(frozen=True)
class MetricSeries:
    """A run's points sorted by step (stable, so a train and an eval log at one step keep order).

    `total_steps` is the planned length when known (HF `max_steps`); it lets detectors tell
    warm-up and "most of the run" apart without seeing the future.
    """

    points: tuple[SeriesPoint, ...]
    total_steps: int | None = None
    objective: Objective = Objective.SUPERVISED
    _sorted: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._sorted:
            ordered = tuple(sorted(self.points, key=lambda p: p.step))
            object.__setattr__(self, "points", ordered)
            object.__setattr__(self, "_sorted", True)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], *, total_steps: int | None = None,
                  objective: Objective = Objective.SUPERVISED) -> MetricSeries:
        """Build from dict-like rows (JSONL records, storage rows as dicts); strings like "nan"
        parse, and a row's `extra` mapping may carry `nonfinite_<field>` values."""
        points = [p for p in (point_from_mapping(r) for r in rows) if p is not None]
        return cls(tuple(points), total_steps=total_steps, objective=objective)

    def column(self, name: str) -> Column:
        """(step, value) for every point that has `name`; NaN/inf kept."""
        out: Column = []
        for p in self.points:
            value = getattr(p, name)
            if value is not None:
                out.append((p.step, value))
        return out

    def finite(self, name: str) -> Column:
        return [(s, v) for s, v in self.column(name) if math.isfinite(v)]

    def prefix(self, last_step: int) -> MetricSeries:
        """The run as it looked when `last_step` was the newest log (tests replay polls)."""
        kept = tuple(p for p in self.points if p.step <= last_step)
        return MetricSeries(kept, self.total_steps, self.objective, _sorted=True)

    def epoch_at(self, step: int) -> float | None:
        """The epoch logged at `step`, else interpolated from its neighbours."""
        known = [(p.step, p.epoch) for p in self.points if p.epoch is not None]
        for s, e in known:
            if s == step:
                return e
        before = [(s, e) for s, e in known if s < step]
        after = [(s, e) for s, e in known if s > step]
        if before and after:
            (s0, e0), (s1, e1) = before[-1], after[0]
            return e0 + (e1 - e0) * (step - s0) / (s1 - s0)
        return None


def warmup_end(series: MetricSeries) -> float:
    """Last step that still counts as warm-up: the first 5% of the planned run.

    Without a planned length we fall back to the learning-rate peak, because a step-fraction of
    a run whose end is unknown would move as the run grows (and findings would flip-flop).
    """
    if series.total_steps:
        return 0.05 * series.total_steps
    lrs = series.finite("learning_rate")
    for (s0, v0), (_, v1) in zip(lrs, lrs[1:], strict=False):
        if v1 <= v0:
            return float(s0)
    return float(lrs[-1][0]) if lrs else float("-inf")


def loss_shape_applies(series: MetricSeries) -> bool:
    """Whether loss-shape rules (plateau, spikes, rising) mean anything for this run.

    They are calibrated on likelihood losses, which start well above zero (ln of the vocabulary
    or of the class count). A negative loss, an RL objective, or a loss that starts below 0.1
    is a surrogate or an already-fit model, whose curve has no such reference shape.
    """
    if series.objective is Objective.REINFORCEMENT:
        return False
    train = [v for _, v in series.finite("train_loss")]
    if not train or min(train) < 0:
        return False
    return statistics.median(train[:3]) >= LIKELIHOOD_FLOOR


def point_from_mapping(row: Mapping[str, Any]) -> SeriesPoint | None:
    """One record under any of our key spellings; None when it carries no step."""
    step = _as_float(row.get("step"))
    if step is None or not math.isfinite(step):
        return None
    values: dict[str, float | None] = {}
    for key, target in _ALIASES.items():
        if key in row and values.get(target) is None:
            values[target] = _as_float(row[key])
    extra = row.get("extra")
    if isinstance(extra, Mapping):  # storage keeps NaN/inf as strings under nonfinite_<name>
        for target in set(_ALIASES.values()):
            if values.get(target) is None and f"nonfinite_{target}" in extra:
                values[target] = _as_float(extra[f"nonfinite_{target}"])
    return SeriesPoint(step=int(step), **values)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value.strip())  # accepts "nan", "inf", "-Infinity"
        except ValueError:
            return None
    return None
