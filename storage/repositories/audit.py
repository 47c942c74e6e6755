from __future__ import annotations

from sqlmodel import Session, col, select

from storage.tables import AuditLog


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, entry: AuditLog) -> AuditLog:
        self.session.add(entry)
        self.session.flush()
        return entry

    def for_job(self, job_id: str) -> list[AuditLog]:
        statement = select(AuditLog).where(AuditLog.job_id == job_id).order_by(col(AuditLog.id))
        return list(self.session.exec(statement))
