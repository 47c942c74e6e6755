"""Delivers queued notifications exactly once, in order.

A row is marked `sending` (committed) before the notifier is called and `sent` after. A crash in
between leaves `sending`; on the next drain the notifier is asked whether it already delivered
that dedupe key, so the row is neither lost nor posted twice.

Several replicas may drain one PostgreSQL outbox at once. Each claims a row with
`FOR UPDATE SKIP LOCKED` and keeps it locked until the outcome is committed, so a row in flight
is never taken for one left behind by a crash, and a claim made since ours (the attempt count
moved) makes us step back. A channel whose row is in another replica's hands waits for the next
round, which keeps each channel's rows in order across replicas.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from functools import partial
from typing import Any, Protocol

from sqlmodel import Session

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


class Outcome(Enum):
    SENT = "sent"
    DONE = "done"  # already delivered by another replica
    HELD = "held"  # not now: in another replica's hands, or refused until later


class Hold:
    """A claimed row and the open transaction that holds it until its outcome is recorded.

    `settle` writes the outcome and commits in one call, so in one worker thread: on SQLite the
    write takes the database's write lock, and a commit left to a later thread hop waited for a
    free worker while the shared pool's threads were all writers waiting for that very lock (the
    poll's), for up to the 10 s busy timeout: API writes behind it got 503."""

    def __init__(self, unit: AbstractContextManager[Session], repo: OutboxRepository,
                 row: Notification) -> None:
        self.unit, self.repo, self.row = unit, repo, row
        self.settled = False

    def settle(self, outcome: Callable[[], None]) -> None:
        outcome()
        self.repo.save(self.row)
        self.settled = True
        self.unit.__exit__(None, None, None)


@dataclass(frozen=True)
class Claim:
    attempts: int  # the row's attempt count once claimed: a later claim by anyone changes it
    was_sending: bool  # an earlier attempt may have reached the destination


class OutboxSender:
    def __init__(self, *, db: Database, notifier: Notifier, clock: Clock,
                 batch: int = 100, max_backoff_s: float = 300.0) -> None:
        self.db = db
        self.notifier = notifier
        self.clock = clock
        self.batch = batch
        self.max_backoff_s = max_backoff_s

    async def drain(self) -> int:
        """Send what is due, oldest first; a failed channel waits so later rows keep order.

        A channel whose row another replica has in hand is left to that replica for this
        round, for the same reason: its later rows must not overtake the one in flight."""
        rows = await asyncio.to_thread(self._due)
        blocked: set[str | None] = set()
        sent = 0
        for row in rows:
            if row.channel in blocked:
                continue
            outcome = await self._deliver(row)
            if outcome is Outcome.SENT:
                sent += 1
            elif outcome is Outcome.HELD:
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

    async def _deliver(self, row: Notification) -> Outcome:
        claim = await asyncio.to_thread(self._claim, row.id or 0)
        if not isinstance(claim, Claim):
            return claim
        outgoing = OutgoingNotification(
            dedupe_key=row.dedupe_key, job_id=row.job_id, channel=row.channel, kind=row.kind,
            payload=row.payload)
        async with self._holding(row.id or 0, claim.attempts) as held:
            if held is None:
                return Outcome.HELD  # another replica claimed it after us: it is theirs now
            try:
                receipt = None
                if claim.was_sending:
                    receipt = await self.notifier.find_delivered(row.dedupe_key)
                if receipt is None:
                    receipt = await self.notifier.send(outgoing)
            except DeliveryFailed as exc:
                await asyncio.to_thread(held.settle, partial(self._retry_later, held.row, exc))
                return Outcome.HELD
            await asyncio.to_thread(held.settle, partial(self._sent, held.row, receipt))
            return Outcome.SENT

    def _claim(self, row_id: int) -> Claim | Outcome:
        """Mark the row `sending` and count the attempt, committed before anything is sent:
        a crash after this point leaves `sending`, and the next sender looks before posting."""
        with self.db.session() as session:
            repo = OutboxRepository(session)
            row = repo.claim(row_id)
            if row is None:
                return Outcome.HELD
            if row.state not in ("pending", "sending"):
                return Outcome.DONE  # another replica delivered it since we read the queue
            if row.next_attempt_at is not None and row.next_attempt_at > self.clock.now():
                return Outcome.HELD  # another replica was refused since we read the queue
            was_sending = row.state == "sending"
            row.state = "sending"
            row.attempts += 1
            repo.save(row)
            return Claim(attempts=row.attempts, was_sending=was_sending)

    @asynccontextmanager
    async def _holding(self, row_id: int, attempts: int) -> AsyncIterator[Hold | None]:
        """The row locked for the whole delivery, in a transaction that records its outcome.

        The lock is what keeps a second replica from treating an in-flight row as one left
        behind by a crash; if this process dies, PostgreSQL drops the lock with the connection.
        """
        unit = self.db.session()
        session = await asyncio.to_thread(unit.__enter__)
        hold: Hold | None = None
        try:
            repo = OutboxRepository(session)
            row = await asyncio.to_thread(repo.claim, row_id, attempts=attempts)
            hold = Hold(unit, repo, row) if row is not None else None
            yield hold
        except BaseException as exc:
            if hold is not None and hold.settled:
                raise  # the unit has ended already: its commit is what failed
            if not await asyncio.to_thread(unit.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            if hold is None or not hold.settled:
                await asyncio.to_thread(unit.__exit__, None, None, None)

    def _sent(self, row: Notification, receipt: dict[str, Any] | None) -> None:
        row.state = "sent"
        row.receipt = receipt
        row.sent_at = self.clock.now()
        row.last_error = None

    def _retry_later(self, row: Notification, exc: DeliveryFailed) -> None:
        backoff = min(self.max_backoff_s, 2 ** min(row.attempts, 8)) * (0.5 + random.random())
        delay = exc.retry_after if exc.retry_after is not None else backoff
        row.state = "pending"  # the destination said no: it did not deliver
        row.next_attempt_at = self.clock.now() + timedelta(seconds=delay)
        row.last_error = str(exc)[:500]
        log.warning("notification %s delayed %.1fs: %s", row.id, delay, exc)
