"""Composition root: builds the long-lived parts from Settings, once per process."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backends.base import Backend
from backends.registry import BackendRegistry
from storage import migration
from storage.blobs import BlobStore
from storage.database import Database
from tunebridge import completion_summary
from tunebridge.assessment import JobPolicy
from tunebridge.clock import Clock, SystemClock
from tunebridge.console_notifier import ConsoleNotifier
from tunebridge.datasets import ValidationLimits
from tunebridge.outbox import Notifier, OutboxSender
from tunebridge.poller import Poller, PollSettings
from tunebridge.runaway import RunawayDefaults
from tunebridge.scheduler import Scheduler
from tunebridge.settings import Settings

if TYPE_CHECKING:
    from backends.local.ray_executor import RayConfig


@dataclass
class Runtime:
    settings: Settings
    db: Database
    blobs: BlobStore
    registry: BackendRegistry
    notifier: Notifier
    clock: Clock
    poller: Poller
    sender: OutboxSender
    scheduler: Scheduler | None = field(default=None)

    @property
    def job_policy(self) -> JobPolicy:
        s = self.settings
        return JobPolicy(models_dir=s.data_dir / "models", local_device=s.local_device,
                         max_cost_usd=s.max_cost_usd, max_gpu_hours=s.max_gpu_hours,
                         max_reported=s.max_reported_errors,
                         validation_workers=s.validation_workers)

    @property
    def validation_limits(self) -> ValidationLimits:
        return ValidationLimits(max_reported=self.settings.max_reported_errors,
                                max_line_bytes=self.settings.max_line_bytes,
                                workers=self.settings.validation_workers)

    def wake_poll(self) -> None:
        """Poll now (after a create, cancel or approve) rather than at the next interval."""
        if self.scheduler is not None:
            self.scheduler.wake_poll()

    def use_notifier(self, notifier: Notifier) -> None:
        """Swap the destination (e.g. Slack once its app is built); queued rows are kept."""
        self.notifier = notifier
        self.sender.notifier = notifier

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown()
        self.db.dispose()


def default_backends(settings: Settings) -> list[Backend]:
    """The backends this settings object can run; each import is lazy so a gateway that only
    routes to OpenAI never imports the training stack."""
    backends: list[Backend] = []
    try:
        from backends.local import LocalBackend
    except ImportError:
        pass
    else:
        backends.append(LocalBackend(
            runs_dir=settings.runs_dir, models_dir=settings.data_dir / "models",
            torch_threads=settings.local_torch_threads, ray=ray_config(settings)))
    if settings.openai_api_key is not None:
        from backends.openai import OpenAIBackend

        backends.append(OpenAIBackend(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url))
    backends.extend(_plugin(spec, settings) for spec in settings.backend_plugins)
    return backends


def ray_config(settings: Settings) -> RayConfig | None:
    """Ray Jobs for the local trainer when TUNEBRIDGE_LOCAL_EXECUTOR=ray (docs/deploy.md)."""
    if settings.local_executor != "ray":
        return None
    if not settings.ray_address:
        raise ValueError("TUNEBRIDGE_LOCAL_EXECUTOR=ray needs TUNEBRIDGE_RAY_ADDRESS")
    from backends.local.ray_executor import RayConfig

    token = settings.ray_dashboard_token
    return RayConfig(address=settings.ray_address.rstrip("/"),
                     token=token.get_secret_value() if token else None,
                     stop_wait_s=settings.ray_job_stop_wait_s,
                     gpus_per_job=settings.ray_gpus_per_job)


def _plugin(spec: str, settings: Settings) -> Backend:
    module_name, _, attribute = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute or "build")
    backend: Backend = factory(settings)
    return backend


def runaway_defaults(settings: Settings) -> RunawayDefaults:
    return RunawayDefaults(
        time_budget_s=settings.max_runtime_s, max_cost_usd=settings.max_cost_usd,
        overrun_factor=settings.runaway_overrun_factor,
        overrun_min_s=settings.runaway_overrun_min_s,
        gpu_hour_usd=settings.local_gpu_hour_usd, auto_cancel=settings.auto_cancel_runaway)


def build_runtime(
    settings: Settings, *, backends: list[Backend] | None = None,
    notifier: Notifier | None = None, clock: Clock | None = None, migrate: bool = True,
) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    if migrate:
        migration.upgrade(db.engine)
    blobs = BlobStore(settings.blob_dir)
    blobs.clear_staging()
    clock = clock or SystemClock()
    registry = BackendRegistry(default_backends(settings) if backends is None else backends)
    notifier = notifier or ConsoleNotifier(
        settings.data_dir / "console-notifications.jsonl", chart_dir=settings.data_dir / "charts",
        chart=lambda job_id: completion_summary.chart_png(db=db, job_id=job_id),
        oncall_group=settings.slack_oncall_usergroup)
    poller = Poller(db=db, registry=registry, clock=clock,
                    settings=PollSettings(interval_s=settings.poll_interval_s,
                                          auto_stop=settings.auto_stop,
                                          runaway=runaway_defaults(settings)))
    sender = OutboxSender(db=db, notifier=notifier, clock=clock)
    return Runtime(settings=settings, db=db, blobs=blobs, registry=registry, notifier=notifier,
                   clock=clock, poller=poller, sender=sender)


def attach_scheduler(runtime: Runtime) -> Scheduler:
    runtime.scheduler = Scheduler(
        poller=runtime.poller, sender=runtime.sender,
        poll_interval_s=runtime.settings.poll_interval_s,
        outbox_interval_s=runtime.settings.outbox_interval_s)
    return runtime.scheduler
