"""APScheduler 3.x inside `serve`: the poll tick and the outbox drain, never overlapping.

Every replica runs this scheduler with its own in-memory job store; none is shared. On
PostgreSQL each poll tick is guarded by an advisory lock (`storage.leadership`), so across all
replicas at most one tick runs at a time and whoever's interval comes next leads; a replica that
dies mid-tick frees the lock with its connection. The outbox drain runs on every replica: row
claims in `tunebridge.outbox` keep each notification to one sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from storage.leadership import TickLock, tick_lock
from tunebridge.outbox import OutboxSender
from tunebridge.poller import Poller

log = logging.getLogger(__name__)

POLL_JOB = "poll"
OUTBOX_JOB = "outbox"


class Scheduler:
    def __init__(self, *, poller: Poller, sender: OutboxSender, poll_interval_s: float,
                 outbox_interval_s: float, lock: TickLock | None = None) -> None:
        self._poller = poller
        self._sender = sender
        self._lock = lock if lock is not None else tick_lock(poller.db.engine, POLL_JOB)
        # A wake while that job runs is remembered and served by one more round of the running
        # job: asking APScheduler instead would only log "maximum number of running instances
        # reached" and drop the wake.
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(self._poll, "interval", seconds=poll_interval_s, id=POLL_JOB,
                                max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
        self._scheduler.add_job(self._drain, "interval", seconds=outbox_interval_s,
                                id=OUTBOX_JOB, max_instances=1, coalesce=True,
                                next_run_time=datetime.now(UTC))

    async def _poll(self) -> None:
        await self._rounds(POLL_JOB, self._poll_once)

    async def _drain(self) -> None:
        await self._rounds(OUTBOX_JOB, self._drain_once)

    async def _rounds(self, job_id: str, once: Callable[[], Awaitable[None]]) -> None:
        self._running.add(job_id)
        try:
            while True:
                self._again.discard(job_id)
                await once()
                if job_id not in self._again:
                    return
        finally:
            self._running.discard(job_id)

    async def _poll_once(self) -> None:
        if not await asyncio.to_thread(self._lock.acquire):
            log.debug("poll tick skipped: another replica is polling")
            return
        try:
            await self._poller.tick()
        except Exception:
            log.exception("poll tick failed")
        finally:
            await asyncio.to_thread(self._lock.release)
        self.wake_outbox()

    async def _drain_once(self) -> None:
        try:
            await self._sender.drain()
        except Exception:
            log.exception("outbox drain failed")

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._lock.close()

    def wake_poll(self) -> None:
        """Run the poll tick now (e.g. after a cancel) instead of waiting for the interval."""
        self._wake(POLL_JOB)

    def wake_outbox(self) -> None:
        self._wake(OUTBOX_JOB)

    def _wake(self, job_id: str) -> None:
        if job_id in self._running:
            self._again.add(job_id)
        elif self._scheduler.running:
            self._scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
