"""`POST /slack/events`: Slack's HTTP mode (slash commands, interactivity, events).

Slack's signing scheme is checked here before bolt sees anything: a bad signature, a timestamp
older than 5 minutes, or a request already seen (a replay of a captured request within those 5
minutes, which the signature alone cannot catch) is answered 401. The bolt app is synchronous,
so dispatch runs in a worker thread and the event loop keeps serving the rest of the gateway.
The replay memory is per process: behind several replicas, route Slack to one, or accept that
a replay must then land on the same replica to be caught.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from fastapi import APIRouter, Request, Response
from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.concurrency import run_in_threadpool

MAX_AGE_S = 300
MAX_BODY_BYTES = 1 << 20  # Slack payloads are a few kB; a large body is not from Slack


class SignatureGuard:
    def __init__(self, signing_secret: str) -> None:
        self._verifier = SignatureVerifier(signing_secret)  # also refuses timestamps > 5 min off
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def refusal(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why this request must be refused, or None when it is Slack's, fresh and new."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return "missing signature"
        if not self._verifier.is_valid(body, timestamp, signature):
            return "invalid or expired signature"
        now = time.time()
        with self._lock:
            self._seen = {s: until for s, until in self._seen.items() if until > now}
            if signature in self._seen:
                return "replayed request"
            self._seen[signature] = now + MAX_AGE_S + 60
        return None


def slack_router(dispatch: Callable[[BoltRequest], BoltResponse],
                 guard: SignatureGuard) -> APIRouter:
    router = APIRouter(tags=["slack"])

    @router.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return Response(status_code=413, content="payload too large")
        body = await request.body()
        refusal = guard.refusal(body, request.headers)
        if refusal is not None:
            return Response(status_code=401, content=refusal, media_type="text/plain")
        bolt_response = await run_in_threadpool(dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return router
