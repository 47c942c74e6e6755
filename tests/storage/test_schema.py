"""Migrations are the schema: applying them yields exactly the models, on SQLite and Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from storage import migration
from storage.database import Database


def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    migration.upgrade(db.engine)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []
    assert migration.is_at_head(db.engine)
    db.dispose()


def test_upgrade_is_repeatable_and_downgrade_works(database_url: str) -> None:
    db = Database(database_url)
    migration.upgrade(db.engine)
    migration.upgrade(db.engine)
    from alembic import command

    config = migration.alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert migration.current_revision(db.engine) is None
    migration.upgrade(db.engine)
    assert migration.is_at_head(db.engine)
    db.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/wal.db")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()
