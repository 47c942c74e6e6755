"""Runaway jobs end to end: the scripted provider keeps a job running while the gateway's clock
(a controllable one) moves past the job's limits. Each kind is flagged once in the job's events
over HTTP and posted once mentioning on-call; it is cancelled only when its policy says so, and
that cancel is audited as the policy's."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.repositories.audit import AuditRepository
from storage.repositories.jobs import JobRepository
from storage.repositories.outbox import OutboxRepository
from tests.conftest import LiveApi, tick
from tests.fakes.manual_clock import ManualClock
from tests.fakes.scripted_backend import ScriptedBackend
from tunebridge.console_notifier import ConsoleNotifier
from tunebridge.jobs import get_job
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings

ONCALL = "S0ONCALL"




@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def runtime(settings: Settings, scripted: ScriptedBackend, clock: ManualClock,
            console: io.StringIO, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    overrides = getattr(request, "param", {})
    settings = settings.model_copy(update={  # the scripted jobs' estimates are seconds long
        "slack_oncall_usergroup": ONCALL, "runaway_overrun_factor": None, **overrides})
    journal = settings.data_dir / "console-notifications.jsonl"
    rt = build_runtime(settings, backends=[scripted], clock=clock,
                       notifier=ConsoleNotifier(journal, console, oncall_group=ONCALL))
    yield rt
    rt.close()


def _start(http: httpx.Client, data: bytes, **options: Any) -> str:
    dataset_id = http.post("/api/datasets", content=data).json()["id"]
    body = {"training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "options": {"scripted_step_seconds": 0.01, "scripted_steps": 1_000_000,
                        **options}}
    response = http.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _later(runtime: Runtime, clock: ManualClock, seconds: float) -> None:
    """Move the gateway's clock, then run one scheduler round (poll, then outbox)."""
    clock.advance(seconds)
    tick(runtime)


def _running(runtime: Runtime, clock: ManualClock, job_id: str) -> None:
    for _ in range(100):
        _later(runtime, clock, 1)
        if get_job(db=runtime.db, job_id=job_id).status == "running":
            return
    raise AssertionError("the job never started")


