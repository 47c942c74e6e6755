"""Builders for line-numbered JSONL fixtures: a test names the line it breaks and the code it
expects there, so a wrong line number fails as surely as a wrong code."""

from __future__ import annotations

import json
from typing import Any

from tunebridge.validation import ValidationOptions, ValidationReport, validate_bytes

Item = dict[str, Any] | str | bytes


def chat(question: str = "What is 2 + 2?", answer: str = "4.", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}], **extra}


def msgs(*pairs: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    """A chat record from (role, content) pairs; content None leaves the key out."""
    messages = [{"role": role} | ({} if content is None else {"content": content})
                for role, content in pairs]
    return {"messages": messages, **extra}


def jsonl(*items: Item) -> bytes:
    """Dicts are dumped, str and bytes taken raw; one item a line, newline-terminated."""
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode())
        else:
            out.append(json.dumps(item, ensure_ascii=False).encode())
    return b"".join(line + b"\n" for line in out)


def check(data: bytes, **options: Any) -> ValidationReport:
    return validate_bytes(data, ValidationOptions(**options))


def located(report: ValidationReport) -> set[tuple[str, int | None]]:
    return {(p.code, p.line) for p in report.problems}
