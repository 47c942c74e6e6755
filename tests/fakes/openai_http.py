"""The HTTP half of the fake OpenAI server: request records, injected faults, the handler.

Stdlib only (`http.server`), so the fake adds no dependency. The handler parses a request,
records it, applies latency and faults, and asks the fake (anything that `Plays`) to answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Fault:
    """One injected failure: an HTTP status (with optional Retry-After) or a dropped connection.

    A drop with `processed=True` handles the request first and then loses the response: the
    case where a create succeeded at the provider but the client never heard of it.
    """

    status: int | None
    retry_after: str | None = None
    method: str | None = None
    path: str | None = None
    processed: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and (self.path is None or path.startswith(self.path))


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse multipart/form-data with the stdlib: field name → (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


class Plays(Protocol):
    """What the handler needs from the fake behind it."""

    latency_s: float

    def enter(self, request: RecordedRequest) -> None: ...

    def leave(self) -> None: ...

    def take_fault(self, method: str, path: str) -> Fault | None: ...

    def dispatch(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]: ...

    def run_hooks(self, request: RecordedRequest) -> None: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of a thousand concurrent polls must not be refused


def handler_for(fake: Plays) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API
        disable_nagle_algorithm = True  # headers and body go out in separate writes

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request stderr lines; tests inspect `fake.requests` instead."""

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            request = RecordedRequest(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            fake.enter(request)
            try:
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                fault = fake.take_fault(request.method, request.path)
                if fault is not None and fault.status is None:
                    if fault.processed:
                        fake.dispatch(request)
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None:
                    self._fault(fault)
                    return
                answer = fake.dispatch(request)
                fake.run_hooks(request)
                self._send(*answer)
            finally:
                fake.leave()

        def _fault(self, fault: Fault) -> None:
            assert fault.status is not None
            kind = "requests" if fault.status == 429 else "server_error"
            message = "Rate limit reached." if fault.status == 429 else "The server had an error."
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, body, extra)

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
