from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, delete, select

from storage.tables import IdempotencyRecord


class IdempotencyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        statement = select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
        return self.session.exec(statement).first()

    def add(self, record: IdempotencyRecord) -> IdempotencyRecord:
        self.session.add(record)
        self.session.flush()
        return record

    def save(self, record: IdempotencyRecord) -> None:
        self.session.add(record)
        self.session.flush()

    def remove(self, record_id: int) -> None:
        self.session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == record_id))

    def purge_older_than(self, cutoff: datetime) -> None:
        self.session.exec(
            delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < cutoff)
        )
