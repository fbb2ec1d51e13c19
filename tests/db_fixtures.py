"""Database fixtures: every database test runs on SQLite, and on PostgreSQL too when
`DATABASE_URL` points at one (CI sets it). Each test gets a fresh, migrated database: a new
SQLite file, or a new PostgreSQL schema (dropped afterwards) selected through search_path.
Under `CI=true` a missing `DATABASE_URL` fails the run instead of silently testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine, create_engine, text

from bot.config import normalise_database_url
from bot.db import migrate
from bot.db.engine import make_engine

IN_CI = os.environ.get("CI", "").lower() == "true"


def postgres_base_url() -> str | None:
    url = os.environ.get("DATABASE_URL") or os.environ.get("OPSBOT_DATABASE_URL")
    if url and url.startswith(("postgres://", "postgresql")):
        return normalise_database_url(url)
    if IN_CI:
        pytest.fail("CI=true but DATABASE_URL does not point at PostgreSQL: the suite must run on both databases")
    return None


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode({"options": f"-csearch_path={schema}"})]))
    return urlunsplit(parts._replace(query=query))


def backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql")) or IN_CI:
        params.append(pytest.param("postgresql", id="postgresql"))
    return params


@pytest.fixture(params=backends())
def database_url(request, tmp_path) -> Iterator[str]:
    """A URL of an empty database of the parametrised kind, unique to this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'opsbot.sqlite3'}"
        return
    base = postgres_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _with_search_path(base, schema)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    """A migrated engine over the test's database."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
