"""Helpers shared by the OpenAI backend tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.base import JobSpec
from backends.openai import OpenAIBackend

API_KEY = "sk-fake-test"
BackendFactory = Callable[..., OpenAIBackend]


def write_jsonl(path: Path, rows: int, *, width: int = 40) -> Path:
    """A chat-format SFT file of roughly `rows * (width + 60)` bytes."""
    lines = []
    for i in range(rows):
        messages = [
            {"role": "user", "content": f"question {i} " + "x" * width},
            {"role": "assistant", "content": f"answer {i}"},
        ]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n")
    return path


def sft_spec(training_file: Path, job_id: str = "tb-job-1", **changes: Any) -> JobSpec:
    options: dict[str, Any] = {
        "job_id": job_id,
        "base_model": "gpt-4o-mini-2024-07-18",
        "method": "sft",
        "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0},
        "training_file": training_file,
        "suffix": "support-bot",
        "seed": 7,
    }
    options.update(changes)
    return JobSpec(**options)
