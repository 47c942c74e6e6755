"""The outbox: every notification once, in order per channel, across failures and crashes."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from storage.database import Database
from storage.tables import Job, Notification
from tests.conftest import LiveApi
from tunebridge.clock import SystemClock
from tunebridge.console_notifier import ConsoleNotifier
from tunebridge.outbox import DeliveryFailed, OutboxSender, OutgoingNotification


class RecordingDestination:
    """A destination that keeps what it received and can refuse, like Slack answering 429."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.refuse: dict[str | None, int] = {}

    async def send(self, notification: OutgoingNotification) -> dict[str, Any]:
        if self.refuse.get(notification.channel, 0) > 0:
            self.refuse[notification.channel] -= 1
            raise DeliveryFailed("rate limited", retry_after=0.05)
        self.received.append(notification.dedupe_key)
        return {"n": len(self.received)}

    async def find_delivered(self, dedupe_key: str) -> dict[str, Any] | None:
        return {"found": True} if dedupe_key in self.received else None


def _queue(db: Database, *items: tuple[str, str | None]) -> None:
    now = datetime.now(UTC)
    with db.session() as session:
        for key, channel in items:
            session.add(Notification(dedupe_key=key, channel=channel, kind="status",
                                     payload={"text": key}, created_at=now))


def _states(db: Database) -> dict[str, str]:
    with db.session() as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id)))
        return {row.dedupe_key: row.state for row in rows}


def test_a_refusing_channel_holds_its_later_rows_but_not_other_channels(live: LiveApi) -> None:
    db = live.runtime.db
    destination = RecordingDestination()
    sender = OutboxSender(db=db, notifier=destination, clock=SystemClock())
    _queue(db, ("a1", "#a"), ("b1", "#b"), ("a2", "#a"), ("b2", "#b"))
    destination.refuse["#a"] = 2
    asyncio.run(sender.drain())
    assert destination.received == ["b1", "b2"]
    asyncio.run(sender.drain())  # still inside Retry-After: nothing for #a
    assert destination.received == ["b1", "b2"]
    for _ in range(40):
        asyncio.run(sender.drain())
        if len(destination.received) == 4:
            break
        asyncio.run(asyncio.sleep(0.03))
    assert destination.received == ["b1", "b2", "a1", "a2"]
    assert set(_states(db).values()) == {"sent"}


def test_a_row_left_in_flight_by_a_crash_is_not_sent_twice(live: LiveApi) -> None:
    db = live.runtime.db
    destination = RecordingDestination()
    destination.received.append("delivered-before-crash")
    _queue(db, ("delivered-before-crash", None), ("never-delivered", None))
    with db.session() as session:
        for row in session.exec(select(Notification)):
            row.state = "sending"  # what a SIGKILL between mark and confirm leaves behind
            session.add(row)
    asyncio.run(OutboxSender(db=db, notifier=destination, clock=SystemClock()).drain())
    assert destination.received == ["delivered-before-crash", "never-delivered"]
    assert set(_states(db).values()) == {"sent"}


def test_console_notifier_journal_survives_a_restart(tmp_path: Path, live: LiveApi) -> None:
    db = live.runtime.db
    journal = tmp_path / "journal.jsonl"
    first_out, second_out = io.StringIO(), io.StringIO()
    _queue(db, ("k1", "#ops"), ("k2", "#ops"))
    asyncio.run(OutboxSender(db=db, notifier=ConsoleNotifier(journal, first_out),
                             clock=SystemClock()).drain())
    with db.session() as session:  # pretend the process died before confirming k2
        row = session.exec(select(Notification).where(Notification.dedupe_key == "k2")).one()
        row.state = "sending"
        session.add(row)
    asyncio.run(OutboxSender(db=db, notifier=ConsoleNotifier(journal, second_out),
                             clock=SystemClock()).drain())
    assert first_out.getvalue() == "[tunebridge #ops] k1\n[tunebridge #ops] k2\n"
    assert second_out.getvalue() == ""
    assert set(_states(db).values()) == {"sent"}


def test_job_changes_queue_notifications_in_the_same_transaction(live: LiveApi,
                                                                 chat_jsonl: bytes) -> None:
    with live.client() as http:
        dataset_id = http.post("/api/datasets", content=chat_jsonl).json()["id"]
        job_id = http.post("/api/jobs", json={
            "training_dataset_id": dataset_id, "base_model": "m", "backend": "scripted",
            "notify": {"slack_channel": "C123"}}).json()["id"]
        http.post(f"/api/jobs/{job_id}/cancel")
    with live.runtime.db.session() as session:
        job = session.get(Job, job_id)
        rows = list(session.exec(select(Notification).where(Notification.job_id == job_id)
                                 .order_by(col(Notification.id))))
    assert job is not None and job.status == "cancelled"
    assert [r.payload["data"]["status"] for r in rows] == ["queued", "cancelled"]
    assert {r.channel for r in rows} == {"C123"}
    assert rows[1].created_at - rows[0].created_at < timedelta(seconds=5)
