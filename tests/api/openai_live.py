"""Shared by the tests that run the gateway *with its scheduler* against the fake OpenAI server.

These tests run everything on uvicorn's event loop, as `serve` does: the scheduler submits and
polls there, and pushes (webhooks) and pause/resume requests act there too. The poll interval
is long (60 s) so that any change seen within a few seconds was caused by the request under
test, or by an explicit `wake_poll`, never by the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import LiveApi
from tunebridge.jobs import get_job
from tunebridge.settings import Settings

OPENAI_KEY = "sk-fake-live"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"tunebridge-test-webhook-secret-32b").decode()
LONG_INTERVAL_S = 60.0


def with_scheduler(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"scheduler_enabled": True,
                                       "poll_interval_s": LONG_INTERVAL_S, **changes})


def wait_for(check: Callable[[], bool], *, timeout: float = 10.0,
             wake: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        if wake is not None:
            wake()
        time.sleep(0.05)


def start_job(live: LiveApi, http: httpx.Client, dataset: bytes, backend: str = "openai") -> str:
    dataset_id = http.post("/api/datasets", content=dataset).json()["id"]
    model = "gpt-4o-mini-2024-07-18" if backend == "openai" else "tiny"
    created = http.post("/api/jobs", json={"training_dataset_id": dataset_id, "backend": backend,
                                           "base_model": model, "hyperparameters": {"n_epochs": 2}})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def submitted(live: LiveApi, job_id: str) -> str:
    """Wake the scheduler until the job is at the provider; its provider id."""
    db = live.runtime.db
    wait_for(lambda: get_job(db=db, job_id=job_id).external_id is not None,
             wake=live.runtime.wake_poll)
    external = get_job(db=db, job_id=job_id).external_id
    assert external is not None
    return external


def reach(live: LiveApi, job_id: str, status: str) -> None:
    """Wake the scheduler until our row says `status`."""
    db = live.runtime.db
    wait_for(lambda: get_job(db=db, job_id=job_id).status == status, wake=live.runtime.wake_poll)


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, webhook_id: str = "wh_1",
           timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers, computed here from the scheme (not by the code under test)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return {"webhook-id": webhook_id, "webhook-timestamp": ts,
            "webhook-signature": f"v1,bm90LXRoaXMtb25l {signature}",  # a rotated-out key first
            "content-type": "application/json"}