def _runaway_events(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    return [e for e in events if e["kind"] == "runaway"]


def _outbox_kinds(runtime: Runtime, job_id: str) -> list[str]:
    with runtime.db.session() as session:
        return [n.kind for n in OutboxRepository(session).for_job(job_id)]


def test_past_its_time_budget_a_job_is_flagged_once_and_left_running(
        live: LiveApi, clock: ManualClock, console: io.StringIO, chat_jsonl: bytes) -> None:
    runtime = live.runtime
    with live.client() as http:
        job_id = _start(http, chat_jsonl, max_runtime_s=600)
        _running(runtime, clock, job_id)
        _later(runtime, clock, 500)
        assert _runaway_events(http, job_id) == []
        for _ in range(4):
            _later(runtime, clock, 100)
        flagged = _runaway_events(http, job_id)
    assert [e["data"]["kind"] for e in flagged] == ["time_budget"]
    assert flagged[0]["data"]["budget_s"] == 600 and flagged[0]["data"]["mention_oncall"]
    assert "past its time budget of 10m 00s" in flagged[0]["message"]
    assert _outbox_kinds(runtime, job_id).count("runaway") == 1
    posted = [line for line in console.getvalue().splitlines() if "Runaway job" in line]
    assert len(posted) == 1 and f"@{ONCALL} Runaway job {job_id} (time_budget)" in posted[0]
    assert get_job(db=runtime.db, job_id=job_id).status == "running"
    with runtime.db.session() as session:
        assert AuditRepository(session).for_job(job_id) == []


def test_the_job_policy_cancels_a_runaway_and_the_audit_names_the_policy(
        live: LiveApi, clock: ManualClock, chat_jsonl: bytes) -> None:
    runtime = live.runtime
    with live.client() as http:
        job_id = _start(http, chat_jsonl, max_runtime_s=60, auto_cancel_runaway=True)
        _running(runtime, clock, job_id)
        _later(runtime, clock, 61)
        assert get_job(db=runtime.db, job_id=job_id).status == "cancelling"
        for _ in range(20):
            _later(runtime, clock, 1)
            if get_job(db=runtime.db, job_id=job_id).status == "cancelled":
                break
        assert get_job(db=runtime.db, job_id=job_id).status == "cancelled"
        events = http.get(f"/api/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    reasons = [e["message"] for e in events if e.get("to_status") == "cancelling"]
    assert len(reasons) == 1 and "runaway (time_budget), cancelled by policy" in reasons[0]
    with runtime.db.session() as session:
        audit = AuditRepository(session).for_job(job_id)
    assert [(a.actor, a.source, a.action) for a in audit] == [("tunebridge", "policy", "cancel")]
    assert audit[0].detail["runaway"] == "time_budget"
    assert _outbox_kinds(runtime, job_id).count("runaway") == 1


@pytest.mark.parametrize("runtime", [{"max_runtime_s": 30.0, "auto_cancel_runaway": True}],
                         indirect=True)
def test_server_defaults_apply_unless_the_job_opts_out(
        live: LiveApi, clock: ManualClock, chat_jsonl: bytes) -> None:
    runtime = live.runtime
    with live.client() as http:
        default = _start(http, chat_jsonl)
        opted_out = _start(http, chat_jsonl, auto_cancel_runaway=False)
        _running(runtime, clock, default)
        _running(runtime, clock, opted_out)
        _later(runtime, clock, 31)
        assert [e["data"]["kind"] for e in _runaway_events(http, opted_out)] == ["time_budget"]
    assert get_job(db=runtime.db, job_id=default).status == "cancelling"
    assert get_job(db=runtime.db, job_id=opted_out).status == "running"


@pytest.mark.parametrize("runtime", [{"local_gpu_hour_usd": 36.0, "runaway_overrun_factor": 3.0,
                                      "runaway_overrun_min_s": 0.0}], indirect=True)
def test_overrun_and_device_cost_are_each_flagged_once(
        live: LiveApi, clock: ManualClock, chat_jsonl: bytes, tmp_path: Path) -> None:
    runtime = live.runtime
    with live.client() as http:
        job_id = _start(http, chat_jsonl, max_cost_usd=2.0)
        with runtime.db.session() as session:  # as the assessment writes it: 100 s expected
            row = JobRepository(session).get(job_id, for_update=True)
            assert row is not None
            row.estimate = {"cost": None, "gpu_time": {"wall_hours": 100 / 3600, "gpus": 1,
                                                       "gpu_hours": 100 / 3600}}
            session.add(row)
        _running(runtime, clock, job_id)
        _later(runtime, clock, 150)  # 1.5x the estimate, $1.50 at $0.01/s
        assert _runaway_events(http, job_id) == []
        _later(runtime, clock, 60)  # $2.10 > $2 cap
        assert [e["data"]["kind"] for e in _runaway_events(http, job_id)] == ["cost_cap"]
        for _ in range(3):
            _later(runtime, clock, 40)  # past 3x the estimate
        flagged = _runaway_events(http, job_id)
    assert [e["data"]["kind"] for e in flagged] == ["cost_cap", "overrun"]
    assert "GPU-hours at $36.00" in flagged[0]["message"]
    assert flagged[1]["data"]["factor"] == 3.0
    assert _outbox_kinds(runtime, job_id).count("runaway") == 2


def test_unusable_runaway_options_are_refused_at_creation(live: LiveApi,
                                                          chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        response = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "options": {"max_runtime_s": 0, "auto_cancel_runaway": "yes"}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_options"
    assert sorted(p["field"] for p in error["problems"]) == [
        "options.auto_cancel_runaway", "options.max_runtime_s"]
