"""Who may run the scheduler's work: one replica at a time on PostgreSQL, one process on SQLite.

Replicas of `tunebridge serve` share one PostgreSQL database and nothing else. Each poll tick
first takes a PostgreSQL advisory lock on a connection of its own and gives it back when the
tick ends, so two ticks never overlap; a replica that dies mid-tick loses its connection and with
it the lock, and the next replica whose interval comes round takes over. SQLite has no such lock
across processes, so `serve` holds an OS file lock next to the database file for its lifetime and
a second scheduler on the same file refuses to start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# The second key is the schema, so deployments (and test schemas) sharing one database never
# contend for each other's lock.
_KEYS = "hashtext(:name), hashtext(coalesce(current_schema(), ''))"
_TRY = text(f"SELECT pg_try_advisory_lock({_KEYS})")
_UNLOCK = text(f"SELECT pg_advisory_unlock({_KEYS})")


_MIGRATE = text(f"SELECT pg_advisory_xact_lock({_KEYS})")


def hold_for_migration(connection: Connection) -> None:
    """Replicas starting together on an empty database migrate one after the other: the
    first takes this transaction-level lock and creates the schema, the others wait for its
    commit and then find the schema at head. No-op on SQLite (one process)."""
    hold_until_commit(connection, "migrate")


def hold_until_commit(connection: Connection, name: str) -> None:
    """A transaction-level lock named `name`: the next holder waits for this transaction's
    commit or rollback and then sees what it wrote. No-op on SQLite (one process, and its
    writers are serialised anyway)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_MIGRATE, {"name": name})


class TickLock(Protocol):
    """Taken before a unit of scheduled work, released after it."""

    def acquire(self) -> bool:
        """True when this process may run the work now; never blocks."""
        ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class AdvisoryLock:
    """A session-level `pg_try_advisory_lock` on a dedicated autocommit connection.

    The connection outlives ticks (no connect per tick) but not the process: when the process
    dies, PostgreSQL ends its session and the lock is free again. A broken connection counts as
    "not the leader this time" and is replaced on the next try.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._connection: Connection | None = None
        self._held = False
        self._guard = threading.Lock()  # ticks run in worker threads; one at a time here

    def acquire(self) -> bool:
        with self._guard:
            if self._held:  # the lock is re-entrant per session: never stack it
                return False
            try:
                connection = self._connect()
                self._held = bool(connection.execute(_TRY, {"name": self.name}).scalar())
            except DBAPIError as exc:
                log.warning("leader lock %s unavailable: %s", self.name, exc.orig)
                self._drop()
            return self._held

    def release(self) -> None:
        with self._guard:
            if not self._held:
                return
            self._held = False
            try:
                assert self._connection is not None
                self._connection.execute(_UNLOCK, {"name": self.name})
            except DBAPIError as exc:  # the session is gone, and the lock with it
                log.warning("leader lock %s release failed: %s", self.name, exc.orig)
                self._drop()

    def close(self) -> None:
        with self._guard:
            self._held = False
            self._drop()

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()  # never hand a session holding a lock back
                self._connection.close()
            except DBAPIError:
                pass
            self._connection = None


class ProcessLock:
    """SQLite: `serve` is the only scheduler on its file (ProcessFileLock sees to it)."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def tick_lock(engine: Engine, name: str) -> TickLock:
    """The lock that fits the database: advisory on PostgreSQL, none needed on SQLite."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name)
    return ProcessLock()


class SchedulerAlreadyRunning(Exception):
    """Another process already runs a scheduler on this SQLite file."""


class ProcessFileLock:
    """An exclusive `flock` on `<database>.scheduler.lock`, held until the process exits.

    The kernel drops it when the process dies, however it dies, so a crash never leaves a stale
    lock behind; the file itself stays and records the last holder's pid for the error message.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SchedulerAlreadyRunning(
                f"{self.path} is locked by pid {holder}: a scheduler already runs on this "
                "SQLite database. SQLite serves one process; stop the other `tunebridge serve`, "
                "give this one its own TUNEBRIDGE_DATA_DIR, or use PostgreSQL "
                "(TUNEBRIDGE_DATABASE_URL) to run several replicas.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sqlite_scheduler_lock(url: str) -> ProcessFileLock | None:
    """The file lock for a SQLite database file, or None (PostgreSQL, in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or \
            parsed.database == ":memory:":
        return None
    database = Path(parsed.database).resolve()
    return ProcessFileLock(database.with_name(database.name + ".scheduler.lock"))
