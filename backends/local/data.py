"""Turning validated JSONL rows into the shapes trl's trainers take.

Pure functions over dicts (no torch, no datasets), so they are unit-tested directly. The services
have validated the files already; what is left here is choosing a shape per format and saying
which tokens the loss covers, which the run's result records.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Prepared:
    rows: list[Row]
    # which tokens the loss covers: "assistant_only" | "last_assistant_turn" |
    # "completion_only" | "full_text" | "dpo"
    loss_mask: str


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DataError(f"{path}:{number}: not JSON ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows


def detect_format(row: Row) -> str:
    if "messages" in row:
        return "chat"
    if "preferred_output" in row and "input" in row:
        return "openai_dpo"
    if {"prompt", "chosen", "rejected"} <= row.keys():
        return "trl_dpo"
    if {"prompt", "completion"} <= row.keys():
        return "prompt_completion"
    if "text" in row:
        return "text"
    raise DataError(f"unrecognised example with keys {sorted(row)}")


def _single_format(rows: Sequence[Row]) -> str:
    formats = {detect_format(row) for row in rows}
    if len(formats) != 1:
        raise DataError(f"mixed formats in one file: {sorted(formats)}")
    return formats.pop()


def prepare_sft(rows: Sequence[Row], template_marks_generation: bool) -> Prepared:
    """Rows for SFTTrainer. Chat loss covers assistant tokens only.

    With `{% generation %}` markers in the chat template trl masks every assistant turn; without
    them (SmolLM2's ChatML template, for one) the last assistant turn becomes a conversational
    completion, which trl masks the same way.
    """
    fmt = _single_format(rows)
    if fmt == "chat" and template_marks_generation:
        for number, row in enumerate(rows, start=1):
            if not any(m.get("role") == "assistant" for m in row["messages"]):
                raise DataError(f"example {number} has no assistant message to learn from")
        return Prepared([{"messages": row["messages"]} for row in rows], "assistant_only")
    if fmt == "chat":
        return Prepared([_split_last_turn(row["messages"]) for row in rows], "last_assistant_turn")
    if fmt == "prompt_completion":
        keep = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
        return Prepared(keep, "completion_only")
    if fmt == "text":
        return Prepared([{"text": row["text"]} for row in rows], "full_text")
    raise DataError(f"{fmt} data is preference data: use method 'dpo'")


def _split_last_turn(messages: Sequence[Row]) -> Row:
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("a chat example must end with an assistant message")
    plain = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    return {"prompt": plain[:-1], "completion": plain[-1:]}


def prepare_dpo(rows: Sequence[Row]) -> Prepared:
    """Rows for DPOTrainer in trl's {"prompt","chosen","rejected"} shape."""
    fmt = _single_format(rows)
    if fmt == "trl_dpo":
        keep = [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in rows]
        return Prepared(keep, "dpo")
    if fmt == "openai_dpo":
        return Prepared([_from_openai_dpo(row) for row in rows], "dpo")
    raise DataError(f"{fmt} data has no preference pairs: use method 'sft'")


def _from_openai_dpo(row: Row) -> Row:
    return {
        "prompt": list(row["input"]["messages"]),
        "chosen": list(row["preferred_output"]),
        "rejected": list(row["non_preferred_output"]),
    }


def split_holdout(rows: Sequence[Row], share: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Hold out `share` of the rows (at least one, never all) for evaluation."""
    if not 0 < share < 1:
        raise DataError(f"eval_holdout must be between 0 and 1, got {share}")
    if len(rows) < 2:
        raise DataError("need at least two examples to hold some out")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * share)))
    held = set(order[:n_eval])
    train = [r for i, r in enumerate(rows) if i not in held]
    return train, [rows[i] for i in sorted(held)]


def probe_pairs(rows: Iterable[Row], limit: int, seed: int) -> list[tuple[Any, str]]:
    """(prompt, expected completion text) pairs for the memorization probe."""
    pairs = []
    for row in rows:
        if "prompt" in row and "completion" in row:
            completion = row["completion"]
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            pairs.append((row["prompt"], str(text)))
        elif "messages" in row and row["messages"][-1].get("role") == "assistant":
            pairs.append((row["messages"][:-1], str(row["messages"][-1].get("content") or "")))
    random.Random(seed).shuffle(pairs)
    return pairs[:limit]
