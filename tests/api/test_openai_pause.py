"""Pause and resume over HTTP (`/api` and the SDK on `/v1`) against the fake OpenAI server: the
provider holds the job (no training while paused), our row follows, every attempt is audited,
and backends that cannot pause answer 409."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from backends.openai import OpenAIBackend
from storage.repositories.audit import AuditRepository
from tests.api.openai_live import OPENAI_KEY, reach, start_job, submitted, with_scheduler
from tests.conftest import LiveApi
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripted_backend import ScriptedBackend
from tunebridge.cli import app as cli_app
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY, steps_per_epoch=5, default_epochs=2) as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_scheduler(settings, poll_interval_s=0.3)  # polls race the requests, as in life


@pytest.fixture
def scripted(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path / "provider", step_seconds=5.0, steps=10)


@pytest.fixture
def runtime(settings: Settings, fake: FakeOpenAI, scripted: ScriptedBackend) -> Iterator[Runtime]:
    backend = OpenAIBackend(OPENAI_KEY, fake.base_url, status_max_age_s=0.0)
    rt = build_runtime(settings, backends=[backend, scripted])
    yield rt
    rt.close()


def _audit(live: LiveApi, job_id: str) -> list[tuple[str, object]]:
    with live.runtime.db.session() as session:
        rows = AuditRepository(session).for_job(job_id)
    return [(r.action, (r.detail or {}).get("outcome")) for r in rows]


def test_pause_holds_the_provider_job_and_resume_continues(
        live: LiveApi, fake: FakeOpenAI, chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl)
        early = http.post(f"/api/jobs/{job_id}/pause")  # queued: nothing to hold yet
        external = submitted(live, job_id)
        fake.advance(external, 3)  # running, one step trained
        reach(live, job_id, "running")
        paused = http.post(f"/api/jobs/{job_id}/pause")
        again = http.post(f"/api/jobs/{job_id}/pause")
        fake.advance(external, 4)  # the provider's clock runs; a paused job does not train
        time.sleep(1.0)  # a few polls, which keep it paused
        still = http.get(f"/api/jobs/{job_id}").json()["status"]
        steps_while_paused = fake.world.jobs[external].step
        resumed = http.post(f"/api/jobs/{job_id}/resume")
        fake.run_to_end(external)
        reach(live, job_id, "succeeded")
        events = http.get(f"/api/jobs/{job_id}/events").json()["data"]
    assert early.status_code == 409 and early.json()["error"]["code"] == "illegal_transition"
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert again.status_code == 409
    assert steps_while_paused == 1 and still == "paused"
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    statuses = [e["to_status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "paused", "running", "succeeded"]
    assert _audit(live, job_id) == [("pause", "refused"), ("pause", "paused"),
                                    ("pause", "refused"), ("resume", "running")]
    pauses = fake.requests_to("POST", rf"/v1/fine_tuning/jobs/{external}/pause")
    assert len(pauses) == 1  # refusals never reached the provider


def test_sdk_pauses_and_resumes_through_v1(live: LiveApi, fake: FakeOpenAI,
                                           chat_jsonl: bytes) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.admin_key, max_retries=0)
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl)
    external = submitted(live, job_id)
    fake.advance(external, 2)
    reach(live, job_id, "running")
    assert client.fine_tuning.jobs.pause(job_id).status == "paused"
    assert fake.world.jobs[external].obj["status"] == "paused"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.pause(job_id)
    assert client.fine_tuning.jobs.resume(job_id).status == "running"
    assert fake.world.jobs[external].obj["status"] == "running"


def test_backends_that_cannot_pause_answer_409(live: LiveApi, chat_jsonl: bytes) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.admin_key, max_retries=0)
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl, backend="scripted")
        reach(live, job_id, "running")
        refused = http.post(f"/api/jobs/{job_id}/pause")
        unknown = http.post("/api/jobs/job_missing/pause")
        reader = live.client(live.key("read"))
        forbidden = reader.post(f"/api/jobs/{job_id}/pause")
        reader.close()
        status = http.get(f"/api/jobs/{job_id}").json()["status"]
    with pytest.raises(openai.ConflictError) as sdk_refused:
        client.fine_tuning.jobs.resume(job_id)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "pause_unsupported"
    assert "'scripted' cannot pause" in error["message"]
    assert sdk_refused.value.code == "resume_unsupported"
    assert unknown.status_code == 404 and forbidden.status_code == 403
    assert status == "running"
    assert _audit(live, job_id) == [("pause", "refused"), ("resume", "refused")]


def test_cli_pause_and_resume(live: LiveApi, fake: FakeOpenAI, chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl)
    external = submitted(live, job_id)
    fake.advance(external, 2)
    reach(live, job_id, "running")
    runner = CliRunner()
    options = ["--api-url", live.url, "--api-key", live.admin_key]
    paused = runner.invoke(cli_app, ["jobs", "pause", job_id, *options])
    resumed = runner.invoke(cli_app, ["jobs", "resume", job_id, *options])
    refused = runner.invoke(cli_app, ["jobs", "resume", job_id, *options])
    assert paused.exit_code == 0 and paused.output.strip() == f"{job_id} paused"
    assert resumed.exit_code == 0 and resumed.output.strip() == f"{job_id} running"
    assert refused.exit_code != 0
