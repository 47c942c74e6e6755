"""The poll tick: submit queued jobs, forward cancels, and store what backends report.

Each job's outcome is committed in its own transaction, so a crash mid-tick loses at most the
poll in flight; the backend's cursor is stored with the data it covers, so nothing repeats. A
backend that can read many jobs' status at once (BatchPolling) does so once per tick.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from backends.base import (
    Backend,
    BackendError,
    BatchPolling,
    Handle,
    JobSpec,
    RemoteStatus,
    Update,
)
from backends.registry import BackendRegistry, UnknownBackend
from storage.database import Database
from storage.repositories.datasets import DatasetRepository
from storage.repositories.events import JobEventRepository
from storage.repositories.jobs import JobRepository
from storage.tables import Job, JobEvent
from tunebridge import completion_summary, health_watch, runaway_watch
from tunebridge.clock import Clock
from tunebridge.lifecycle import apply_transition, notify
from tunebridge.metrics_store import store_samples
from tunebridge.runaway import RunawayDefaults
from tunebridge.status import TRANSITIONS, JobStatus

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.CANCELLING)

REMOTE_TO_JOB = {
    RemoteStatus.QUEUED: JobStatus.QUEUED,
    RemoteStatus.RUNNING: JobStatus.RUNNING,
    RemoteStatus.PAUSED: JobStatus.PAUSED,
    RemoteStatus.SUCCEEDED: JobStatus.SUCCEEDED,
    RemoteStatus.FAILED: JobStatus.FAILED,
    RemoteStatus.CANCELLED: JobStatus.CANCELLED,
}


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 10.0
    concurrency: int = 32
    batch: int = 500
    max_backoff_s: float = 300.0
    auto_stop: bool = False
    runaway: RunawayDefaults = RunawayDefaults()


def _handle(job: Job) -> Handle:
    return Handle(external_id=job.external_id or "", state=job.handle or {})


class Poller:
    def __init__(self, *, db: Database, registry: BackendRegistry, clock: Clock,
                 settings: PollSettings) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock
        self.settings = settings
        self._in_flight: set[str] = set()  # job ids being polled now (tick or poll_now)
        self._failures: dict[str, int] = {}  # job id -> consecutive backend errors
        self.pace = health_watch.PACE  # when long series are re-analysed (tests swap it)

    async def tick(self) -> int:
        """Poll every due active job once, at most `concurrency` at a time; returns the count."""
        jobs = await asyncio.to_thread(self._due_jobs)
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(job: Job) -> None:
            async with gate:
                try:
                    await self.poll_job(job)
                except Exception:  # one broken job must not stop the others
                    log.exception("poll failed", extra={"job_id": job.id})

        async with self._batched_reads(jobs):
            await asyncio.gather(*(one(job) for job in jobs))
        return len(jobs)

    @asynccontextmanager
    async def _batched_reads(self, jobs: list[Job]) -> AsyncIterator[None]:
        """Open each BatchPolling backend's cycle over its submitted jobs for this tick."""
        handles: dict[str, list[Handle]] = {}
        for job in jobs:
            if job.handle is not None:
                handles.setdefault(job.backend, []).append(_handle(job))
        async with AsyncExitStack() as stack:
            for name, group in handles.items():
                backend = self.registry.get(name) if name in self.registry else None
                if not isinstance(backend, BatchPolling):
                    continue
                try:
                    await stack.enter_async_context(backend.poll_cycle(group))
                except Exception:  # the polls still read job by job
                    log.exception("batched status read failed", extra={"backend": name})
            yield

    def _due_jobs(self) -> list[Job]:
        with self.db.session() as session:
            return JobRepository(session).due_for_poll(
                statuses=ACTIVE, now=self.clock.now(), limit=self.settings.batch)

    async def poll_now(self, job_id: str) -> bool:
        """Poll one active job at once (a provider's webhook says it changed), not at its turn.

        A poll of the same job already in flight is waited for and then followed by this one,
        so news that arrived while it ran is not missed; False when there is nothing to poll.
        """
        while job_id in self._in_flight:
            await asyncio.sleep(0.05)
        job = await asyncio.to_thread(self._active_job, job_id)
        if job is None:
            return False
        await self.poll_job(job)
        return True

    @asynccontextmanager
    async def exclusive(self, job_id: str) -> AsyncIterator[None]:
        """Hold off polls of one job while a request changes it at the provider (pause, resume):
        a poll that read the provider before the change must not commit its older status after."""
        while job_id in self._in_flight:
            await asyncio.sleep(0.05)
        self._in_flight.add(job_id)
        try:
            yield
        finally:
            self._in_flight.discard(job_id)

    def _active_job(self, job_id: str) -> Job | None:
        with self.db.session() as session:
            job = JobRepository(session).get(job_id)
        return job if job is not None and job.status in ACTIVE else None

    async def poll_job(self, job: Job) -> None:
        """One job's poll; never two of the same job at once (their cursors would race)."""
        if job.id in self._in_flight:
            return
        self._in_flight.add(job.id)
        try:
            await self._poll_job(job)
        finally:
            self._in_flight.discard(job.id)

    async def _poll_job(self, job: Job) -> None:
        try:
            backend = self.registry.get(job.backend)
        except UnknownBackend:
            reason = f"backend {job.backend!r} is not configured"
            await asyncio.to_thread(self._fail, job.id, reason)
            return
        try:
            if job.handle is None:
                await self._submit(job, backend)
                self._failures.pop(job.id, None)
                return
            handle = _handle(job)
            if job.status == JobStatus.CANCELLING:
                await self._forward_cancel(job, backend, handle)
            update = await backend.poll(handle, job.poll_cursor)
        except BackendError as exc:
            await asyncio.to_thread(self._backend_error, job.id, exc)
            return
        self._failures.pop(job.id, None)
        await asyncio.to_thread(self.record_update, job.id, update)

    async def _submit(self, job: Job, backend: Backend) -> None:
        if job.status == JobStatus.CANCELLING:
            await asyncio.to_thread(self._transition, job.id, JobStatus.CANCELLED, "never started")
            return
        spec = await asyncio.to_thread(self._spec, job)
        handle = await backend.submit(spec)
        await asyncio.to_thread(self._store_handle, job.id, handle)

    async def _forward_cancel(self, job: Job, backend: Backend, handle: Handle) -> None:
        if await asyncio.to_thread(self._has_event, job.id, "cancel_forwarded"):
            return
        await backend.cancel(handle)
        await asyncio.to_thread(self._add_event, job.id, "cancel_forwarded",
                                f"Cancel sent to {job.backend}.")

    def _spec(self, job: Job) -> JobSpec:
        with self.db.session() as session:
            datasets = DatasetRepository(session)
            training = datasets.get(job.training_dataset_id)
            validation = datasets.get(job.validation_dataset_id or "")
        assert training is not None  # foreign key
        return JobSpec(
            job_id=job.id, base_model=job.base_model, method=job.method,
            hyperparameters=job.hyperparameters, training_file=Path(training.blob_path),
            validation_file=Path(validation.blob_path) if validation else None,
            suffix=job.suffix, seed=job.hyperparameters.get("seed"), options=job.options)

    def _store_handle(self, job_id: str, handle: Handle) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            job = JobRepository(session).get(job_id, for_update=True)
            if job is None:
                return
            job.handle = dict(handle.state)
            job.external_id = handle.external_id
            job.updated_at = now
            session.add(job)
            JobEventRepository(session).add(JobEvent(
                job_id=job_id, kind="backend", message=f"Submitted to {job.backend} as "
                f"{handle.external_id}.", dedupe_key="submitted", created_at=now))

    def record_update(self, job_id: str, update: Update) -> None:
        """Metrics, events, cursor, status and what they show, from one poll, committed together.
        The health detector runs first, with no lock held (see health_watch.assess)."""
        now = self.clock.now()
        final = REMOTE_TO_JOB[update.status].is_terminal
        assessment = None
        if update.metrics or final:  # a throttled tail is analysed when the run ends
            assessment = health_watch.assess(self.db, job_id, update.metrics, now=now,
                                             final=final, pace=self.pace)
        with self.db.session() as session:
            job = JobRepository(session).get(job_id, for_update=True)
            if job is None or JobStatus(job.status).is_terminal:
                return
            self._store(session, job, update, now)
            series = None
            if assessment is not None:
                series = health_watch.record(session, job, assessment, now=now,
                                             auto_stop_default=self.settings.auto_stop)
            self._follow_remote(session, job, REMOTE_TO_JOB[update.status], update, now)
            runaway_watch.watch(session, job, now=now, defaults=self.settings.runaway)
            completion_summary.queue(session, job, now=now, series=series)
            session.add(job)
        if assessment is not None:
            health_watch.analysed(assessment, self.pace)

    def _store(self, session: Session, job: Job, update: Update, now: datetime) -> None:
        events = JobEventRepository(session)
        store_samples(session, job.id, update.metrics, now)
        for event in update.events:
            key = f"backend:{event.event_id}"
            if not events.has_dedupe_key(job.id, key):
                events.add(JobEvent(job_id=job.id, kind="backend", level=event.level,
                                    message=event.message, dedupe_key=key,
                                    data=dict(event.data), created_at=event.created_at or now))
        job.poll_cursor = update.cursor
        if update.result is not None:
            job.result = dict(update.result)
        if update.error is not None:
            job.error = dict(update.error)
        job.next_poll_at = now + timedelta(seconds=self.settings.interval_s)

    @staticmethod
    def _follow_remote(session: Session, job: Job, target: JobStatus, update: Update,
                       now: datetime) -> None:
        current = JobStatus(job.status)
        if target == current or target not in TRANSITIONS[current]:
            return  # e.g. the provider still says running while we are cancelling
        reason = None
        if target is JobStatus.FAILED and update.error:
            reason = str(update.error.get("message") or update.error)
        apply_transition(session, job, target, now=now, reason=reason,
                         data={"result": dict(update.result)} if update.result else None)

    def _backend_error(self, job_id: str, exc: BackendError) -> None:
        """Retryable: back off. Configuration (bad key): alert once, keep the job, back off.
        Anything else refused at submit: the provider will never take this job, so it fails."""
        now = self.clock.now()
        with self.db.session() as session:
            job = JobRepository(session).get(job_id, for_update=True)
            if job is None:
                return
            if not exc.retryable and not exc.is_configuration and job.handle is None:
                job.error = {"message": str(exc)}
                apply_transition(session, job, JobStatus.FAILED, now=now, reason=str(exc),
                                 data={"error": str(exc)})
                return
            if exc.is_configuration:
                notify(session, job, kind="alert", dedupe_key=f"{job_id}:config:{exc}"[:200],
                       text=f"Backend {job.backend} rejected our credentials while handling "
                            f"{job_id}: {exc}", now=now)
            delay = self._backoff(job_id, exc.retry_after)
            if not exc.retryable:
                delay = max(delay, self.settings.max_backoff_s / 2)
            job.next_poll_at = now + timedelta(seconds=min(delay, self.settings.max_backoff_s))
            session.add(job)
        log.warning("backend error, next poll in %.1fs: %s", delay, exc, extra={"job_id": job_id})

    def _backoff(self, job_id: str, retry_after: float | None) -> float:
        """Exponential in the job's consecutive failures, with jitter over the upper half, so a
        provider storm spreads the retries of many jobs instead of synchronising them. A
        Retry-After is the floor, plus up to 20% jitter for the same reason."""
        failures = self._failures[job_id] = self._failures.get(job_id, 0) + 1
        if retry_after:
            return retry_after * (1 + 0.2 * random.random())
        interval = self.settings.interval_s
        ceiling = min(self.settings.max_backoff_s, interval * 2 ** min(failures, 16))
        return ceiling * (0.5 + 0.5 * random.random())

    def _transition(self, job_id: str, target: JobStatus, reason: str) -> None:
        with self.db.session() as session:
            job = JobRepository(session).get(job_id, for_update=True)
            if job is not None and target in TRANSITIONS[JobStatus(job.status)]:
                apply_transition(session, job, target, now=self.clock.now(), reason=reason)

    def _fail(self, job_id: str, reason: str) -> None:
        self._transition(job_id, JobStatus.FAILED, reason)

    def _has_event(self, job_id: str, dedupe_key: str) -> bool:
        with self.db.session() as session:
            return JobEventRepository(session).has_dedupe_key(job_id, dedupe_key)

    def _add_event(self, job_id: str, dedupe_key: str, message: str) -> None:
        with self.db.session() as session:
            JobEventRepository(session).add(JobEvent(
                job_id=job_id, kind="backend", message=message, dedupe_key=dedupe_key,
                created_at=self.clock.now()))
