"""Per-example token counts and their statistics, in bounded memory.

Percentiles come from a histogram of integer token counts: exact for counts below 2**17
(longer than any fine-tuning context), and above that bucketed to the top 8 significant bits
(under 1% relative error). So the histogram holds at most ~135k keys however many examples
stream through: constant memory with exact p50/p95 in practice, no sampling.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunebridge.tokens import TokenCounter
from tunebridge.validation.formats import (
    CHAT,
    PREFERENCE,
    PREFERENCE_OPENAI,
    PROMPT_COMPLETION,
    TEXT,
)

_EXACT_BELOW = 1 << 17


def _bucket(tokens: int) -> int:
    if tokens < _EXACT_BELOW:
        return tokens
    shift = tokens.bit_length() - 8
    return (tokens >> shift) << shift


@dataclass
class TokenStats:
    """min, p50, p95, max, total; over-limit count and tokens billed per epoch under a context."""

    context: int | None = None
    examples: int = 0
    total: int = 0
    minimum: int | None = None
    maximum: int | None = None
    over_limit: int = 0
    billed_per_epoch: int = 0
    histogram: Counter[int] = field(default_factory=Counter, repr=False)

    def add(self, tokens: int) -> None:
        self.examples += 1
        self.total += tokens
        self.minimum = tokens if self.minimum is None else min(self.minimum, tokens)
        self.maximum = tokens if self.maximum is None else max(self.maximum, tokens)
        self.histogram[_bucket(tokens)] += 1
        if self.context is not None and tokens > self.context:
            self.over_limit += 1
        # OpenAI truncates an example at the context, so it bills at most that much.
        self.billed_per_epoch += tokens if self.context is None else min(tokens, self.context)

    def merge(self, other: TokenStats) -> None:
        """Fold in the statistics of another part of the same file (same context)."""
        self.examples += other.examples
        self.total += other.total
        self.over_limit += other.over_limit
        self.billed_per_epoch += other.billed_per_epoch
        self.histogram.update(other.histogram)
        for value in (other.minimum, other.maximum):
            if value is not None:
                self.minimum = value if self.minimum is None else min(self.minimum, value)
                self.maximum = value if self.maximum is None else max(self.maximum, value)

    def percentile(self, q: float) -> int | None:
        """Nearest-rank percentile: the smallest count with at least q% of examples at or below."""
        if not self.examples:
            return None
        rank = max(1, math.ceil(q / 100 * self.examples))
        seen = 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return value
        return self.maximum

    def billed_tokens(self, epochs: int) -> int:
        """sum(min(n, context)) x epochs: what a training run over this file is billed."""
        return self.billed_per_epoch * epochs

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples, "min": self.minimum, "p50": self.percentile(50),
            "p95": self.percentile(95), "max": self.maximum, "total": self.total,
            "context": self.context, "over_limit": self.over_limit,
            "billed_tokens_per_epoch": self.billed_per_epoch,
        }


def example_tokens(counter: TokenCounter, record: dict[str, Any], fmt: str) -> int:
    """Tokens of the longest sequence the model sees for this example.

    For preference pairs that is the prompt plus the longer of the two answers, which is what
    has to fit in the context.
    """
    if fmt == CHAT:
        return counter.messages(record["messages"]) + counter.tools(record.get("tools"))
    if fmt == PREFERENCE_OPENAI:
        prompt = record["input"]
        head = counter.messages(prompt["messages"], reply=False) + counter.tools(
            prompt.get("tools"))
        return head + max(counter.messages(record["preferred_output"]),
                          counter.messages(record["non_preferred_output"]))
    if fmt == PREFERENCE:
        return _part(counter, record["prompt"], reply=False) + max(
            _part(counter, record["chosen"]), _part(counter, record["rejected"]))
    if fmt == PROMPT_COMPLETION:
        return _part(counter, record["prompt"], reply=False) + _part(counter,
                                                                     record["completion"])
    if fmt == TEXT:
        return counter.text(record["text"])
    raise ValueError(f"unknown format {fmt!r}")


def _part(counter: TokenCounter, value: Any, *, reply: bool = True) -> int:
    """A TRL field is plain text or a message list; only lists get chat overhead."""
    if isinstance(value, str):
        return counter.text(value)
    return counter.messages(value, reply=reply)
