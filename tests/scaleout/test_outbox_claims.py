"""Two outbox senders, each with its own connection pool (as two replicas have), draining one
PostgreSQL outbox at the same time: every row delivered once, each channel in order."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

from storage import migration
from storage.database import Database
from storage.tables import Notification
from tests.conftest import run_async
from tunebridge.clock import SystemClock
from tunebridge.outbox import OutboxSender, OutgoingNotification

pytestmark = pytest.mark.postgres

CHANNELS = ["C1", "C2", "C3", "C4"]
PER_CHANNEL = 6


class SharedSlack:
    """One destination seen through two replicas' notifiers; slow enough that their
    deliveries overlap."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []  # (replica, dedupe key), in arrival order

    def door(self, replica: str) -> Door:
        return Door(self, replica)


class Door:
    def __init__(self, slack: SharedSlack, replica: str) -> None:
        self.slack = slack
        self.replica = replica

    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        await asyncio.sleep(0.02)  # the request is on the wire
        self.slack.delivered.append((self.replica, notification.dedupe_key))
        return {"by": self.replica}

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        hits = [r for r, key in self.slack.delivered if key == dedupe_key]
        return {"by": hits[0], "recovered": True} if hits else None


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[Database, Database]]:
    first, second = Database(database_url), Database(database_url)
    migration.upgrade(first.engine)
    yield first, second
    first.dispose()
    second.dispose()


def _queue(db: Database, *, left_in_flight: set[str]) -> list[str]:
    now = datetime.now(UTC)
    keys = []
    with db.session() as session:
        for index in range(PER_CHANNEL):
            for channel in CHANNELS:
                key = f"{channel}:{index}"
                keys.append(key)
                session.add(Notification(
                    dedupe_key=key, channel=channel, kind="status", payload={"text": key},
                    created_at=now, state="sending" if key in left_in_flight else "pending",
                    attempts=1 if key in left_in_flight else 0))
    return keys


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_replicas_drain_one_outbox_each_row_once_in_order(
        replicas: tuple[Database, Database]) -> None:
    slack = SharedSlack()
    crashed = {"C2:0"}  # a replica died after posting this one, before recording it
    keys = _queue(replicas[0], left_in_flight=crashed)
    slack.delivered.append(("dead replica", "C2:0"))
    senders = [OutboxSender(db=db, notifier=slack.door(name), clock=SystemClock())
               for db, name in zip(replicas, ("a", "b"), strict=True)]

    async def drain_until_done() -> None:
        for _ in range(200):
            await asyncio.gather(*(sender.drain() for sender in senders))
            if len(slack.delivered) >= len(keys):
                return

    run_async(drain_until_done())

    with replicas[0].session() as session:
        rows = list(session.exec(select(Notification)))
    assert {row.state for row in rows} == {"sent"}
    assert [k for k, n in Counter(k for _, k in slack.delivered).items() if n > 1] == []
    assert sorted(k for _, k in slack.delivered) == sorted(keys)
    for channel in CHANNELS:  # each channel's rows arrived in the order they were queued
        arrived = [k for _, k in slack.delivered if k.startswith(f"{channel}:")]
        assert arrived == [f"{channel}:{i}" for i in range(PER_CHANNEL)]
    by_replica = Counter(replica for replica, _ in slack.delivered)
    assert by_replica["a"] > 0 and by_replica["b"] > 0, by_replica  # both did share the work
    recovered = next(row for row in rows if row.dedupe_key == "C2:0")
    assert recovered.receipt == {"by": "dead replica", "recovered": True}
