from __future__ import annotations

from sqlmodel import Session, select

from storage.tables import Dataset


class DatasetRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        self.session.flush()
        return dataset

    def get(self, dataset_id: str) -> Dataset | None:
        return self.session.get(Dataset, dataset_id)

    def by_sha256(self, sha256: str) -> Dataset | None:
        return self.session.exec(select(Dataset).where(Dataset.sha256 == sha256)).first()
