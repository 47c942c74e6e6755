"""A fake Slack Web API on 127.0.0.1: real HTTP, so tests drive the real `slack_sdk` and bolt.

Plays the methods tunebridge calls (chat.postMessage/update/postEphemeral, views.open/update,
files.info and the `url_private` download, the three steps of files_upload_v2,
usergroups.users.list, conversations.history/replies with metadata, auth.test), plus the
`response_url` webhooks bolt's `respond()` posts to. Every call is recorded with its arguments
(query, form and JSON bodies merged). It can be told to answer the next calls of a method with
429 + Retry-After, or 5xx — optionally after doing the work, the "did it post?" case.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.gate import Gate
from tests.fakes.slack_world import SlackError, SlackWorld

BOT_TOKEN = "xoxb-fake-test-token"


@dataclass(frozen=True)
class Call:
    method: str  # an API method name, or "response_url", "download", "upload"
    args: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class Fault:
    method: str
    status: int
    retry_after: int | None = None
    processed: bool = False  # do the work, then answer with the error anyway


class FakeSlack:
    """`with FakeSlack() as slack:` then `WebClient(base_url=slack.api_url, token=BOT_TOKEN)`."""

    def __init__(self, bot_token: str = BOT_TOKEN) -> None:
        self.world = SlackWorld(bot_token=bot_token)
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.latency_s = 0.0
        self.down = False  # drop every connection unanswered, like an unreachable Slack
        self.holds: dict[str, Gate] = {}  # method -> gate for its next call (see hold_next)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.world.base = self.base
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.base}/response/{name}"

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- assertions and fault injection ------------------------------------------------
    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
             processed: bool = False) -> None:
        with self._lock:
            self.faults.extend(Fault(method, status, retry_after, processed) for _ in range(times))

    def hold_next(self, method: str) -> Gate:
        """Do the next call of `method` (e.g. post the message), then hold the answer until
        the test opens the returned gate."""
        gate = Gate()
        with self._lock:
            self.holds[method] = gate
        return gate

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """Bolt's lazy listeners answer after the ack: wait until they have called."""
        deadline = time.monotonic() + timeout
        while len(found := self.calls_to(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {method} call(s), got {len(found)}")
            time.sleep(0.02)
        return found

    def _record(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.calls.append(Call(method, args, headers, time.monotonic()))

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.method == method:
                    return self.faults.pop(index)
        return None

    # --- dispatch ----------------------------------------------------------------------
    def api(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        handler = self._methods().get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        fault = self._take_fault(method)
        if fault is not None and not fault.processed:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return fault.status, {"ok": False, "error": "ratelimited"}, headers
        try:
            body = {"ok": True, **handler(args)}
        except SlackError as exc:
            body = {"ok": False, "error": exc.code}
        if fault is not None:
            return fault.status, {"ok": False, "error": "internal_error"}, {}
        with self._lock:
            gate = self.holds.pop(method, None)
        if gate is not None:
            gate.block()
        return 200, body, {}

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        world = self.world
        return {
            "auth.test": lambda _: {"user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1",
                                    "team": "test", "url": "https://test.slack.com/"},
            "chat.postMessage": world.post_message,
            "chat.update": world.update_message,
            "chat.postEphemeral": lambda _: {"message_ts": "1700000000.999999"},
            "views.open": lambda a: {"view": {"id": "V1", "hash": "h1", **_view(a)}},
            "views.update": lambda a: {"view": {"id": a.get("view_id"), "hash": "h2", **_view(a)}},
            "files.info": world.file_info,
            "files.getUploadURLExternal": world.get_upload_url,
            "files.completeUploadExternal": world.complete_upload,
            "usergroups.users.list": world.usergroup_users,
            "conversations.history": world.history,
            "conversations.replies": world.replies,
        }


def _view(args: dict[str, Any]) -> dict[str, Any]:
    view = args.get("view")
    return json.loads(view) if isinstance(view, str) else dict(view or {})


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

        def _route(self) -> None:
            if fake.down:
                self.close_connection = True
                return
            if fake.latency_s:
                time.sleep(fake.latency_s)
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            if parts.path.startswith("/api/"):
                self._api(parts.path[5:], _args(parts.query, raw, headers), headers)
            elif parts.path.startswith("/response/"):
                fake._record("response_url", json.loads(raw or b"{}"), headers)
                self._send(200, b"ok", "text/plain")
            elif parts.path.startswith("/files-pri/"):
                self._download(parts.path, headers)
            elif parts.path.startswith("/upload/v1/"):
                fake.world.uploads[parts.path.rsplit("/", 1)[1]] = raw
                fake._record("upload", {"bytes": len(raw)}, headers)
                self._send(200, f"OK - {len(raw)}".encode(), "text/plain")
            elif parts.path.startswith("/public/"):
                content = fake.world.public.get(parts.path[8:])
                fake._record("public", {"path": parts.path}, headers)
                self._send(200 if content is not None else 404, content or b"", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        def _api(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> None:
            fake._record(method, args, headers)
            if headers.get("authorization") != f"Bearer {fake.world.bot_token}":
                status, body, extra = 200, {"ok": False, "error": "not_authed"}, {}
            else:
                status, body, extra = fake.api(method, args)
            self._send(status, json.dumps(body).encode(), "application/json", extra)

        def _download(self, path: str, headers: dict[str, str]) -> None:
            fake._record("download", {"path": path}, headers)
            file_id = path.split("/")[2].split("-", 1)[1]
            stored = fake.world.files.get(file_id)
            if headers.get("authorization") != f"Bearer {fake.world.bot_token}":
                self._send(403, b"login required", "text/html")
            elif stored is None:
                self._send(404, b"", "text/plain")
            else:
                self._send(200, stored.content, "application/octet-stream")

        def _send(self, status: int, body: bytes, content_type: str,
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _args(query: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(query))
    if raw and headers.get("content-type", "").startswith("application/json"):
        args.update(json.loads(raw))
    elif raw:
        args.update(parse_qsl(raw.decode()))
    return args
