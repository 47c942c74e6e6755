"""The locks themselves: the PostgreSQL advisory lock that elects a tick's leader, and the file
lock that keeps SQLite to one scheduler."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from storage import migration
from storage.database import build_engine
from storage.leadership import (
    AdvisoryLock,
    ProcessLock,
    SchedulerAlreadyRunning,
    sqlite_scheduler_lock,
    tick_lock,
)
from tests.conftest import POSTGRES_ADMIN
from tests.e2e.serve_process import REPO


@pytest.fixture
def other_schema(database_url: str) -> Iterator[str]:
    """A second deployment in the same PostgreSQL database."""
    schema = f"tb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield database_url.rsplit("%3D", 1)[0] + f"%3D{schema}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_holder_at_a_time_and_a_dead_session_frees_the_lock(
        database_url: str, other_schema: str) -> None:
    engines = [build_engine(database_url) for _ in range(2)] + [build_engine(other_schema)]
    first, second, elsewhere = (AdvisoryLock(engine, "poll") for engine in engines)
    try:
        assert isinstance(tick_lock(engines[0], "poll"), AdvisoryLock)
        assert first.acquire()
        assert not first.acquire(), "a holder must not stack the lock and run twice"
        assert not second.acquire()
        assert elsewhere.acquire(), "another schema is another deployment"
        assert AdvisoryLock(engines[1], "outbox").acquire(), "another name is another lock"
        first.release()
        assert second.acquire()
        second.release()

        assert first.acquire()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            # What a SIGKILLed replica's session comes to: the server ends it, locks and all.
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid = hashtext('poll')::oid "
                "AND objid = hashtext(%s)::oid AND objsubid = 2",
                (_schema(database_url),)).fetchall()
        assert ended == [(True,)]
        deadline = time.monotonic() + 5
        while not second.acquire():
            assert time.monotonic() < deadline, "the dead session's lock was never freed"
            time.sleep(0.05)
        first.release()  # its session is gone: nothing to release, no error
        assert not first.acquire(), "reconnected, the old holder waits its turn"
        second.release()
        assert first.acquire()
    finally:
        for lock in (first, second, elsewhere):
            lock.close()
        for engine in engines:
            engine.dispose()


def _schema(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def test_sqlite_has_one_scheduler_per_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tunebridge.db'}"
    assert isinstance(tick_lock(build_engine(url), "poll"), ProcessLock)
    assert sqlite_scheduler_lock("sqlite://") is None
    assert sqlite_scheduler_lock("postgresql://u@h/db") is None
    held = sqlite_scheduler_lock(url)
    assert held is not None and held.path == tmp_path / "tunebridge.db.scheduler.lock"
    held.acquire()
    second = sqlite_scheduler_lock(url)
    assert second is not None
    try:
        with pytest.raises(SchedulerAlreadyRunning, match="already runs on this SQLite"):
            second.acquire()
    finally:
        held.release()
    again = sqlite_scheduler_lock(url)
    assert again is not None
    again.acquire()
    again.release()


MIGRATE = """
import pathlib, sys, time
from storage import migration
from storage.database import build_engine
url, here, n = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
engine = build_engine(url)
(here / f"ready-{sys.argv[4]}").touch()
while len(list(here.glob("ready-*"))) < n:  # all imported: migrate at the same moment
    time.sleep(0.01)
migration.upgrade(engine)
print(migration.current_revision(engine))
"""


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_replicas_starting_together_migrate_one_after_the_other(
        database_url: str, tmp_path: Path) -> None:
    """Separate processes, as replicas are (Alembic's context is per process)."""
    count = 3
    procs = [subprocess.Popen(
        [sys.executable, "-c", MIGRATE, database_url, str(tmp_path), str(count), str(index)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for index in range(count)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * count, [err[-800:] for _, err in results]
    assert [out.strip() for out, _ in results] == [migration.head_revision()] * count
