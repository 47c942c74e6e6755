"""The validation report: what HTTP, CLI and Slack render, one shape for all three.

The first `max_reported` problems are kept in full; every problem, kept or not, is counted per
code, so a file with a million bad lines costs a few kilobytes of report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunebridge.errors import Problem
from tunebridge.validation.formats import METHOD_FOR_FORMAT
from tunebridge.validation.stats import TokenStats


@dataclass
class ValidationReport:
    format: str | None = None
    num_examples: int = 0
    num_lines: int = 0
    num_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    error_counts: Counter[str] = field(default_factory=Counter)
    warning_counts: Counter[str] = field(default_factory=Counter)
    tokens: TokenStats | None = None
    duplicates: int = 0
    duplicates_exact: bool = True
    max_reported: int = 100

    @property
    def counts(self) -> Counter[str]:
        """Problems per code, errors and warnings together."""
        return self.error_counts + self.warning_counts

    @property
    def error_count(self) -> int:
        return sum(self.error_counts.values())

    @property
    def warning_count(self) -> int:
        return sum(self.warning_counts.values())

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def method(self) -> str | None:
        """sft or dpo, as the format implies."""
        return METHOD_FOR_FORMAT.get(self.format) if self.format else None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    def add(self, problem: Problem) -> None:
        counts = self.error_counts if problem.severity == "error" else self.warning_counts
        counts[problem.code] += 1
        if len(self.problems) < self.max_reported:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "format": self.format,
            "method": self.method,
            "num_examples": self.num_examples,
            "num_lines": self.num_lines,
            "num_bytes": self.num_bytes,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "problems": [p.as_dict() for p in self.problems],
            "problems_truncated": len(self.problems) < self.error_count + self.warning_count,
            "counts": dict(sorted(self.counts.items())),
            "error_counts": dict(sorted(self.error_counts.items())),
            "warning_counts": dict(sorted(self.warning_counts.items())),
            "tokens": self.tokens.as_dict() if self.tokens else None,
            "duplicates": {"count": self.duplicates, "exact": self.duplicates_exact},
        }
