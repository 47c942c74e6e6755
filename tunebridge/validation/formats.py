"""Dataset formats, how a record's keys reveal its format, and which backend trains which."""

from __future__ import annotations

from typing import Any

from tunebridge.errors import Problem

CHAT = "chat"
PREFERENCE = "preference"  # TRL: prompt / chosen / rejected
PREFERENCE_OPENAI = "preference_openai"  # input / preferred_output / non_preferred_output
PROMPT_COMPLETION = "prompt_completion"
TEXT = "text"

FORMATS = (CHAT, PREFERENCE, PREFERENCE_OPENAI, PROMPT_COMPLETION, TEXT)

OPENAI = "openai"
LOCAL = "local"

# OpenAI's fine-tunable chat models take chat (SFT) and its preference shape (DPO) only; the
# local trainer (trl) takes every format, converting OpenAI's preference shape itself.
BACKEND_FORMATS: dict[str, frozenset[str]] = {
    OPENAI: frozenset({CHAT, PREFERENCE_OPENAI}),
    LOCAL: frozenset(FORMATS),
}

METHOD_FOR_FORMAT = {
    CHAT: "sft",
    PROMPT_COMPLETION: "sft",
    TEXT: "sft",
    PREFERENCE: "dpo",
    PREFERENCE_OPENAI: "dpo",
}

# OpenAI refuses a training file with fewer examples than this.
OPENAI_MIN_EXAMPLES = 10


def detect_format(record: dict[str, Any]) -> str | None:
    """The format a record claims by its keys; its shape is checked afterwards.

    One distinctive key is enough, so a record missing a required key is reported as that
    format with a missing field rather than as an unknown format.
    """
    keys = record.keys()
    if "messages" in keys:
        return CHAT
    if keys & {"input", "preferred_output", "non_preferred_output"}:
        return PREFERENCE_OPENAI
    if keys & {"chosen", "rejected"}:
        return PREFERENCE
    if keys & {"prompt", "completion"}:
        return PROMPT_COMPLETION
    if "text" in keys:
        return TEXT
    return None


def format_supported(fmt: str, backend: str | None) -> bool:
    """An unknown backend (None: not chosen yet, e.g. at upload) accepts every format."""
    return backend is None or fmt in BACKEND_FORMATS.get(backend, frozenset(FORMATS))


def unsupported_format_problem(fmt: str, backend: str, line: int | None = None) -> Problem:
    allowed = sorted(BACKEND_FORMATS.get(backend, FORMATS))
    return Problem("format_not_supported",
                   f"The {backend} backend does not train {fmt!r} data; it takes {allowed}.",
                   line=line)
