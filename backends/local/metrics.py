"""Reading the trainer's JSON-lines streams incrementally, and turning log records into samples.

The trainer appends while the gateway reads, so a reader can meet a half-written last line: it
only ever consumes up to the last newline and leaves the rest for the next poll. Offsets are
byte positions, which survive a gateway restart as a plain integer in the cursor.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import MetricSample

log = logging.getLogger(__name__)

MAX_READ_BYTES = 1 << 20  # one poll reads at most this much; the next poll continues

# Fields that describe the log call rather than training, kept out of `extra`.
_BOOKKEEPING = {
    "step", "epoch", "kind", "at",
    "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
}
_NAMED = {
    "loss": "train_loss",
    "eval_loss": "eval_loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "mean_token_accuracy": "token_accuracy",
    "eval_mean_token_accuracy": "eval_token_accuracy",
}


@dataclass(frozen=True)
class Chunk:
    records: list[dict[str, Any]]
    next_offset: int


def read_jsonl_from(path: Path, offset: int, max_bytes: int = MAX_READ_BYTES) -> Chunk:
    """Complete lines from byte `offset` on; a partial last line is left unread."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return Chunk([], offset)
    end = data.rfind(b"\n")
    if end < 0:
        return Chunk([], offset)
    records = []
    for raw in data[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError:
            log.warning("skipping malformed line in %s: %r", path, raw[:200])
    return Chunk(records, offset + end + 1)


def to_sample(record: Mapping[str, Any]) -> MetricSample | None:
    """One trainer log record as a MetricSample; None for records that carry no metric."""
    if "step" not in record:
        return None
    named: dict[str, float] = {}
    extra: dict[str, float] = {}
    for key, value in record.items():
        if key in _BOOKKEEPING or not _is_number(value):
            continue
        if key in _NAMED:
            named[_NAMED[key]] = float(value)
        else:
            extra[key] = float(value)
    if not named and not extra:
        return None
    return MetricSample(
        step=int(record["step"]),
        epoch=_number(record.get("epoch")),
        train_loss=named.get("train_loss"),
        eval_loss=named.get("eval_loss"),
        grad_norm=named.get("grad_norm"),
        learning_rate=named.get("learning_rate"),
        token_accuracy=named.get("token_accuracy"),
        eval_token_accuracy=named.get("eval_token_accuracy"),
        extra=extra,
    )


def non_finite(record: Mapping[str, Any]) -> str | None:
    """The name of the first loss or grad-norm value that is NaN or infinite, if any."""
    for key in ("loss", "grad_norm", "eval_loss"):
        value = _number(record.get(key))
        if value is not None and not math.isfinite(value):
            return key
    return None


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
