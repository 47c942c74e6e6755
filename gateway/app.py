"""The FastAPI app factory: tests and `serve` build their own app from their own Settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI

from gateway import errors
from gateway.idempotency import IdempotencyMiddleware
from gateway.routers import datasets, health, health_analysis, jobs, openai_compat, summaries
from gateway.routers.webhooks import router as webhooks_router
from gateway.telemetry import Telemetry, TelemetryMiddleware
from storage.repositories.jobs import JobRepository
from tunebridge.runtime import Runtime, attach_scheduler, build_runtime
from tunebridge.settings import Settings

log = logging.getLogger(__name__)


class SlackAttachment(Protocol):
    """What the Slack side adds to the app's lifetime (Socket Mode connection, caches)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else Settings())
    runtime = runtime or build_runtime(settings)
    slack: SlackAttachment | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if slack is not None:
            await slack.start()  # never raises for an unreachable Slack: the outbox waits
        if settings.scheduler_enabled:
            attach_scheduler(runtime).start()
            log.info("scheduler started", extra={"backends": runtime.registry.names()})
        try:
            yield
        finally:
            if slack is not None:
                await slack.stop()
            runtime.close()

    app = FastAPI(title="tunebridge", version="0.1.0", lifespan=lifespan,
                  description="REST gateway for managed fine-tuning.")
    app.state.runtime = runtime
    if settings.slack_enabled:
        from bot.integration import attach as attach_slack

        slack = attach_slack(app, runtime)  # routes /slack/events, swaps in the Slack notifier
    telemetry = Telemetry()
    telemetry.watch_jobs(lambda: _job_counts(runtime))
    app.state.telemetry = telemetry
    errors.install(app)
    for router in (health.router, datasets.router, jobs.router, health_analysis.router,
                   openai_compat.router, summaries.router):
        app.include_router(router)
    app.include_router(webhooks_router)  # POST /webhooks/openai (signed; off without a secret)
    app.add_middleware(IdempotencyMiddleware, db=runtime.db, clock=runtime.clock,
                       ttl_s=settings.idempotency_ttl_s,
                       lease_s=settings.idempotency_claim_lease_s,
                       max_body_bytes=settings.max_upload_bytes + (1 << 20))
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    return app


def _job_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.session() as session:
        return JobRepository(session).count_by_status()
