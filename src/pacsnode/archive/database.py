"""Connecting to the index database and bringing its schema up to date.

SQLite and PostgreSQL must behave the same. For SQLite that takes WAL (readers never
wait for the writer), ``synchronous=FULL`` (a commit is on disk before C-STORE answers
success) and ``BEGIN IMMEDIATE`` (two writers queue on the lock instead of deadlocking
when both upgrade from a read lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_TIMEOUT_MS = 10_000
"""How long PostgreSQL waits for a lock (a table an administrator locked) before the
statement fails and the index counts as unavailable: well within the 30 s a DIMSE
peer commonly waits for an answer, so that it gets A700 rather than nothing."""


def now() -> datetime:
    """The time the index records: aware, in UTC."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _configure_sqlite(engine: Engine, begin: str | None, synchronous: str = "FULL") -> None:
    """Pragmas on every connection, and the ``begin`` statement of each transaction;
    without one, every statement is its own transaction (a single read is consistent
    on its own)."""

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # LIKE must be case-sensitive as on PostgreSQL: case-insensitive matching uses
        # the upper-cased copies of the columns instead.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    if begin is None:
        return

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        # On the DBAPI cursor: through exec_driver_sql, SQLAlchemy's execution
        # machinery cost more than the BEGIN itself, on every ingested instance.
        try:
            connection.connection.cursor().execute(begin)
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(begin, (), exc, sqlite3.Error) from exc


@dataclass(frozen=True)
class Database:
    """Two engines onto one database: reads must not take SQLite's write lock.

    On PostgreSQL both are the same engine.
    """

    writer: Engine
    reader: Engine
    write_lock: AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)
    """Held around write transactions of the index's hot path: on SQLite it makes the
    writers of every thread and process of a node queue, each handed over the moment
    the lock is free, where SQLite's own busy handler sleeps 1, 2, 5, 10 ms… between
    tries. PostgreSQL queues writers itself."""
    indexer: Engine | None = None
    """SQLite: the writer of :meth:`indexing`, committing without waiting for the disk
    (``synchronous=NORMAL``), which :attr:`wal_sync` then makes durable."""
    wal_sync: WalSync | None = None
    quick_reader: Engine | None = None
    """The reader in autocommit, for a bounded read in one statement. On PostgreSQL in
    one round trip (the reader's streamed reads take a transaction and a server-side
    cursor: BEGIN, DECLARE, FETCH, CLOSE, ROLLBACK, ~1 ms on loopback against ~0.2 ms);
    on SQLite without a BEGIN and a ROLLBACK around it (a fifth of a C-FIND's SQL)."""

    @contextmanager
    def indexing(self) -> Iterator[Connection]:
        """A write transaction of the hot path (an instance indexed), durable when the
        block ends.

        On SQLite the commit only writes the WAL, and the lock is given back at once;
        the WAL is fsynced after, outside it, one fsync for every commit made until it
        began. With the fsync inside the lock, four associations queued behind each
        other's fsyncs (300 CT over four associations: 280 → 320 instances/s). The
        connection is taken from the pool and given back outside the lock too.
        """
        engine = self.indexer or self.writer
        with engine.connect() as connection, self.write_lock, connection.begin():
            yield connection
        if self.wal_sync is not None:
            self.wal_sync.after_commit()

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()
        if self.indexer is not None:
            self.indexer.dispose()
        if self.quick_reader is not None:
            self.quick_reader.dispose()


