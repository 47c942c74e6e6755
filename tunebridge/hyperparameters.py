"""The seed's hyperparameter tables as policy: defaults fill gaps, ranges produce lints.

Values a trainer cannot use at all (negative lr, zero epochs) are errors; values outside the
seed's recommended ranges are warnings that travel with the job, so users see them before the
job starts and can still insist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunebridge.errors import InvalidInput, Problem


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type
    default: Any
    low: float | None = None  # recommended range (seed)
    high: float | None = None
    hard_low: float | None = None  # impossible below / above
    hard_high: float | None = None
    advice: str = ""


SFT_KNOBS = (
    Knob("learning_rate", float, 2e-4, 1e-5, 5e-4, 0.0, 1.0, "lower for larger models"),
    Knob("n_epochs", int, 3, 1, 5, 1, 100, "more epochs = overfitting risk; try 1-2"),
    Knob("batch_size", int, 4, 2, 32, 1, 4096, "higher = more stable, more VRAM"),
    Knob("warmup_ratio", float, 0.03, 0.01, 0.1, 0.0, 1.0, "3% of total steps"),
    Knob("weight_decay", float, 0.01, 0.0, 0.1, 0.0, 1.0, "regularization"),
    Knob("lora_r", int, 16, 8, 64, 1, 1024, "higher = more capacity"),
    Knob("lora_alpha", int, 16, None, None, 1, 4096, "usually equals rank"),
    Knob("lora_dropout", float, 0.0, 0.0, 0.1, 0.0, 0.9, "use 0.05-0.1 if overfitting"),
)

DPO_KNOBS = (
    Knob("learning_rate", float, 5e-6, 1e-6, 2e-5, 0.0, 1.0, "10-50x lower than SFT"),
    Knob("n_epochs", int, 1, 1, 1, 1, 100, "usually a single pass"),
    Knob("batch_size", int, 4, 2, 32, 1, 4096, "higher = more stable, more VRAM"),
    Knob("beta", float, 0.1, 0.01, 0.5, 0.0, 10.0, "controls preference strength"),
    Knob("warmup_ratio", float, 0.03, 0.01, 0.1, 0.0, 1.0, "3% of total steps"),
    Knob("weight_decay", float, 0.01, 0.0, 0.1, 0.0, 1.0, "regularization"),
    Knob("lora_r", int, 16, 8, 64, 1, 1024, "higher = more capacity"),
    Knob("lora_alpha", int, 16, None, None, 1, 4096, "usually equals rank"),
    Knob("lora_dropout", float, 0.0, 0.0, 0.1, 0.0, 0.9, "use 0.05-0.1 if overfitting"),
)

OPENAI_SFT_KNOBS = (
    Knob("n_epochs", int, 3, 1, 5, 1, 50, "more epochs = overfitting risk; try 1-2"),
    Knob("batch_size", int, 4, 2, 32, 1, 256, "higher = more stable"),
    Knob("learning_rate_multiplier", float, 1.0, 0.1, 2.0, 0.0, 10.0, "OpenAI accepts 0.1-2.0"),
)
OPENAI_DPO_KNOBS = (
    Knob("n_epochs", int, 1, 1, 1, 1, 50, "usually a single pass"),
    Knob("batch_size", int, 4, 2, 32, 1, 256, "higher = more stable"),
    Knob("learning_rate_multiplier", float, 1.0, 0.1, 2.0, 0.0, 10.0, "OpenAI accepts 0.1-2.0"),
    Knob("beta", float, 0.1, 0.01, 0.5, 0.0, 10.0, "controls preference strength"),
)

# Keys that pass through untouched (trainer options with no seed rule).
PASSTHROUGH = frozenset(
    {"max_steps", "max_seq_length", "gradient_accumulation_steps", "eval_steps",
     "early_stopping_patience", "seed", "lr_scheduler_type"}
)


@dataclass(frozen=True)
class ResolvedHyperparameters:
    values: dict[str, Any]
    warnings: list[Problem]


def knobs_for(method: str, backend: str) -> tuple[Knob, ...]:
    if backend == "openai":
        return OPENAI_DPO_KNOBS if method == "dpo" else OPENAI_SFT_KNOBS
    return DPO_KNOBS if method == "dpo" else SFT_KNOBS


def _coerce(knob: Knob, raw: Any) -> Any:
    if isinstance(raw, bool):
        raise ValueError("booleans are not numbers")
    if knob.kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError("must be a whole number")
        return int(raw)
    return float(raw)


def _check(knob: Knob, value: Any, errors: list[Problem], warnings: list[Problem]) -> None:
    field = f"hyperparameters.{knob.name}"
    hard_low = knob.hard_low if knob.hard_low is not None else float("-inf")
    hard_high = knob.hard_high if knob.hard_high is not None else float("inf")
    if not hard_low <= value <= hard_high or (knob.name == "learning_rate" and value <= 0):
        errors.append(Problem("hyperparameter_invalid", f"{knob.name}={value} is not usable.",
                              field=field))
        return
    if knob.low is not None and knob.high is not None and not knob.low <= value <= knob.high:
        warnings.append(Problem(
            "hyperparameter_out_of_range",
            f"{knob.name}={value:g} is outside the recommended {knob.low:g}-{knob.high:g} "
            f"({knob.advice}).",
            field=field, severity="warning"))


def resolve(*, method: str, backend: str, given: Mapping[str, Any]) -> ResolvedHyperparameters:
    """Fill defaults from the seed, coerce types, and lint ranges. Raises InvalidInput on errors."""
    knobs = {k.name: k for k in knobs_for(method, backend)}
    errors: list[Problem] = []
    warnings: list[Problem] = []
    values: dict[str, Any] = {}
    for name, raw in given.items():
        if name not in knobs and name not in PASSTHROUGH:
            errors.append(Problem("hyperparameter_unknown", f"Unknown hyperparameter {name!r}.",
                                  field=f"hyperparameters.{name}"))
            continue
        if name in PASSTHROUGH:
            values[name] = raw
            continue
        try:
            values[name] = _coerce(knobs[name], raw)
        except (TypeError, ValueError) as exc:
            errors.append(Problem("hyperparameter_invalid", f"{name}: {exc or 'not a number'}.",
                                  field=f"hyperparameters.{name}"))
    for name, knob in knobs.items():
        if name in values:
            _check(knob, values[name], errors, warnings)
        elif name == "lora_alpha" and "lora_r" in values:
            values[name] = values["lora_r"]
        else:
            values[name] = knob.default
    if errors:
        raise InvalidInput("invalid_hyperparameters", "Some hyperparameters are unusable.", errors)
    return ResolvedHyperparameters(values=values, warnings=warnings)
