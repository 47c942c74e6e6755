"""`POST /webhooks/openai`: OpenAI says a fine-tuning job changed; we poll that job at once.

The request is checked as Standard Webhooks (what OpenAI signs with) before anything else:
headers `webhook-id`, `webhook-timestamp` and `webhook-signature`, the latter holding
space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` entries, keyed with
`TUNEBRIDGE_OPENAI_WEBHOOK_SECRET` (the `whsec_<base64>` form the dashboard shows; any other
string is used as raw bytes, as the openai SDK's verifier does). Timestamps more than five
minutes off in either direction are refused. Every refusal is 400 and changes nothing.

Without a configured secret the endpoint answers 404 (`webhooks_disabled`): an unverifiable
push must never be able to trigger work, and OpenAI stops delivering to an endpoint that keeps
failing, which is the right outcome for a gateway that did not opt in.

A verified event is answered 200 before the poll runs (OpenAI wants a quick 2xx). A redelivered
`webhook-id` within the tolerance is acknowledged without a second poll; even without that
memory (per process) a replay is harmless, since the poll reads the job's state from OpenAI.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from gateway.dependencies import RuntimeDep
from tunebridge import provider_events
from tunebridge.runtime import Runtime

log = logging.getLogger(__name__)
TOLERANCE_S = 300
MAX_BODY_BYTES = 1 << 20  # OpenAI's events are a few hundred bytes
JOB_EVENT_PREFIX = "fine_tuning.job."

router = APIRouter(tags=["webhooks"])


class InvalidSignature(Exception):
    pass


def webhook_key(secret: str) -> bytes:
    """The HMAC key: `whsec_` + base64 (OpenAI's form), else the string's own bytes."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError("TUNEBRIDGE_OPENAI_WEBHOOK_SECRET is not whsec_ + base64") from exc


def verify(body: bytes, headers: Mapping[str, str], *, key: bytes, now: float) -> str:
    """Return the webhook id of a genuine, fresh delivery; raise InvalidSignature otherwise."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isdigit():
        raise InvalidSignature("webhook-timestamp is not a Unix time in seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise InvalidSignature("webhook-timestamp is more than 5 minutes off")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    offered = [p[3:].encode() for p in signatures.split() if p.startswith("v1,")]
    matches = [hmac.compare_digest(expected, candidate) for candidate in offered]  # no early exit
    if not any(matches):
        raise InvalidSignature("no webhook-signature entry matches")
    return webhook_id


class SeenIds:
    """Webhook ids acknowledged in the last `ttl_s` seconds (per process)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, webhook_id: str, now: float) -> bool:
        with self._lock:
            self._until = {k: until for k, until in self._until.items() if until > now}
            if webhook_id in self._until:
                return False
            self._until[webhook_id] = now + self._ttl_s
            return True


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "problems": [], "details": {}}}
    return JSONResponse(body, status_code=status)


def _seen_ids(request: Request) -> SeenIds:
    state = request.app.state
    if getattr(state, "openai_webhook_ids", None) is None:
        state.openai_webhook_ids = SeenIds(2 * TOLERANCE_S + 60)
    seen: SeenIds = state.openai_webhook_ids
    return seen


def _job_id(event: Any) -> str | None:
    """`data.id` of a `fine_tuning.job.*` event; None for any other event."""
    if not isinstance(event, dict) or not str(event.get("type", "")).startswith(JOB_EVENT_PREFIX):
        return None
    data = event.get("data")
    job_id = data.get("id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


async def _poll(runtime: Runtime, external_id: str) -> None:
    try:
        await provider_events.job_changed(db=runtime.db, poller=runtime.poller,
                                          backend="openai", external_id=external_id)
    except Exception:  # the regular poll will still catch up; never crash the server task
        log.exception("poll after webhook failed", extra={"external_id": external_id})


@router.post("/webhooks/openai")
async def openai_webhook(request: Request, runtime: RuntimeDep,
                         background: BackgroundTasks) -> JSONResponse:
    """Verify, acknowledge, then poll the named fine-tuning job right away."""
    secret = runtime.settings.openai_webhook_secret
    if secret is None:
        return _refuse(404, "webhooks_disabled", "OpenAI webhooks are not enabled here: set "
                       "TUNEBRIDGE_OPENAI_WEBHOOK_SECRET to the endpoint's signing secret.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _refuse(413, "payload_too_large", "A webhook body is at most 1 MiB.")
    try:
        key = webhook_key(secret.get_secret_value())
    except ValueError as exc:
        return _refuse(503, "webhooks_misconfigured", str(exc))
    body = await request.body()
    now = runtime.clock.now().timestamp()
    try:
        webhook_id = verify(body, request.headers, key=key, now=now)
    except InvalidSignature as exc:
        return _refuse(400, "invalid_webhook_signature", f"Webhook refused: {exc}.")
    try:
        event = json.loads(body)
    except ValueError:
        return _refuse(400, "invalid_webhook_body", "The webhook body is not JSON.")
    if not _seen_ids(request).first_time(webhook_id, now):
        return JSONResponse({"received": True, "duplicate": True})
    external_id = _job_id(event)
    if external_id is not None and "openai" in runtime.registry:
        background.add_task(_poll, runtime, external_id)
    return JSONResponse({"received": True, "duplicate": False, "polled": external_id})
