"""`/finetune ...` text → a command value. Pure: no Slack, no database, never raises.

Anything it cannot read becomes `Help(error=...)`, so a typo earns the usage text instead of a
stack trace. Slack wraps links as `<https://...|label>` and users as `<@U1>`; both are unwrapped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

# Short names people type → the hyperparameter names the policy knows.
ALIASES = {
    "lr": "learning_rate", "epochs": "n_epochs", "batch": "batch_size", "bs": "batch_size",
    "r": "lora_r", "rank": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout",
    "warmup": "warmup_ratio", "wd": "weight_decay", "lr_mult": "learning_rate_multiplier",
    "early_stopping": "early_stopping_patience", "patience": "early_stopping_patience",
}
# Options that are about the job, not its hyperparameters.
JOB_FIELDS = {"model": "base_model", "base_model": "base_model", "backend": "backend",
              "method": "method", "validation": "validation", "val": "validation",
              "suffix": "suffix"}
LIST_SCOPES = ("mine", "running", "all")

USAGE = """\
*`/finetune` commands*
• `/finetune start` — open the form (file upload, model, backend, hyperparameters)
• `/finetune start <file|ds_id|url> model=<base> backend=local|openai method=sft|dpo \
epochs=3 lr=2e-4 batch=4 r=16 alpha=16 dropout=0.05 early_stopping=3 validation=<ds_id>`
• `/finetune status [job]` — the job's card (default: your latest job)
• `/finetune list [mine|running|all]`
• `/finetune cancel <job>` — creator, on-call and admins only
• `/finetune approve <job>` — release a job held by a cost or GPU-time cap (on-call and admins)
• `/finetune subscribe [backend]` / `/finetune unsubscribe [backend]` — this channel follows \
all jobs, or one backend's
• `/finetune help`"""


@dataclass(frozen=True)
class Start:
    source: str | None = None  # Slack file id, dataset id or URL; None opens the modal
    base_model: str | None = None
    backend: str | None = None
    method: str | None = None
    validation: str | None = None
    suffix: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    job_id: str | None = None


@dataclass(frozen=True)
class ListJobs:
    scope: str = "mine"


@dataclass(frozen=True)
class Cancel:
    job_id: str


@dataclass(frozen=True)
class Approve:
    job_id: str


@dataclass(frozen=True)
class Subscribe:
    backend: str | None = None


@dataclass(frozen=True)
class Unsubscribe:
    backend: str | None = None


@dataclass(frozen=True)
class Help:
    error: str | None = None


Command = Start | Status | ListJobs | Cancel | Approve | Subscribe | Unsubscribe | Help

_SLACK_LINK = re.compile(r"^<([^|>]+)(?:\|[^>]*)?>$")
_JOB_ID = re.compile(r"^job_[A-Za-z0-9]+$")


def unwrap(token: str) -> str:
    """`<https://x|label>` → `https://x`; `<@U1>` → `@U1`; anything else unchanged."""
    match = _SLACK_LINK.match(token)
    return match.group(1) if match else token


def number(raw: str) -> Any:
    """'3' → 3, '2e-4' → 0.0002, anything else stays text (the policy reports it)."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def parse(text: str) -> Command:
    try:
        words = [unwrap(w) for w in shlex.split(text or "")]
    except ValueError as exc:
        return Help(error=f"Could not read the command: {exc}.")
    if not words or words[0].lower() in ("help", "-h", "--help"):
        return Help()
    verb, rest = words[0].lower(), words[1:]
    parser = _VERBS.get(verb)
    if parser is None:
        return Help(error=f"Unknown command `{verb}`.")
    return parser(rest)


def _start(words: list[str]) -> Command:
    source: str | None = None
    job: dict[str, str] = {}
    hyper: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            if source is not None:
                return Help(error=f"Only one dataset, please: `{source}` or `{word}`?")
            source = word
        elif not key or not value:
            return Help(error=f"`{word}` should look like `name=value`.")
        elif key.lower() in JOB_FIELDS:
            job[JOB_FIELDS[key.lower()]] = value
        else:
            name = ALIASES.get(key.lower(), key.lower())
            hyper[name] = number(value)
    return Start(source=source, hyperparameters=hyper, **job)


def _status(words: list[str]) -> Command:
    if len(words) > 1:
        return Help(error="`status` takes at most one job id.")
    return Status(job_id=words[0] if words else None)


def _list(words: list[str]) -> Command:
    if len(words) > 1 or (words and words[0].lower() not in LIST_SCOPES):
        return Help(error=f"`list` takes one of {', '.join(LIST_SCOPES)}.")
    return ListJobs(scope=words[0].lower() if words else "mine")


def _cancel(words: list[str]) -> Command:
    if len(words) != 1 or not _JOB_ID.match(words[0]):
        return Help(error="`cancel` needs one job id, like `job_0193f2c4a1b2...`.")
    return Cancel(job_id=words[0])


def _approve(words: list[str]) -> Command:
    if len(words) != 1 or not _JOB_ID.match(words[0]):
        return Help(error="`approve` needs one job id, like `job_0193f2c4a1b2...`.")
    return Approve(job_id=words[0])


def _subscription(kind: type[Subscribe] | type[Unsubscribe]) -> Any:
    def parse_backend(words: list[str]) -> Command:
        if len(words) > 1:
            return Help(error="Subscribe to all jobs, or to one backend: `subscribe local`.")
        return kind(backend=words[0].lower() if words else None)

    return parse_backend


_VERBS: dict[str, Any] = {
    "start": _start, "new": _start, "status": _status, "list": _list, "ls": _list,
    "cancel": _cancel, "stop": _cancel, "approve": _approve, "subscribe": _subscription(Subscribe),
    "unsubscribe": _subscription(Unsubscribe),
}
