"""Schema migrations with Alembic, applied on request (`opsbot db upgrade`), never silently.

`serve` refuses to start on a schema that is not at head, naming the command that fixes it:
an upgrade is a deliberate step (a migration Job in Kubernetes), not a side effect of a
rolling restart where old and new replicas share one database.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from bot.db.engine import READ_ONLY

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
# Alembic's migration environment (`alembic.context`) is process-global: two threads migrating
# two databases at once (`opsbot eval --jobs 2`) would trample it. One at a time per process.
_ALEMBIC = threading.Lock()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` over the engine's database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with _ALEMBIC, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def schema_problem(engine: Engine) -> str | None:
    """None when the schema is at this code's head or newer; otherwise one line saying what to do.

    A newer schema (a revision this code does not know) is accepted: during a rolling upgrade
    the migration Job runs first, and the old replicas must stay ready until they are replaced.
    Migrations are therefore written expand-then-contract, so the previous release keeps working.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no schema yet: run `opsbot db upgrade`"
    if current not in _known_revisions():
        return None
    return f"the database schema is at {current}, this version needs {head}: run `opsbot db upgrade`"
