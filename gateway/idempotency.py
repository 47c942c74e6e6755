"""Idempotency-Key for every POST, as ASGI middleware so uploads still stream.

The body is hashed as it flows to the route (never buffered). The key is scoped to the caller's
credential; a replay returns the stored response byte for byte.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response
from storage.database import Database, DatabaseUnavailable
from tunebridge import idempotency
from tunebridge.clock import Clock
from tunebridge.errors import PayloadTooLarge, TunebridgeError, Unavailable
from tunebridge.idempotency import Reservation, StoredResponse

log = logging.getLogger(__name__)

# Answers a retry could change: don't pin them to the key.
_NOT_STORED = {401, 403, 408, 429}


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, db: Database, clock: Clock, ttl_s: int, lease_s: int,
                 max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.db = db
        self.clock = clock
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        # Releases and completions the database refused during an outage, retried before the
        # next claim: otherwise a blip would leave the key "in progress" until its TTL.
        self._unsettled: list[Callable[[], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        credential = hashlib.sha256(headers.get("authorization", "").encode()).hexdigest()[:32]
        try:
            request_hash, receive = await self._hash_body(scope, receive)
            await run_in_threadpool(self._settle_deferred)
            claim = await run_in_threadpool(
                lambda: idempotency.reserve(
                    db=self.db, clock=self.clock, scope=credential, key=key,
                    request_hash=request_hash, ttl_s=self.ttl_s, lease_s=self.lease_s))
        except TunebridgeError as exc:
            await error_response(exc)(scope, receive, send)
            return
        except DatabaseUnavailable:
            await error_response(Unavailable())(scope, receive, send)
            return
        if isinstance(claim, StoredResponse):
            await self._replay(claim, send)
            return
        await self._run_and_store(scope, receive, send, claim)

    async def _hash_body(self, scope: Scope, receive: Receive) -> tuple[str, Receive]:
        """Hash method, path, query and body before the route runs. The body is spooled to a
        temp file (memory stays bounded for multi-GB uploads) and replayed to the route."""
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (lives on)
        query = scope.get("query_string", b"").decode()
        digest = hashlib.sha256(f"{scope['method']} {scope['path']}?{query}".encode())
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                spool.close()
                raise PayloadTooLarge(self.max_body_bytes)
            digest.update(chunk)
            spool.write(chunk)
            if not message.get("more_body", False):
                break
        spool.seek(0)
        exhausted = False

        async def replay_receive() -> Message:
            nonlocal exhausted
            if exhausted:
                return await receive()  # after the body: disconnect notices come from upstream
            chunk = spool.read(1 << 20)
            more = spool.tell() < size
            if not more:
                exhausted = True
                spool.close()
            return {"type": "http.request", "body": chunk, "more_body": more}

        return digest.hexdigest(), replay_receive

    async def _replay(self, stored: StoredResponse, send: Send) -> None:
        headers = [(k.encode(), str(v).encode()) for k, v in stored.headers.items()]
        headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": stored.status_code,
                    "headers": headers})
        await send({"type": "http.response.body", "body": stored.body.encode()})

    async def _run_and_store(self, scope: Scope, receive: Receive, send: Send,
                             claim: Reservation) -> None:
        """Hold the (small, JSON) response until it is stored, so a client that retries the
        moment it reads the answer finds the stored copy, never an in-progress claim."""
        held: list[Message] = []
        finished = False

        async def storing_send(message: Message) -> None:
            nonlocal finished
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await self._settle(claim, held)
                finished = True
                for pending in held:
                    await send(pending)
                held.clear()

        try:
            await self.app(scope, receive, storing_send)
        finally:
            if not finished:
                await self._write(lambda: idempotency.release(db=self.db, reservation=claim))

    async def _write(self, action: Callable[[], None]) -> None:
        """Record a claim's outcome; while the database is down, keep it for later."""
        try:
            await run_in_threadpool(action)
        except DatabaseUnavailable:
            log.warning("database unavailable: idempotency outcome deferred")
            self._unsettled.append(action)

    def _settle_deferred(self) -> None:
        pending, self._unsettled = self._unsettled, []
        for index, action in enumerate(pending):
            try:
                action()
            except DatabaseUnavailable:
                self._unsettled = pending[index:] + self._unsettled
                raise

    async def _settle(self, claim: Reservation, messages: list[Message]) -> None:
        start = messages[0]
        status = int(start["status"])
        if status >= 500 or status in _NOT_STORED:
            await self._write(lambda: idempotency.release(db=self.db, reservation=claim))
            return
        headers = {k.decode(): v.decode() for k, v in start.get("headers", [])
                   if k.lower() in (b"content-type", b"location")}
        body = b"".join(m.get("body", b"") for m in messages[1:])
        stored = StoredResponse(status_code=status, body=body.decode(errors="replace"),
                                headers=headers)
        await self._write(
            lambda: idempotency.complete(db=self.db, reservation=claim, response=stored))
