import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from bot.db import migrate
from bot.db.engine import make_engine
from bot.db.models import Base


def test_upgrade_creates_the_schema_the_models_describe(database_url):
    engine = make_engine(database_url)
    assert migrate.schema_problem(engine) == "the database has no schema yet: run `opsbot db upgrade`"
    migrate.upgrade(engine)
    assert migrate.schema_problem(engine) is None
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], "models and migrations disagree"
    migrate.upgrade(engine)  # idempotent
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_downgrade_removes_everything(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    from alembic import command

    config = migrate.alembic_config(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    engine.dispose()


def _insert_entry(connection):
    connection.execute(text(
        "INSERT INTO incidents (id, group_key, group_key_hash, is_open, status, source, title, severity,"
        " alert_count, firing_count, links, created_at, updated_at, card_version, card_synced_version, card_attempts)"
        " VALUES (1, 'g', 'h', true, 'open', 'test', 't', 'info', 0, 0, '{}', :now, :now, 1, 0, 0)"
    ), {"now": "2026-11-21 10:00:00"})
    connection.execute(text(
        "INSERT INTO timeline_entries (incident_id, seq, at, kind, actor, payload, prev_hash, hash)"
        " VALUES (1, 1, :now, 'k', 'a', '{}', 'p', 'h')"
    ), {"now": "2026-11-21 10:00:00"})


@pytest.mark.parametrize("statement", ["UPDATE timeline_entries SET kind = 'edited'", "DELETE FROM timeline_entries"])
def test_the_database_refuses_to_edit_or_delete_timeline_rows(engine, statement):
    with engine.begin() as connection:
        _insert_entry(connection)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT kind FROM timeline_entries")).scalar_one() == "k"


def test_one_open_incident_per_group_key_is_enforced_by_the_schema(engine):
    insert = text(
        "INSERT INTO incidents (group_key, group_key_hash, is_open, status, source, title, severity, alert_count,"
        " firing_count, links, created_at, updated_at, card_version, card_synced_version, card_attempts)"
        " VALUES ('g', 'h', :open, 'open', 'test', 't', 'info', 0, 0, '{}', :now, :now, 1, 0, 0)"
    )
    now = "2026-11-21 10:00:00"
    with engine.begin() as connection:
        connection.execute(insert, {"open": True, "now": now})
        connection.execute(insert, {"open": None, "now": now})  # closed ones never collide
        connection.execute(insert, {"open": None, "now": now})
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(insert, {"open": True, "now": now})


def test_a_schema_newer_than_the_code_keeps_replicas_ready(engine):
    """During a rolling upgrade the migration Job runs first; old replicas must stay ready."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    assert migrate.schema_problem(engine) is None

