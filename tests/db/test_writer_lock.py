"""SQLite's writer lock (`bot.db.writer_lock`): shared by processes through a file lock the
kernel frees when its holder dies, with urgent writes (webhooks) queued ahead of the workers'."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.alerts import deliveries
from bot.db import migrate
from bot.db.engine import make_engine, make_session_factory, unit_of_work
from bot.db.models import RawDelivery
from bot.db.writer_lock import WriterLock, held_elsewhere

NOW = datetime(2026, 12, 3, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "opsbot.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def _hold_a_write_transaction(path: str, holding, release) -> None:
    """In a child process: store a delivery and keep the transaction open until told."""
    engine = make_engine(f"sqlite:///{path}")
    with unit_of_work(make_session_factory(engine)) as session:
        deliveries.store(session, "alertmanager", b'{"from": "child"}', {}, NOW)
        holding.set()
        release.wait(60)
    engine.dispose()


def _file_lock_is_free(path) -> bool:
    return not held_elsewhere(f"{path}.lock")


def _store_in_thread(factory, body: bytes, urgent: bool = False, order: list | None = None) -> threading.Thread:
    def store():
        with unit_of_work(factory, urgent=urgent) as session:
            deliveries.store(session, "alertmanager", body, {}, NOW)  # takes the lock
            if order is not None:
                order.append(body)

    thread = threading.Thread(target=store)
    thread.start()
    return thread


def _bodies(factory) -> list[bytes]:
    with unit_of_work(factory) as session:
        return list(session.execute(select(RawDelivery.body).order_by(RawDelivery.id)).scalars())


def test_a_write_in_another_process_holds_the_file_lock_and_ours_follows_it(sqlite_file):
    holding, release = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_hold_a_write_transaction, args=(str(sqlite_file), holding, release))
    child.start()
    try:
        assert holding.wait(60), "the child never began its transaction"
        assert not _file_lock_is_free(sqlite_file), "the child's transaction holds the shared writer lock"
        engine = make_engine(f"sqlite:///{sqlite_file}")
        factory = make_session_factory(engine)
        ours = _store_in_thread(factory, b'{"from": "parent"}')
        ours.join(0.5)
        assert ours.is_alive(), "our write waits while the child's transaction is open"
        release.set()
        ours.join(30)
        assert not ours.is_alive()
        assert _bodies(factory) == [b'{"from": "child"}', b'{"from": "parent"}']
        assert _file_lock_is_free(sqlite_file), "released once the transactions ended"
        engine.dispose()
    finally:
        release.set()
        child.join(30)


def test_a_writer_that_dies_mid_transaction_blocks_nobody(sqlite_file):
    holding, release = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_hold_a_write_transaction, args=(str(sqlite_file), holding, release))
    child.start()
    assert holding.wait(60)
    child.kill()
    child.join(30)
    engine = make_engine(f"sqlite:///{sqlite_file}")
    factory = make_session_factory(engine)
    ours = _store_in_thread(factory, b'{"from": "parent"}')
    ours.join(30)
    assert not ours.is_alive(), "the kernel freed the dead process's lock"
    assert _bodies(factory) == [b'{"from": "parent"}'], "the dead transaction left nothing behind"
    engine.dispose()


def test_an_urgent_write_goes_before_the_workers_already_queued(sqlite_file):
    engine = make_engine(f"sqlite:///{sqlite_file}")
    factory = make_session_factory(engine)
    order: list[bytes] = []
    release = threading.Event()
    holding = threading.Event()

    def hold():
        with unit_of_work(factory) as session:
            deliveries.store(session, "alertmanager", b"holder", {}, NOW)
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(30)
    workers = [_store_in_thread(factory, f"worker {index}".encode(), order=order) for index in range(3)]
    for thread in workers:
        thread.join(0.2)  # let them queue
    webhook = _store_in_thread(factory, b"webhook", urgent=True, order=order)
    webhook.join(0.2)
    release.set()
    for thread in [holder, webhook, *workers]:
        thread.join(30)
    assert order[0] == b"webhook"
    assert sorted(order[1:]) == [b"worker 0", b"worker 1", b"worker 2"]
    engine.dispose()


def test_workers_step_aside_for_urgent_writers_elsewhere_for_a_bounded_time(sqlite_file):
    """An urgent marker held for ever (another process flooding webhooks) delays an ordinary
    write by at most the head start; it is never starved."""
    marker = os.open(f"{sqlite_file}.lock-urgent", os.O_RDONLY | os.O_CREAT)
    fcntl.flock(marker, fcntl.LOCK_SH)
    try:
        engine = make_engine(f"sqlite:///{sqlite_file}")
        factory = make_session_factory(engine)
        worker = _store_in_thread(factory, b"worker")
        worker.join(30)
        assert not worker.is_alive()
        with unit_of_work(factory) as session:
            assert session.execute(select(func.count()).select_from(RawDelivery)).scalar_one() == 1
        engine.dispose()
    finally:
        os.close(marker)


def test_an_in_memory_database_only_queues_threads():
    lock = WriterLock(None, wait_seconds=1)
    assert lock.path is None
    assert lock.acquire() and not lock.acquire(), "the second waits out its bound and holds nothing"
    lock.release()
    assert lock.acquire(urgent=True)
    lock.release()


def test_a_holder_that_never_lets_go_delays_a_writer_only_for_the_bounded_wait(tmp_path):
    """A stopped process or a leaked transaction holding the file: the wait runs out, nothing
    is held, and the caller falls back to SQLite's own busy handling."""
    lock = WriterLock(str(tmp_path / "opsbot.sqlite3"), wait_seconds=0.3)
    stuck = os.open(lock.path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(stuck, fcntl.LOCK_EX)
    try:
        assert not lock.acquire() and not lock.acquire(urgent=True)
    finally:
        os.close(stuck)
    assert lock.acquire(), "the thread turn was given back each time"
    lock.release()


def test_a_connection_dropped_mid_transaction_releases_the_writer_lock(sqlite_file):
    engine = make_engine(f"sqlite:///{sqlite_file}")
    factory = make_session_factory(engine)
    with pytest.raises(SQLAlchemyError), unit_of_work(factory) as session:
        deliveries.store(session, "alertmanager", b"lost", {}, NOW)
        assert not _file_lock_is_free(sqlite_file)
        session.connection().invalidate()
        deliveries.store(session, "alertmanager", b"after", {}, NOW)
    assert _file_lock_is_free(sqlite_file)
    writer = _store_in_thread(factory, b"next")
    writer.join(30)
    assert not writer.is_alive()
    assert _bodies(factory) == [b"next"]
    engine.dispose()
