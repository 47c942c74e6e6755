from __future__ import annotations

from sqlmodel import Session, col, select

from storage.tables import JobEvent


class JobEventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, event: JobEvent) -> JobEvent:
        self.session.add(event)
        self.session.flush()
        return event

    def has_dedupe_key(self, job_id: str, dedupe_key: str) -> bool:
        statement = select(JobEvent.id).where(
            JobEvent.job_id == job_id, JobEvent.dedupe_key == dedupe_key
        )
        return self.session.exec(statement).first() is not None

    def page(self, job_id: str, *, after_id: int | None, limit: int) -> list[JobEvent]:
        """Oldest first, so a follower can keep `after_id` as its position."""
        statement = (
            select(JobEvent)
            .where(JobEvent.job_id == job_id)
            .order_by(col(JobEvent.id))
            .limit(limit)
        )
        if after_id is not None:
            statement = statement.where(col(JobEvent.id) > after_id)
        return list(self.session.exec(statement))
