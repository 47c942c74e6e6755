"""A fake OpenAI API on 127.0.0.1: real HTTP, so tests run the official SDK unchanged.

Plays `/v1/files`, `/v1/uploads` and `/v1/fine_tuning/jobs` (see `openai_jobs.py` for the
simulated account). It records every request, requires the Bearer key, can inject latency (to
model network round trips in the bench), and can be told to answer the next N requests with
429 + Retry-After, 5xx, or a dropped connection. Jobs move only when the test calls `advance`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from tests.fakes.gate import Gate
from tests.fakes.openai_http import Fault, RecordedRequest, Server, handler_for, multipart_fields
from tests.fakes.openai_jobs import OpenAIWorld
from tests.fakes.openai_world import ApiError

Route = tuple[str, "re.Pattern[str]", Callable[..., dict[str, Any]]]

__all__ = ["FakeOpenAI", "RecordedRequest"]


class FakeOpenAI:
    """Start with `with FakeOpenAI() as fake:`; point the SDK at `fake.base_url`."""

    def __init__(
        self,
        api_key: str = "sk-fake-test",
        *,
        latency_s: float = 0.0,
        steps_per_epoch: int = 4,
        default_epochs: int = 3,
    ) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.world = OpenAIWorld(steps_per_epoch=steps_per_epoch, default_epochs=default_epochs)
        self.requests: list[RecordedRequest] = []
        self.record = True
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str, re.Pattern[str], Callable[[], object]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.request_count = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes = self._routes()

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        self._server = Server(("127.0.0.1", 0), handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # ----- what tests steer and inspect --------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        status: int = 429,
        *,
        retry_after: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` (path is a /v1/... prefix)."""
        with self._lock:
            self.faults.extend(Fault(status, retry_after, method, path) for _ in range(count))

    def drop_next(
        self,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        processed: bool = False,
    ) -> None:
        """Close the connection without answering (after handling it, if `processed`)."""
        with self._lock:
            self.faults.extend(Fault(None, None, method, path, processed) for _ in range(count))

    def after_next(self, method: str, path_pattern: str, action: Callable[[], object]) -> None:
        """Run `action` once, after the next matching request is handled but before it is
        answered: the world changes between two requests of one client operation."""
        with self._lock:
            self.hooks.append((method, re.compile(path_pattern), action))

    def hold_next(self, method: str, path_pattern: str) -> Gate:
        """Handle the next matching request, then hold its answer until the test opens the
        returned gate (a provider that acted but has not answered yet)."""
        gate = Gate()
        self.after_next(method, path_pattern, gate.block)
        return gate

    def run_hooks(self, request: RecordedRequest) -> None:
        with self._lock:
            due = [h for h in self.hooks if h[0] == request.method and h[1].fullmatch(request.path)]
            self.hooks = [h for h in self.hooks if h not in due]
        for _, _, action in due:
            action()

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        pattern = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0
            self.request_count = 0

    def advance(self, job_id: str, ticks: int = 1) -> str:
        return self.world.advance(job_id, ticks)

    def run_to_end(self, job_id: str) -> str:
        return self.world.run_to_end(job_id)

    # ----- request handling (called from server threads) ------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.matches(method, path):
                    return self.faults.pop(index)
        return None

    def enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.request_count += 1
            if self.record:
                self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def dispatch(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        """Route one authenticated request; ApiError becomes OpenAI's error body."""
        try:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
            for method, pattern, handler in self.routes:
                match = pattern.fullmatch(request.path)
                if match and method == request.method:
                    return 200, handler(request, *match.groups())
            raise ApiError(404, f"Unknown route {request.method} {request.path}")
        except ApiError as error:
            return error.status, error.body

    def _routes(self) -> list[Route]:
        w = self.world
        job = r"/v1/fine_tuning/jobs/([\w-]+)"
        return [
            ("POST", re.compile(r"/v1/files"), self._create_file),
            ("GET", re.compile(r"/v1/files"), lambda r: w.list_files(r.query)),
            ("GET", re.compile(r"/v1/files/([\w-]+)"), lambda r, i: w.get_file(i)),
            ("POST", re.compile(r"/v1/uploads"), lambda r: w.create_upload(r.json())),
            ("POST", re.compile(r"/v1/uploads/(\w+)/parts"), self._add_part),
            ("POST", re.compile(r"/v1/uploads/(\w+)/complete"),
             lambda r, i: w.complete_upload(i, r.json())),
            ("POST", re.compile(r"/v1/fine_tuning/jobs"), lambda r: w.create_job(r.json())),
            ("GET", re.compile(r"/v1/fine_tuning/jobs"), lambda r: w.list_jobs(r.query)),
            ("GET", re.compile(job), lambda r, i: w.get_job(i)),
            ("POST", re.compile(job + "/cancel"), lambda r, i: w.cancel_job(i)),
            ("POST", re.compile(job + "/pause"), lambda r, i: w.pause_job(i)),
            ("POST", re.compile(job + "/resume"), lambda r, i: w.resume_job(i)),
            ("GET", re.compile(job + "/events"), lambda r, i: w.list_events(i, r.query)),
            ("GET", re.compile(job + "/checkpoints"), lambda r, i: w.list_checkpoints(i, r.query)),
        ]  # fmt: skip

    def _create_file(self, request: RecordedRequest) -> dict[str, Any]:
        fields = multipart_fields(request.headers.get("content-type", ""), request.body)
        if "file" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        filename, content = fields["file"]
        purpose = fields.get("purpose", (None, b""))[1].decode()
        return self.world.create_file(filename or "upload", content, purpose)

    def _add_part(self, request: RecordedRequest, upload_id: str) -> dict[str, Any]:
        fields = multipart_fields(request.headers.get("content-type", ""), request.body)
        if "data" not in fields:
            raise ApiError(400, "Missing required parameter: 'data'.", param="data")
        return self.world.add_part(upload_id, fields["data"][1])
