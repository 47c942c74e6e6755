"""Reading runs made anywhere: a Hugging Face `trainer_state.json`, our metrics JSONL, or an
OpenAI step-metrics CSV — told apart by content, not by file name, so an upload body works too.

Bad input raises `InvalidInput` with a code and, where known, the line and field, in the same
vocabulary as the rest of tunebridge.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from tunebridge.errors import InvalidInput, Problem
from tunebridge.health.series import MetricSeries, Objective

# Keys that only preference (DPO-style) or RL (GRPO/PPO-style) trainers log.
_PREFERENCE_KEYS = ("rewards/chosen", "rewards/margins", "logps/chosen")
_RL_KEYS = ("reward", "reward_std", "kl", "completion_length", "completions/mean_length")
_SUMMARY_KEYS = ("train_runtime", "total_flos")  # HF's end-of-run summary, not a log


class MetricsFormat(StrEnum):
    TRAINER_STATE = "trainer_state"
    JSONL = "jsonl"
    OPENAI_CSV = "openai_csv"


def load_series(path: str | Path) -> MetricSeries:
    """Read a metrics file of any supported format."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput("unreadable_metrics", f"Cannot read {file}: {exc}") from exc
    return parse_series(text)


def parse_series(text: str) -> MetricSeries:
    """Parse file contents (e.g. an HTTP body) after detecting the format."""
    kind = detect_format(text)
    if kind is MetricsFormat.TRAINER_STATE:
        return parse_trainer_state(text)
    if kind is MetricsFormat.JSONL:
        return parse_jsonl(text)
    return parse_openai_csv(text)


def detect_format(text: str) -> MetricsFormat:
    stripped = text.lstrip()
    if not stripped:
        raise InvalidInput("empty_metrics", "The metrics file is empty.")
    if stripped.startswith("{"):
        try:
            whole = json.loads(stripped)
        except ValueError:
            return MetricsFormat.JSONL
        if isinstance(whole, dict) and "log_history" in whole:
            return MetricsFormat.TRAINER_STATE
        return MetricsFormat.JSONL
    header = stripped.splitlines()[0].lower()
    if "step" in header and "," in header:
        return MetricsFormat.OPENAI_CSV
    raise InvalidInput("unknown_metrics_format",
                       "Expected a trainer_state.json, a metrics JSONL or an OpenAI step-metrics "
                       "CSV (header starting with step,train_loss).", [Problem("unknown_format",
                       "Unrecognised first line.", line=1)])


def parse_trainer_state(text: str) -> MetricSeries:
    state = json.loads(text)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise InvalidInput("invalid_trainer_state", "log_history must be a list.",
                           [Problem("not_a_list", "log_history must be a list.",
                                    field="log_history")])
    records = [r for r in history if isinstance(r, dict) and not _is_summary(r)]
    rows = [_hf_row(r) for r in records]
    total = state.get("max_steps")
    return MetricSeries.from_rows(rows, total_steps=_positive_int(total),
                                  objective=_objective(records))


def parse_jsonl(text: str) -> MetricSeries:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InvalidInput("invalid_jsonl", f"Line {number} is not valid JSON: {exc}",
                               [Problem("invalid_json", str(exc), line=number)]) from exc
        if not isinstance(record, dict):
            raise InvalidInput("invalid_jsonl", f"Line {number} is not a JSON object.",
                               [Problem("not_an_object", "Expected an object.", line=number)])
        if not _is_summary(record):
            records.append(record)
    total = next((_positive_int(r.get("total_steps", r.get("max_steps"))) for r in records
                  if r.get("total_steps", r.get("max_steps")) is not None), None)
    return MetricSeries.from_rows(records, total_steps=total, objective=_objective(records))


def parse_openai_csv(text: str) -> MetricSeries:
    """OpenAI's result file. `full_valid_loss` (whole validation set, once per epoch) is used
    as the eval loss when it has at least 3 values; else the per-batch `valid_loss`."""
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "step" not in fields:
        raise InvalidInput("invalid_metrics_csv", "The CSV header has no 'step' column.",
                           [Problem("missing_column", "No 'step' column.", line=1, field="step")])
    rows = [{k.strip(): v for k, v in row.items() if k} for row in reader]
    full = sum(1 for r in rows if (r.get("full_valid_loss") or "").strip())
    eval_key = "full_valid_loss" if full >= 3 else "valid_loss"
    mapped = [{"step": r.get("step"), "train_loss": r.get("train_loss"),
               "eval_loss": r.get(eval_key)} for r in rows]
    return MetricSeries.from_rows(mapped)


def _hf_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """HF logs "loss" for training; "train_loss" only appears in the summary we skip."""
    return {k: record[k] for k in ("step", "epoch", "loss", "eval_loss", "grad_norm",
                                   "learning_rate") if k in record}


def _is_summary(record: Mapping[str, Any]) -> bool:
    return any(k in record for k in _SUMMARY_KEYS)


def _objective(records: list[dict[str, Any]]) -> Objective:
    keys = {k for r in records for k in r}
    if any(k in keys for k in _PREFERENCE_KEYS):
        return Objective.PREFERENCE
    if any(k in keys or any(x.startswith(k + "/") for x in keys) for k in _RL_KEYS):
        return Objective.REINFORCEMENT
    return Objective.SUPERVISED


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None
