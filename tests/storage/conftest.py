"""A migrated database (SQLite file or PostgreSQL schema, see tests/conftest.py) holding one
dataset and one queued job, `job_1`, for repository tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from storage import migration
from storage.database import Database
from storage.repositories.datasets import DatasetRepository
from storage.repositories.jobs import JobRepository
from storage.tables import Dataset, Job

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migration.upgrade(database.engine)
    with database.session() as session:
        DatasetRepository(session).add(Dataset(
            id="ds_1", sha256="a" * 64, filename="x.jsonl", format="chat", num_examples=1,
            size_bytes=10, blob_path="/x", created_by="t", created_at=NOW))
        JobRepository(session).add(Job(
            id="job_1", backend="scripted", base_model="m", method="sft", status="queued",
            training_dataset_id="ds_1", creator="t", created_at=NOW, updated_at=NOW))
    yield database
    database.dispose()
