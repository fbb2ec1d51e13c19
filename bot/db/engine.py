"""Engines and sessions. One engine per process role; no module-level engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from bot.db.urls import normalise_database_url
from bot.db.writer_lock import WriterLock

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITER_WAIT_SECONDS = 10
READ_ONLY = "opsbot_read_only"  # execution option of `reading` sessions
URGENT = "opsbot_urgent_write"  # execution option of `unit_of_work(urgent=True)` sessions
QUERY_ONLY = "opsbot_query_only"  # set on a pooled SQLite connection left in PRAGMA query_only


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine tuned for the bot's many short transactions from worker threads.

    SQLite: WAL so readers never block the writer, a busy timeout instead of instant
    "database is locked", foreign keys on, and BEGIN IMMEDIATE so a read-then-write
    transaction takes the write lock up front (no lock upgrade deadlocks), except in `reading`
    sessions, which take a snapshot and no lock. Writers queue on a `WriterLock` before BEGIN
    (threads on a Python lock, processes on a file lock; webhooks first): SQLite's own busy
    handler sleeps in growing steps while it waits, which turned write contention into
    second-long webhook latencies.
    """
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # let SQLAlchemy's events issue BEGIN
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        database = engine.url.database
        shared = database and database != ":memory:" and not database.startswith("file:")
        writer = WriterLock(os.path.abspath(database) if shared else None, WRITER_WAIT_SECONDS)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:
            if connection.get_execution_options().get(READ_ONLY):
                connection.info[QUERY_ONLY] = True
                connection.exec_driver_sql("PRAGMA query_only=1")  # a write fails instead of locking
                connection.exec_driver_sql("BEGIN")  # deferred: a WAL snapshot, no write lock
                return
            if connection.info.pop(QUERY_ONLY, False):
                connection.exec_driver_sql("PRAGMA query_only=0")
            raw = _raw(connection.connection)
            if writer.acquire(bool(connection.get_execution_options().get(URGENT))):
                holder[0] = raw
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release(raw)
                raise

        holder: list = [None]  # the DBAPI connection whose transaction holds the writer lock

        def _then_release(method):
            def run(dbapi_connection) -> None:
                try:
                    method(dbapi_connection)
                finally:
                    _release(_raw(dbapi_connection))
            return run

        def _release(raw) -> None:
            if raw is not None and holder[0] is raw:
                holder[0] = None
                writer.release()

        # The lock is let go after the database's own COMMIT or ROLLBACK, not at SQLAlchemy's
        # commit/rollback events (they fire before it): otherwise the next writer's BEGIN
        # IMMEDIATE met SQLite's lock still held and slept in its busy handler. Wrapping this
        # engine's own dialect object also covers the pool's rollback of a returned connection.
        dialect = engine.dialect
        dialect.do_commit = _then_release(dialect.do_commit)
        dialect.do_rollback = _then_release(dialect.do_rollback)

        @event.listens_for(engine, "invalidate")
        def _sqlite_invalidated(dbapi_connection, _record, _exception) -> None:
            _release(dbapi_connection)  # a connection dropped mid-transaction holds nothing

        @event.listens_for(engine, "close")
        def _sqlite_closed(dbapi_connection, _record) -> None:
            _release(dbapi_connection)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def _raw(connection):
    """The driver's connection behind the pool's proxy (or the driver's connection itself)."""
    return getattr(connection, "dbapi_connection", connection)


AUDIT_KEY_INFO = "audit_key"  # Session.info key of the timeline's audit key


def make_session_factory(engine: Engine, audit_key: bytes | None = None) -> sessionmaker[Session]:
    """Sessions over `engine`; `audit_key` (see `bot.timeline.chain`) signs the timeline entries
    its sessions append (each session gets it in `Session.info`)."""
    return sessionmaker(engine, expire_on_commit=False, info={AUDIT_KEY_INFO: audit_key} if audit_key else None)


@contextmanager
def unit_of_work(factory: sessionmaker[Session], urgent: bool = False) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any exception.
    `urgent`: somebody waits for this write (a webhook's sender); on SQLite it is queued ahead
    of the workers' writes (see `bot.db.writer_lock`)."""
    with factory() as session, session.begin():
        if urgent:
            session.connection(execution_options={URGENT: True})
        yield session


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction for reads only (the workers' "what is due?" polls, metrics, a click's
    checks, the audit): every statement in it sees one snapshot (SQLite's WAL snapshot,
    PostgreSQL REPEATABLE READ), the database refuses any write in it (SQLite `query_only`,
    PostgreSQL READ ONLY), and it is always rolled back. On SQLite it takes no write lock, so
    polling never queues a webhook behind it. Objects read in it are expired when it ends:
    copy out what is needed inside the block."""
    with factory() as session:
        try:
            options: dict = {READ_ONLY: True}
            if session.get_bind().dialect.name == "postgresql":
                options.update(postgresql_readonly=True, isolation_level="REPEATABLE READ")
            session.connection(execution_options=options)
            yield session
        finally:
            session.rollback()
