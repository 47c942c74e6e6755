from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from storage.tables import Job


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, job_id: str, *, for_update: bool = False) -> Job | None:
        """`for_update`: the row stays this transaction's until it ends, so concurrent
        transitions of one job (two cancels) run one after the other and the second sees the
        first's result. PostgreSQL locks the row; SQLite has no row locks and ignores FOR
        UPDATE, so there a no-op write takes the database's write lock before the read."""
        statement = select(Job).where(Job.id == job_id)
        if for_update:
            statement = statement.with_for_update()
            if self.session.get_bind().dialect.name == "sqlite":
                self.session.exec(update(Job).where(col(Job.id) == job_id)
                                  .values(updated_at=Job.updated_at)
                                  .execution_options(synchronize_session=False))
        return self.session.exec(statement).first()

    def by_external_id(self, backend: str, external_id: str) -> Job | None:
        """The job a provider knows as `external_id` (webhooks name jobs by their id)."""
        statement = select(Job).where(Job.backend == backend, Job.external_id == external_id)
        return self.session.exec(statement).first()

    def page(
        self,
        *,
        limit: int,
        before_id: str | None = None,
        statuses: Sequence[str] = (),
        backend: str | None = None,
        creator: str | None = None,
    ) -> list[Job]:
        """Newest first; ids are time-ordered so `before_id` is a stable cursor."""
        statement = select(Job).order_by(col(Job.id).desc()).limit(limit)
        if before_id:
            statement = statement.where(col(Job.id) < before_id)
        if statuses:
            statement = statement.where(col(Job.status).in_(list(statuses)))
        if backend:
            statement = statement.where(Job.backend == backend)
        if creator:
            statement = statement.where(Job.creator == creator)
        return list(self.session.exec(statement))

    def due_for_poll(self, *, statuses: Sequence[str], now: datetime, limit: int) -> list[Job]:
        statement = (
            select(Job)
            .where(col(Job.status).in_(list(statuses)))
            .where(or_(col(Job.next_poll_at).is_(None), col(Job.next_poll_at) <= now))
            .order_by(col(Job.id))
            .limit(limit)
        )
        return list(self.session.exec(statement))

    def count_by_status(self) -> dict[str, int]:
        from sqlalchemy import func

        rows = self.session.exec(select(Job.status, func.count()).group_by(Job.status))
        return {str(status): int(count) for status, count in rows.all()}

    def set_thread(self, job_id: str, thread_ts: str) -> bool:
        """Record the Slack thread once: a later or concurrent writer never moves it."""
        statement = (
            update(Job)
            .where(col(Job.id) == job_id, col(Job.slack_thread_ts).is_(None))
            .values(slack_thread_ts=thread_ts)
        )
        return bool(self.session.exec(statement).rowcount)
