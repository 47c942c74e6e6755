"""Everything the bot says that is not the card: errors, help, lists, thread replies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bot.blocks.card import position, status_label
from bot.blocks.text import (
    FALLBACK_TEXT,
    MAX_MESSAGE_BLOCKS,
    clip,
    context,
    escape,
    section,
    user_ref,
)
from bot.commands import USAGE
from storage.tables import Job
from tunebridge.errors import Problem, TunebridgeError
from tunebridge.progress import JobSnapshot, summary_text

Message = tuple[str, list[dict[str, Any]]]  # fallback text, blocks
SHOWN_PROBLEMS = 10
WARNING_KINDS = frozenset({"health", "warning", "alert", "runaway"})


def where(problem: Problem) -> str:
    parts = []
    if problem.line is not None:
        parts.append(f"line {problem.line}" + (f":{problem.column}" if problem.column else ""))
    if problem.field:
        parts.append(f"`{escape(problem.field)}`")
    return ", ".join(parts)


def problem_lines(problems: Sequence[Problem], shown: int = SHOWN_PROBLEMS) -> list[str]:
    """The first `shown` problems, one line each, then counts per code for the rest."""
    lines = []
    for problem in problems[:shown]:
        place = where(problem)
        lines.append(clip(f"• {place + ': ' if place else ''}{escape(problem.message)}", 280))
    rest = Counter(p.code for p in problems[shown:])
    if rest:
        counts = ", ".join(f"{n} × `{code}`" for code, n in rest.most_common(8))
        lines.append(f"…and {sum(rest.values())} more: {counts}")
    return lines


def error_message(error: TunebridgeError) -> Message:
    """One error vocabulary, rendered for Slack: message, located problems, capped."""
    blocks = [section(f":warning: *{escape(error.message)}*")]
    errors = [p for p in error.problems if p.severity == "error"] or list(error.problems)
    lines = problem_lines(errors)
    counts = error.details.get("counts")
    if isinstance(counts, Mapping) and counts.get("errors", 0) > len(errors):
        lines.append(f"({counts['errors']} errors in the file in total)")
    if lines:
        blocks.append(section("\n".join(lines)))
    blocks.append(context(f"code `{error.code}`"))
    return clip(error.message, FALLBACK_TEXT), blocks


def help_message(error: str | None = None) -> Message:
    blocks = [section(f":grey_question: {escape(error)}")] if error else []
    blocks.append(section(USAGE))
    return (error or "Usage") + ": /finetune help", blocks


def created_message(job: Job, warnings: Sequence[Problem], channel: str | None) -> Message:
    where_text = f" Updates go to <#{channel}>." if channel else ""
    blocks = [section(f":rocket: Job `{job.id}` created ({escape(job.backend)}, "
                      f"{escape(job.base_model)}).{where_text}")]
    if warnings:
        lines = problem_lines(warnings)
        blocks.append(section(":warning: *Outside the seed's recommended ranges:*\n"
                              + "\n".join(lines)))
    return f"Job {job.id} created", blocks


def job_list(jobs: Sequence[Job], scope: str) -> Message:
    if not jobs:
        return f"No {scope} jobs", [section(f"No jobs ({scope}).")]
    lines = [f"• `{j.id}` {status_label(j.status)} · {escape(j.backend)} · "
             f"{escape(j.base_model)} · {user_ref(j.creator)}" for j in jobs]
    blocks = [section(f"*Jobs ({scope})*")]
    for start in range(0, len(lines), 20):  # 20 lines stay well inside a section's 3000 chars
        blocks.append(section("\n".join(lines[start:start + 20])))
    return f"{len(jobs)} jobs", blocks[:MAX_MESSAGE_BLOCKS]


def reply(kind: str, text: str, data: Mapping[str, Any], snapshot: JobSnapshot,
          oncall_group: str | None) -> Message:
    """A thread reply for one notification; warnings mention the creator and list the fixes."""
    job = snapshot.job
    body = escape(text)
    if kind == "loss_summary":
        body = f":chart_with_downwards_trend: {body}"
    elif kind == "completion_summary":
        body = f":bar_chart: *Summary* — {body}"
    elif kind in WARNING_KINDS:
        mention = user_ref(job.creator)
        if data.get("mention_oncall") and oncall_group:
            mention += f" <!subteam^{oncall_group}>"
        body = f":warning: {mention} {body}"
    elif kind == "status":
        body = f"{status_label(job.status if data.get('status') is None else data['status'])}" \
               f" — {body}"
    blocks = [section(body)]
    fixes = [str(f) for f in data.get("fixes") or []]
    if fixes:
        blocks.append(section("*Try:*\n" + "\n".join(f"• {escape(f)}" for f in fixes[:10])))
    if kind == "status" and data.get("status") in ("succeeded", "failed", "cancelled"):
        blocks.append(context(escape(summary_text(job, snapshot.progress))
                              + f" · {position(snapshot.progress)}"))
    return clip(text, FALLBACK_TEXT), blocks
