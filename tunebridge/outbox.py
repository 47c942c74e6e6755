"""Delivers queued notifications exactly once, in order.

A row is marked `sending` (committed) before the notifier is called and `sent` after. A crash in
between leaves `sending`; on the next drain the notifier is asked whether it already delivered
that dedupe key, so the row is neither lost nor posted twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from storage.database import Database
from storage.repositories.outbox import OutboxRepository
from storage.tables import Notification
from tunebridge.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingNotification:
    dedupe_key: str
    job_id: str | None
    channel: str | None
    kind: str
    payload: Mapping[str, Any]


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Notifier(Protocol):
    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        """Deliver; return a receipt (e.g. Slack ts). Raise DeliveryFailed to retry later."""
        ...

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        """The receipt of an earlier delivery of this key, if the destination has it."""
        ...


class OutboxSender:
    def __init__(self, *, db: Database, notifier: Notifier, clock: Clock,
                 batch: int = 100, max_backoff_s: float = 300.0) -> None:
        self.db = db
        self.notifier = notifier
        self.clock = clock
        self.batch = batch
        self.max_backoff_s = max_backoff_s

    async def drain(self) -> int:
        """Send what is due, oldest first; a failed channel waits so later rows keep order."""
        rows = await asyncio.to_thread(self._due)
        blocked: set[str | None] = set()
        sent = 0
        for row in rows:
            if row.channel in blocked:
                continue
            if await self._deliver(row):
                sent += 1
            else:
                blocked.add(row.channel)
        return sent

    def _due(self) -> list[Notification]:
        with self.db.session() as session:
            repo = OutboxRepository(session)
            rows = repo.unfinished(limit=self.batch)
        now = self.clock.now()
        # A channel whose head row is waiting holds back every later row of that channel.
        held: set[str | None] = set()
        due = []
        for row in rows:
            if row.channel in held:
                continue
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                held.add(row.channel)
                continue
            due.append(row)
        return due

    async def _deliver(self, row: Notification) -> bool:
        outgoing = OutgoingNotification(
            dedupe_key=row.dedupe_key, job_id=row.job_id, channel=row.channel, kind=row.kind,
            payload=row.payload)
        try:
            receipt = None
            if row.state == "sending":
                receipt = await self.notifier.find_delivered(row.dedupe_key)
            if receipt is None:
                await asyncio.to_thread(self._mark, row.id, "sending", None)
                receipt = await self.notifier.send(outgoing)
        except DeliveryFailed as exc:
            await asyncio.to_thread(self._retry_later, row.id, exc)
            return False
        await asyncio.to_thread(self._mark, row.id, "sent", receipt)
        return True

    def _mark(self, row_id: int | None, state: str, receipt: dict[str, Any] | None) -> None:
        with self.db.session() as session:
            repo = OutboxRepository(session)
            row = repo.get(row_id or 0)
            if row is None:
                return
            row.state = state
            if state == "sending":
                row.attempts += 1
            else:
                row.receipt = receipt
                row.sent_at = self.clock.now()
                row.last_error = None
            repo.save(row)

    def _retry_later(self, row_id: int | None, exc: DeliveryFailed) -> None:
        with self.db.session() as session:
            repo = OutboxRepository(session)
            row = repo.get(row_id or 0)
            if row is None:
                return
            backoff = min(self.max_backoff_s, 2 ** min(row.attempts, 8)) * (0.5 + random.random())
            delay = exc.retry_after if exc.retry_after is not None else backoff
            row.state = "pending"  # the destination said no: it did not deliver
            row.next_attempt_at = self.clock.now() + timedelta(seconds=delay)
            row.last_error = str(exc)[:500]
            repo.save(row)
        log.warning("notification %s delayed %.1fs: %s", row_id, delay, exc)
