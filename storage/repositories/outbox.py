from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from storage.tables import Notification


class OutboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_once(self, notification: Notification) -> Notification | None:
        """Insert unless the dedupe key exists: the same fact is never queued twice."""
        statement = select(Notification.id).where(
            Notification.dedupe_key == notification.dedupe_key
        )
        if self.session.exec(statement).first() is not None:
            return None
        self.session.add(notification)
        self.session.flush()
        return notification

    def get(self, notification_id: int) -> Notification | None:
        return self.session.get(Notification, notification_id)

    def claim(self, notification_id: int, *, attempts: int | None = None
              ) -> Notification | None:
        """Lock one row until this transaction ends, or None if another replica holds it.

        `FOR UPDATE SKIP LOCKED` on PostgreSQL: replicas draining at once each take different
        rows and never wait on each other. `attempts` additionally requires that nobody claimed
        the row since this sender did. SQLite ignores the lock clause: there one process drains.
        """
        statement = (
            select(Notification)
            .where(Notification.id == notification_id)
            .with_for_update(skip_locked=True)
        )
        if attempts is not None:
            statement = statement.where(Notification.attempts == attempts)
        return self.session.exec(statement).first()

    def unfinished(self, *, limit: int) -> list[Notification]:
        """Pending and in-flight rows, oldest first: delivery order is insertion order."""
        statement = (
            select(Notification)
            .where(col(Notification.state).in_(["pending", "sending"]))
            .order_by(col(Notification.id))
            .limit(limit)
        )
        return list(self.session.exec(statement))

    def due(self, *, now: datetime, limit: int) -> list[Notification]:
        statement = (
            select(Notification)
            .where(col(Notification.state).in_(["pending", "sending"]))
            .where(
                or_(
                    col(Notification.next_attempt_at).is_(None),
                    col(Notification.next_attempt_at) <= now,
                )
            )
            .order_by(col(Notification.id))
            .limit(limit)
        )
        return list(self.session.exec(statement))

    def for_job(self, job_id: str) -> list[Notification]:
        statement = (
            select(Notification)
            .where(Notification.job_id == job_id)
            .order_by(col(Notification.id))
        )
        return list(self.session.exec(statement))

    def save(self, notification: Notification) -> None:
        self.session.add(notification)
        self.session.flush()

    def by_dedupe_key(self, dedupe_key: str) -> Notification | None:
        statement = select(Notification).where(Notification.dedupe_key == dedupe_key)
        return self.session.exec(statement).first()

    def last_sent(self, job_id: str, channel: str) -> Notification | None:
        """The latest delivered row of one job in one channel (its receipt names the thread)."""
        statement = (
            select(Notification)
            .where(Notification.job_id == job_id, Notification.channel == channel)
            .where(Notification.state == "sent")
            .order_by(col(Notification.id).desc())
            .limit(1)
        )
        return self.session.exec(statement).first()
