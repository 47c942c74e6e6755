"""Prometheus metrics, one registry per app so several apps (tests, replicas) never collide."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JobStatusCollector(Collector):
    """Jobs per status, read at scrape time so every replica reports the same truth."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("tunebridge_jobs", "Jobs by status", labels=["status"])
        try:
            counts = self._counts()
        except Exception:  # a scrape must not fail because the database blinked
            counts = {}
        for status, count in sorted(counts.items()):
            family.add_metric([status], count)
        yield family


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tunebridge_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("tunebridge_http_request_seconds", "HTTP latency",
                                 ["method", "route"], registry=self.registry)

    def watch_jobs(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(JobStatusCollector(counts))


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.telemetry.requests.labels(method, path, str(status)).inc()
            self.telemetry.latency.labels(method, path).observe(time.perf_counter() - started)
