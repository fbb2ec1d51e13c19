"""`reading`: snapshot transactions for polls, refused any write by the database itself, and
on SQLite never holding the write lock, so a writer is never queued behind a poll."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from bot.alerts import deliveries
from bot.db.engine import make_session_factory, reading, unit_of_work
from bot.db.models import RawDelivery

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def count(session) -> int:
    return session.execute(select(func.count()).select_from(RawDelivery)).scalar_one()


def test_a_write_inside_reading_is_refused_and_the_connection_writes_again_afterwards(engine):
    factory = make_session_factory(engine)
    with pytest.raises(DBAPIError), reading(factory) as session:
        deliveries.store(session, "alertmanager", b"{}", {}, NOW)
    with unit_of_work(factory) as session:  # the pooled connection is writable again
        deliveries.store(session, "alertmanager", b"{}", {}, NOW)
    with reading(factory) as session:
        assert count(session) == 1


def test_a_writer_commits_while_a_reading_transaction_is_open(engine):
    factory = make_session_factory(engine)
    committed = threading.Event()

    def write():
        with unit_of_work(factory) as session:
            deliveries.store(session, "alertmanager", b"{}", {}, NOW)
        committed.set()

    with reading(factory) as session:
        assert count(session) == 0
        writer = threading.Thread(target=write)
        writer.start()
        assert committed.wait(10), "the writer waited for the reader"
        writer.join()
    with reading(factory) as session:
        assert count(session) == 1
