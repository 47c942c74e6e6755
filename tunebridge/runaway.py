"""Runaway jobs: past their time budget, past their cost cap, or far past their estimate.

Pure: a job row, the time, how far it got and the policy in; findings out. The poller's
`runaway_watch` stores and posts each kind once (mentioning on-call) and, when the policy says
so, cancels the job. A budget counts running time (from `started_at`), not time in a queue.

Cost is what we can know, never a guess dressed as a fact: OpenAI jobs use the billed tokens the
provider reports (`trained_tokens`) times the price, else the estimate's cost pro-rated by the
steps done; local jobs use device-hours times a configured price per GPU-hour, and without one
the cost cap is not checked (the result says so, once, in `unchecked`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from storage.tables import Job
from tunebridge import estimates
from tunebridge.errors import Problem
from tunebridge.progress import duration_text

# Job options (all optional; the server defaults fill the gaps).
TIME_BUDGET_OPTIONS = ("max_runtime_s", "time_budget_s")
COST_OPTION = "max_cost_usd"
CANCEL_OPTION = "auto_cancel_runaway"


class RunawayKind(StrEnum):
    TIME_BUDGET = "time_budget"
    COST_CAP = "cost_cap"
    OVERRUN = "overrun"  # running far longer than its estimate


@dataclass(frozen=True)
class RunawayDefaults:
    """The server's defaults (from Settings); a job's options override them."""

    time_budget_s: float | None = None
    max_cost_usd: float | None = None
    overrun_factor: float | None = 3.0
    # ...and this far past the estimate at least: a short job's start-up (loading the model)
    # is not a runaway.
    overrun_min_s: float = 600.0
    gpu_hour_usd: float | None = None
    auto_cancel: bool = False


@dataclass(frozen=True)
class RunawayPolicy:
    time_budget_s: float | None
    max_cost_usd: float | None
    overrun_factor: float | None
    gpu_hour_usd: float | None
    auto_cancel: bool
    overrun_min_s: float = 0.0
    cost_cap_from_job: bool = False  # the job set its own cap (else it is the server's)


@dataclass(frozen=True)
class RunawayFinding:
    kind: RunawayKind
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunawayCheck:
    findings: list[RunawayFinding]
    unchecked: list[str]  # limits that apply but cannot be judged, in words


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def option_problems(options: Mapping[str, Any]) -> list[Problem]:
    """The runaway options a user set that cannot work (checked when the job is created)."""
    problems = []
    for name in (*TIME_BUDGET_OPTIONS, COST_OPTION):
        if name in options and options[name] is not None:
            value = _number(options[name])
            if value is None or value <= 0:
                problems.append(Problem("invalid_option", f"{name} must be a positive number.",
                                        field=f"options.{name}"))
    if CANCEL_OPTION in options and not isinstance(options[CANCEL_OPTION], bool):
        problems.append(Problem("invalid_option", f"{CANCEL_OPTION} must be true or false.",
                                field=f"options.{CANCEL_OPTION}"))
    return problems


def policy_for(options: Mapping[str, Any], defaults: RunawayDefaults) -> RunawayPolicy:
    budget = next((_number(options[n]) for n in TIME_BUDGET_OPTIONS if n in options), None)
    cap = _number(options.get(COST_OPTION))
    cancel = options.get(CANCEL_OPTION)
    return RunawayPolicy(
        time_budget_s=budget if budget is not None else defaults.time_budget_s,
        max_cost_usd=cap if cap is not None else defaults.max_cost_usd,
        overrun_factor=defaults.overrun_factor, overrun_min_s=defaults.overrun_min_s,
        gpu_hour_usd=defaults.gpu_hour_usd,
        auto_cancel=cancel if isinstance(cancel, bool) else defaults.auto_cancel,
        cost_cap_from_job=cap is not None)


def check(job: Job, *, now: datetime, fraction: float | None,
          policy: RunawayPolicy) -> RunawayCheck:
    """Every limit the job is past now. `fraction` is the share of its planned steps done
    (it may exceed 1 when a run goes on past its plan); None when unknown."""
    if job.started_at is None:
        return RunawayCheck([], [])
    elapsed = max(0.0, (now - job.started_at).total_seconds())
    findings: list[RunawayFinding] = []
    unchecked: list[str] = []
    budget = policy.time_budget_s
    if budget is not None and elapsed > budget:
        findings.append(RunawayFinding(
            RunawayKind.TIME_BUDGET,
            f"Running for {duration_text(elapsed)}, past its time budget of "
            f"{duration_text(budget)}.",
            {"elapsed_s": round(elapsed, 1), "budget_s": budget}))
    overrun = _overrun(job, elapsed, policy)
    if overrun is not None:
        findings.append(overrun)
    cost = _cost(job, elapsed, fraction, policy, unchecked)
    if cost is not None:
        findings.append(cost)
    return RunawayCheck(findings, unchecked)


def estimated_duration_s(estimate: Mapping[str, Any] | None) -> float | None:
    """Wall time the estimate expects (local jobs' device time); None when it has none."""
    gpu = (estimate or {}).get("gpu_time") or {}
    hours = _number(gpu.get("wall_hours"))
    return hours * 3600 if hours else None


def _overrun(job: Job, elapsed: float, policy: RunawayPolicy) -> RunawayFinding | None:
    expected = estimated_duration_s(job.estimate)
    factor = policy.overrun_factor
    if not factor or expected is None:
        return None
    if elapsed <= max(factor * expected, expected + policy.overrun_min_s):
        return None
    return RunawayFinding(
        RunawayKind.OVERRUN,
        f"Running for {duration_text(elapsed)}, more than {factor:g}x its estimated "
        f"{duration_text(expected)}.",
        {"elapsed_s": round(elapsed, 1), "estimated_s": round(expected, 1), "factor": factor})


def _cost(job: Job, elapsed: float, fraction: float | None, policy: RunawayPolicy,
          unchecked: list[str]) -> RunawayFinding | None:
    cap = _cost_cap(job, policy)
    if cap is None:
        return None
    spent, basis = (_openai_cost(job, fraction) if job.backend == "openai"
                    else _device_cost(job, elapsed, policy.gpu_hour_usd))
    if spent is None:
        if basis:
            unchecked.append(f"cost cap ${cap:,.2f} not checked: {basis}")
        return None
    if spent <= cap:
        return None
    return RunawayFinding(
        RunawayKind.COST_CAP, f"Cost so far ${spent:,.2f} ({basis}) is past its cap ${cap:,.2f}.",
        {"cost_usd": round(spent, 4), "cap_usd": cap, "basis": basis})


def _cost_cap(job: Job, policy: RunawayPolicy) -> float | None:
    """The job's own cap; else the server's, except that a job approved above the server cap
    is held to the estimate it was approved with."""
    cap = policy.max_cost_usd
    if cap is None or policy.cost_cap_from_job:
        return cap
    approved = _number(((job.estimate or {}).get("cost") or {}).get("cost_usd"))
    return max(cap, approved) if approved is not None else cap


def _openai_cost(job: Job, fraction: float | None) -> tuple[float | None, str]:
    cost = (job.estimate or {}).get("cost") or {}
    price = _number(cost.get("usd_per_million")) or estimates.price_per_million(job.base_model)
    trained = _number((job.result or {}).get("trained_tokens"))
    if trained is not None and price is not None:
        return trained / 1_000_000 * price, f"{int(trained):,} billed tokens"
    estimated = _number(cost.get("cost_usd"))
    if estimated is None:
        return None, f"no price or estimate for {job.base_model}"
    if fraction is None:
        return None, ""  # nothing reported yet: judged on a later poll, nothing to say
    return estimated * fraction, f"estimate x {fraction:.0%} of planned steps"


def _device_cost(job: Job, elapsed: float, usd_per_hour: float | None
                 ) -> tuple[float | None, str]:
    if usd_per_hour is None:
        return None, "no price per GPU-hour is configured (TUNEBRIDGE_LOCAL_GPU_HOUR_USD)"
    gpus = _number(((job.estimate or {}).get("gpu_time") or {}).get("gpus")) or 1.0
    hours = elapsed / 3600 * gpus
    return hours * usd_per_hour, f"{hours:.2f} GPU-hours at ${usd_per_hour:,.2f}"

