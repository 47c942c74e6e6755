"""Hyperparameters for a local run: the seed's defaults filled in, types checked.

The services resolve and lint hyperparameters before a job reaches a backend; this module is the
trainer's own guard, so a spec written by hand (or by an older gateway) still trains with the
seed's defaults instead of trl's, and a bad value fails at submit rather than minutes into a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The seed's "Training Configuration" tables. Epochs: the seed says 1-3; we take 2 (3 is the
# overfitting edge and slow on CPU).
SFT_DEFAULTS: dict[str, Any] = {
    "n_epochs": 2,
    "learning_rate": 2e-4,
    "batch_size": 4,
    "warmup_ratio": 0.03,
    "weight_decay": 0.01,
    "lora_r": 16,
    "lora_alpha": None,  # None: equal to lora_r, as the seed advises
    "lora_dropout": 0.0,
    "max_steps": None,
    "max_seq_length": 1024,
    "gradient_accumulation_steps": 1,
    "eval_steps": None,  # None: about ten evaluations per run
    "early_stopping_patience": None,
    "seed": 42,
    "lr_scheduler_type": "linear",  # HF's default; "constant" has no warm-up
}
DPO_DEFAULTS: dict[str, Any] = {
    **SFT_DEFAULTS,
    "n_epochs": 1,
    "learning_rate": 5e-6,
    "beta": 0.1,
}
METHODS = {"sft": SFT_DEFAULTS, "dpo": DPO_DEFAULTS}

_INT_KEYS = {
    "n_epochs", "batch_size", "lora_r", "lora_alpha", "max_steps", "max_seq_length",
    "gradient_accumulation_steps", "eval_steps", "early_stopping_patience", "seed",
}
_FLOAT_KEYS = {"learning_rate", "warmup_ratio", "weight_decay", "lora_dropout", "beta"}
_POSITIVE = _INT_KEYS - {"seed"} | {"learning_rate", "beta"}
_UNIT_INTERVAL = {"warmup_ratio", "lora_dropout"}
_CHOICES = {"lr_scheduler_type": ("linear", "cosine", "cosine_with_restarts", "polynomial",
                                  "constant", "constant_with_warmup")}


class HyperparameterError(ValueError):
    """A value a user can fix; `key` names the offending field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Resolved:
    values: dict[str, Any]
    ignored: tuple[str, ...]


def resolve(method: str, given: Mapping[str, Any], seed: int | None = None) -> Resolved:
    """Fill defaults for `method`, coerce types, reject impossible values.

    "auto" (the OpenAI spelling of "you choose") and None both mean "use the default". Keys we do
    not know are reported in `ignored` instead of failing, so newer gateways can send more.
    """
    if method not in METHODS:
        raise HyperparameterError("method", f"must be one of {sorted(METHODS)}, got {method!r}")
    defaults = METHODS[method]
    values = dict(defaults)
    for key, raw in given.items():
        if key in defaults and raw is not None and raw != "auto":
            values[key] = _coerce(key, raw)
    if seed is not None and given.get("seed") in (None, "auto"):
        values["seed"] = int(seed)
    if values["lora_alpha"] is None:
        values["lora_alpha"] = values["lora_r"]
    ignored = tuple(sorted(k for k in given if k not in defaults))
    return Resolved(values=values, ignored=ignored)


def _coerce(key: str, raw: Any) -> Any:
    if key in _CHOICES:
        if raw not in _CHOICES[key]:
            raise HyperparameterError(key, f"must be one of {list(_CHOICES[key])}, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise HyperparameterError(key, f"expected a number, got {raw!r}")
    try:
        value: Any = _as_int(key, raw) if key in _INT_KEYS else float(raw)
    except (TypeError, ValueError):
        raise HyperparameterError(key, f"expected a number, got {raw!r}") from None
    if key in _POSITIVE and value <= 0:
        raise HyperparameterError(key, f"must be > 0, got {value}")
    if key in _FLOAT_KEYS and value < 0:
        raise HyperparameterError(key, f"must be >= 0, got {value}")
    if key in _UNIT_INTERVAL and value >= 1:
        raise HyperparameterError(key, f"must be < 1, got {value}")
    return value


def _as_int(key: str, raw: Any) -> int:
    number = float(raw)
    if not number.is_integer():
        raise HyperparameterError(key, f"expected a whole number, got {raw!r}")
    return int(number)


def planned_steps(n_examples: int, values: Mapping[str, Any]) -> int:
    """Optimizer steps the run will take (what Trainer computes, without loading anything)."""
    if values.get("max_steps"):
        return int(values["max_steps"])
    batches = -(-n_examples // int(values["batch_size"]))
    per_epoch = max(1, -(-batches // int(values["gradient_accumulation_steps"])))
    return per_epoch * int(values["n_epochs"])


def default_eval_steps(total_steps: int) -> int:
    """About ten evaluations per run: enough points for the overfitting check to see a minimum."""
    return max(1, total_steps // 10)