class WalSync:
    """Group commit of the WAL: a commit waits for an fsync that began after it, and
    one fsync covers every commit made before it began, so that commits arriving
    together share one trip to the disk."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self._changed = threading.Condition()
        self._committed = 0
        self._synced = 0
        self._syncing = False

    def after_commit(self) -> None:
        with self._changed:
            self._committed += 1
            mine = self._committed
            while self._synced < mine:
                if self._syncing:
                    self._changed.wait()
                    continue
                self._syncing, covered = True, self._committed
                self._changed.release()
                try:
                    _fsync(self.wal)
                finally:
                    self._changed.acquire()
                    self._syncing = False
                    self._changed.notify_all()
                self._synced = max(self._synced, covered)


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # checkpointed into the database (synced) and removed
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class WriterLock:
    """One writer at a time among the threads of this process (a mutex) and among the
    processes of the node (``flock`` on a file beside the database)."""

    def __init__(self, path: Path | None) -> None:
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if path is not None else None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def open_database(url: str) -> Database:
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        writer = sa.create_engine(url, pool_size=32, max_overflow=32, pool_timeout=60)
        _configure_sqlite(writer, "BEGIN IMMEDIATE")
        reader = sa.create_engine(url, pool_size=32, max_overflow=32, pool_timeout=60)
        _configure_sqlite(reader, "BEGIN")
        if not database:  # in memory: nothing to make durable
            return Database(writer, reader, WriterLock(None))
        indexer = sa.create_engine(url, pool_size=32, max_overflow=32, pool_timeout=60)
        _configure_sqlite(indexer, "BEGIN IMMEDIATE", synchronous="NORMAL")
        quick = sa.create_engine(
            url, pool_size=32, max_overflow=32, pool_timeout=60, pool_reset_on_return=None
        )
        _configure_sqlite(quick, None)
        lock = WriterLock(Path(f"{database}.write-lock"))
        wal = WalSync(Path(f"{database}-wal"))
        return Database(writer, reader, lock, indexer, wal, quick_reader=quick)
    options = {"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"}
    engine = sa.create_engine(
        url, pool_size=16, max_overflow=48, pool_pre_ping=True, connect_args=options
    )
    # No ping before each use, which is a round trip of its own: a read that meets a
    # connection the server closed is run again (Archive._found).
    quick = sa.create_engine(
        url,
        pool_size=16,
        max_overflow=48,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,  # autocommit: never a transaction to roll back
        connect_args=options,
    )
    return Database(engine, engine, quick_reader=quick)


def has_schema(url: str) -> bool:
    """Whether the index at ``url`` exists and was set up by pacsnode, checked without
    creating anything (SQLite makes a file on connect, so its file is looked for)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return bool(parsed.database) and Path(str(parsed.database)).is_file()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return sa.inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()


_UNAVAILABLE_SQLSTATES = ("08", "40", "53", "55P03", "57", "58")
"""PostgreSQL error classes of a database that cannot serve us now: connection lost,
transaction rolled back for a conflict, out of disk or memory, lock timeout, shut down
or cancelled, I/O error. Any other class refused the statement itself."""
_UNAVAILABLE_SQLITE = (
    "SQLITE_BUSY",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_LOCKED",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
)
"""SQLite's result codes for the same: busy or locked, out of disk or memory, I/O."""


def unavailable(exc: sa.exc.SQLAlchemyError) -> bool:
    """Whether a database error means the index is out of reach or out of resources
    (try again later), rather than that it refused the update (a constraint, a data
    error, a permission, a trigger)."""
    if isinstance(exc, sa.exc.TimeoutError):  # no connection free in the pool
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)
    name = str(getattr(exc.orig, "sqlite_errorname", ""))
    if name:
        return any(name == base or name.startswith(f"{base}_") for base in _UNAVAILABLE_SQLITE)
    return isinstance(exc, sa.exc.OperationalError)


def conflict(exc: sa.exc.DBAPIError) -> bool:
    """Whether a write failed only because a concurrent transaction got there first (a
    unique key taken meanwhile, a serialization failure, a deadlock): worth running
    again, unlike an index that is out of reach or refuses the update."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    return str(getattr(exc.orig, "sqlstate", "") or "").startswith("40")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


MIGRATION_LOCK = 0x7061_6373
"""The PostgreSQL advisory lock the nodes of a cluster take in turn to migrate."""


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there.

    Nodes of a cluster (and the worker processes of a node) that start together
    migrate one after the other, under an advisory lock held until the transaction
    ends: the second finds the schema made, instead of failing to make it again."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
