"""`POST /webhooks/openai` on the live gateway: a genuine push polls that job at once; forged,
stale, unsigned or wrongly keyed pushes get 400 and change nothing; a redelivery is harmless."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from pydantic import SecretStr

from backends.openai import OpenAIBackend
from storage.repositories.events import JobEventRepository
from tests.api.openai_live import (
    OPENAI_KEY,
    WEBHOOK_SECRET,
    signed,
    start_job,
    submitted,
    wait_for,
    with_scheduler,
)
from tests.conftest import LiveApi
from tests.fakes.openai_server import FakeOpenAI
from tunebridge.jobs import get_job
from tunebridge.runtime import Runtime, build_runtime
from tunebridge.settings import Settings


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY, steps_per_epoch=3, default_epochs=2) as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_scheduler(settings, openai_webhook_secret=SecretStr(WEBHOOK_SECRET))


@pytest.fixture
def runtime(settings: Settings, fake: FakeOpenAI) -> Iterator[Runtime]:
    rt = build_runtime(settings, backends=[OpenAIBackend(OPENAI_KEY, fake.base_url)])
    yield rt
    rt.close()


def _event(external_id: str, kind: str = "fine_tuning.job.succeeded") -> bytes:
    return json.dumps({"id": "evt_1", "object": "event", "created_at": int(time.time()),
                       "type": kind, "data": {"id": external_id}}).encode()


def _snapshot(live: LiveApi, job_id: str) -> tuple[str, object, int]:
    job = get_job(db=live.runtime.db, job_id=job_id)
    with live.runtime.db.session() as session:
        events = len(JobEventRepository(session).page(job_id, after_id=None, limit=10_000))
    return job.status, job.updated_at, events


def _provider_reads(fake: FakeOpenAI, external_id: str) -> int:
    return len(fake.requests_to("GET", rf"/v1/fine_tuning/jobs/{external_id}(/events)?"))


def test_signed_push_polls_that_job_at_once(live: LiveApi, fake: FakeOpenAI,
                                            chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl)
        external = submitted(live, job_id)
        time.sleep(0.3)  # let the poll that followed the submit finish
        assert fake.run_to_end(external) == "succeeded"  # the provider moved on; we have not
        body = _event(external)
        headers = signed(body, webhook_id="wh_ok")
        openai.OpenAI(api_key="unused").webhooks.verify_signature(
            body, headers, secret=WEBHOOK_SECRET)  # the test signs as OpenAI does
        answer = httpx.post(f"{live.url}/webhooks/openai", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": True, "duplicate": False, "polled": external}
        db = live.runtime.db
        wait_for(lambda: get_job(db=db, job_id=job_id).status == "succeeded", timeout=5)
        job = http.get(f"/api/jobs/{job_id}").json()
        metrics = http.get(f"/api/jobs/{job_id}/metrics").json()["data"]
        before = _snapshot(live, job_id), _provider_reads(fake, external)
        again = httpx.post(f"{live.url}/webhooks/openai", content=body, headers=headers)
        time.sleep(0.3)
        after = _snapshot(live, job_id), _provider_reads(fake, external)
    assert job["result"]["fine_tuned_model"].startswith("ft:gpt-4o-mini")
    assert [m["step"] for m in metrics] == list(range(1, 7))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert after == before  # the redelivery neither polled nor stored anything


def test_bad_pushes_are_400_and_change_nothing(live: LiveApi, fake: FakeOpenAI,
                                               chat_jsonl: bytes) -> None:
    with live.client() as http:
        job_id = start_job(live, http, chat_jsonl)
        external = submitted(live, job_id)
        time.sleep(0.3)
        fake.run_to_end(external)  # a poll now WOULD change our row
        before = _snapshot(live, job_id), _provider_reads(fake, external)
    body = _event(external)
    now = int(time.time())
    genuine = signed(body)
    other_secret = "whsec_" + "c29tZW9uZS1lbHNlcy1zZWNyZXQ="
    attempts = {
        "forged body": (body.replace(b"succeeded", b"failed"), genuine),
        "stale": (body, signed(body, timestamp=now - 301 - 5)),
        "from the future": (body, signed(body, timestamp=now + 306)),
        "wrong secret": (body, signed(body, secret=other_secret)),
        "no signature": (body, {k: v for k, v in genuine.items() if k != "webhook-signature"}),
        "no id": (body, {k: v for k, v in genuine.items() if k != "webhook-id"}),
        "no timestamp": (body, {k: v for k, v in genuine.items() if k != "webhook-timestamp"}),
        "not v1": (body, {**genuine, "webhook-signature": genuine["webhook-signature"]
                          .replace("v1,", "v2,")}),
    }
    for name, (content, headers) in attempts.items():
        answer = httpx.post(f"{live.url}/webhooks/openai", content=content, headers=headers)
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"]["code"] == "invalid_webhook_signature", name
    time.sleep(0.5)  # a poll, had one been started, would have landed by now
    assert (_snapshot(live, job_id), _provider_reads(fake, external)) == before
    assert get_job(db=live.runtime.db, job_id=job_id).status == "queued"


def test_other_events_and_unknown_jobs_are_acknowledged(live: LiveApi, fake: FakeOpenAI) -> None:
    for webhook_id, body in (("wh_batch", _event("batch_abc", "batch.completed")),
                             ("wh_stranger", _event("ftjob-not-ours"))):
        answer = httpx.post(f"{live.url}/webhooks/openai", content=body,
                            headers=signed(body, webhook_id=webhook_id))
        assert answer.status_code == 200, answer.text
    assert fake.requests_to("GET", r"/v1/fine_tuning/jobs/.*") == []


def test_without_a_secret_the_endpoint_is_off(live: LiveApi) -> None:
    live.runtime.settings.openai_webhook_secret = None
    body = _event("ftjob-x")
    answer = httpx.post(f"{live.url}/webhooks/openai", content=body, headers=signed(body))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "webhooks_disabled"
    assert "TUNEBRIDGE_OPENAI_WEBHOOK_SECRET" in answer.json()["error"]["message"]
