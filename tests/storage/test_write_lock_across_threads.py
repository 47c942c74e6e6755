"""No transaction keeps the database's write lock while it waits for a worker thread.

SQLite has one write lock for the whole database. The scheduler's work shares the event loop's
worker threads (`asyncio.to_thread`); when a transaction that has written hands its commit to a
later thread call, that call queues behind other writers, which wait in the pool for the very
lock it holds, until the busy timeout (10 s) fails them and API writes behind them answer 503.
The outbox sender writes a delivered row's outcome and commits it in one call."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from storage.database import Database
from storage.repositories.audit import AuditRepository
from storage.tables import AuditLog, Notification
from tunebridge.clock import SystemClock
from tunebridge.outbox import OutboxSender, OutgoingNotification
from tunebridge.runtime import Runtime


class Receipts:
    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        return {"ts": notification.dedupe_key}

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        return None


def _write(db: Database) -> float:
    """One short write (an audit row) as a poll or an API call makes; returns its wait."""
    started = time.monotonic()
    with db.session() as session:
        AuditRepository(session).add(AuditLog(actor="t", action="x", source="t", detail={},
                                              created_at=datetime.now(UTC)))
    return time.monotonic() - started


async def _deliver_while_writers_queue(db: Database) -> list[float]:
    """Drain the outbox on a loop with one worker thread while a writer keeps a call queued."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
    sender = OutboxSender(db=db, notifier=Receipts(), clock=SystemClock())
    waits: list[float] = []
    done = asyncio.Event()

    async def writer() -> None:
        while not done.is_set():
            waits.append(await asyncio.to_thread(_write, db))

    task = asyncio.create_task(writer())
    try:
        assert await sender.drain() == 5
    finally:
        done.set()
        await task
    return waits


def test_outbox_delivery_does_not_hold_the_write_lock_across_a_thread_hop(
        runtime: Runtime) -> None:
    now = datetime.now(UTC)
    with runtime.db.session() as session:
        for n in range(5):
            session.add(Notification(dedupe_key=f"n{n}", channel="#c", kind="status",
                                     payload={"text": f"n{n}"}, created_at=now))
    waits = asyncio.run(_deliver_while_writers_queue(runtime.db))
    assert waits and max(waits) < 2.0, f"a writer waited {max(waits):.1f} s for the lock"
    with runtime.db.session() as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id)))
        assert [(r.state, (r.receipt or {}).get("ts")) for r in rows] == [
            ("sent", f"n{n}") for n in range(5)]
