from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.leadership import hold_until_commit
from storage.tables import ApiKey


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key

    def get(self, key_id: str) -> ApiKey | None:
        return self.session.get(ApiKey, key_id)

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self.session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()

    def all(self) -> list[ApiKey]:
        return list(self.session.exec(select(ApiKey).order_by(col(ApiKey.created_at))))

    def hold_bootstrap_lock(self) -> None:
        """Replicas starting together on an empty database: one mints the bootstrap key, the
        others wait for its commit and then count it."""
        hold_until_commit(self.session.connection(), "bootstrap-admin-key")

    def count(self) -> int:
        return int(self.session.exec(select(func.count()).select_from(ApiKey)).one())

    def save(self, key: ApiKey) -> None:
        self.session.add(key)
        self.session.flush()
