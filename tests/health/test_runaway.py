"""The runaway rules as pure functions: time budget, cost cap (billed tokens, pro-rated
estimate, device-hours), overrun of the estimate, and the job options that set them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.tables import Job
from tunebridge.runaway import (
    RunawayDefaults,
    RunawayKind,
    check,
    option_problems,
    policy_for,
)

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def job(backend: str = "local", *, options: dict[str, Any] | None = None,
        estimate: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
        started: datetime | None = START) -> Job:
    return Job(id="job_1", backend=backend, base_model="gpt-4o-mini-2024-07-18", method="sft",
               status="running", training_dataset_id="ds_1", creator="u",
               options=options or {}, estimate=estimate, result=result, started_at=started,
               hyperparameters={})


def kinds(row: Job, *, after_s: float, fraction: float | None = None,
          defaults: RunawayDefaults | None = None) -> list[RunawayKind]:
    policy = policy_for(row.options, defaults or RunawayDefaults())
    result = check(row, now=START + timedelta(seconds=after_s), fraction=fraction,
                   policy=policy)
    return [f.kind for f in result.findings]


def test_time_budget_from_the_job_option_beats_the_server_default() -> None:
    row = job(options={"max_runtime_s": 600})
    defaults = RunawayDefaults(time_budget_s=60)
    assert kinds(row, after_s=599, defaults=defaults) == []
    assert kinds(row, after_s=601, defaults=defaults) == [RunawayKind.TIME_BUDGET]
    assert kinds(job(), after_s=61, defaults=defaults) == [RunawayKind.TIME_BUDGET]
    assert kinds(job(options={"time_budget_s": 10}), after_s=11) == [RunawayKind.TIME_BUDGET]


def test_a_job_that_has_not_started_uses_no_budget() -> None:
    assert kinds(job(options={"max_runtime_s": 1}, started=None), after_s=10_000) == []


def test_overrun_is_judged_against_the_estimated_duration_and_the_factor() -> None:
    row = job(estimate={"gpu_time": {"wall_hours": 1.0, "gpu_hours": 1.0, "gpus": 1}})
    assert kinds(row, after_s=3 * 3600 - 1) == []
    assert kinds(row, after_s=3 * 3600 + 1) == [RunawayKind.OVERRUN]
    assert kinds(row, after_s=2 * 3600 + 1,
                 defaults=RunawayDefaults(overrun_factor=2)) == [RunawayKind.OVERRUN]
    assert kinds(row, after_s=10 * 3600, defaults=RunawayDefaults(overrun_factor=None)) == []
    assert kinds(job(), after_s=10 * 3600) == []  # no estimate, no overrun
    short = job(estimate={"gpu_time": {"wall_hours": 5 / 3600}})  # start-up dominates
    assert kinds(short, after_s=600) == []
    assert kinds(short, after_s=606) == [RunawayKind.OVERRUN]
    assert kinds(short, after_s=16, defaults=RunawayDefaults(overrun_min_s=0)) == [
        RunawayKind.OVERRUN]


def test_openai_cost_uses_billed_tokens_when_the_provider_reports_them() -> None:
    estimate = {"cost": {"cost_usd": 3.0, "usd_per_million": 3.0, "billed_tokens": 1_000_000}}
    billed = job("openai", options={"max_cost_usd": 5}, estimate=estimate,
                 result={"trained_tokens": 2_000_000})
    result = check(billed, now=START + timedelta(seconds=10), fraction=None,
                   policy=policy_for(billed.options, RunawayDefaults()))
    assert [f.kind for f in result.findings] == [RunawayKind.COST_CAP]
    assert result.findings[0].data["cost_usd"] == pytest.approx(6.0)
    assert "2,000,000 billed tokens" in result.findings[0].message
    cheap = job("openai", options={"max_cost_usd": 7}, estimate=estimate,
                result={"trained_tokens": 2_000_000})
    assert kinds(cheap, after_s=10) == []


def test_openai_cost_without_billed_tokens_pro_rates_the_estimate() -> None:
    estimate = {"cost": {"cost_usd": 10.0, "usd_per_million": 3.0}}
    row = job("openai", options={"max_cost_usd": 12}, estimate=estimate)
    assert kinds(row, after_s=10, fraction=1.0) == []
    assert kinds(row, after_s=10, fraction=1.3) == [RunawayKind.COST_CAP]  # ran past its plan
    result = check(row, now=START, fraction=None, policy=policy_for(row.options,
                                                                    RunawayDefaults()))
    assert result.findings == [] and result.unchecked == []  # too early to say anything


def test_a_job_approved_above_the_server_cap_is_held_to_its_estimate() -> None:
    estimate = {"cost": {"cost_usd": 50.0, "usd_per_million": 3.0}}
    row = job("openai", estimate=estimate)
    defaults = RunawayDefaults(max_cost_usd=20)
    assert kinds(row, after_s=10, fraction=0.9, defaults=defaults) == []  # $45 < approved $50
    assert kinds(row, after_s=10, fraction=1.2, defaults=defaults) == [RunawayKind.COST_CAP]


def test_local_cost_needs_a_gpu_hour_price_and_says_so_without_one() -> None:
    row = job(options={"max_cost_usd": 10},
              estimate={"gpu_time": {"wall_hours": 100, "gpu_hours": 200, "gpus": 2}})
    unpriced = check(row, now=START + timedelta(hours=50), fraction=None,
                     policy=policy_for(row.options, RunawayDefaults()))
    assert unpriced.findings == []
    assert "TUNEBRIDGE_LOCAL_GPU_HOUR_USD" in unpriced.unchecked[0]
    priced = RunawayDefaults(gpu_hour_usd=2.0)
    assert kinds(row, after_s=2.4 * 3600, defaults=priced) == []  # 4.8 GPU-h = $9.60
    assert kinds(row, after_s=2.6 * 3600, defaults=priced) == [RunawayKind.COST_CAP]


def test_auto_cancel_comes_from_the_job_or_the_server() -> None:
    assert policy_for({}, RunawayDefaults()).auto_cancel is False
    assert policy_for({}, RunawayDefaults(auto_cancel=True)).auto_cancel is True
    assert policy_for({"auto_cancel_runaway": False},
                      RunawayDefaults(auto_cancel=True)).auto_cancel is False


def test_unusable_options_are_problems_users_can_fix() -> None:
    problems = option_problems({"max_runtime_s": -5, "max_cost_usd": "lots",
                                "auto_cancel_runaway": "yes"})
    assert sorted(p.field or "" for p in problems) == [
        "options.auto_cancel_runaway", "options.max_cost_usd", "options.max_runtime_s"]
    assert option_problems({"max_runtime_s": 3600, "auto_cancel_runaway": True}) == []
