"""Connections for the `postgres.*` operations: the write side of a configured database.

`SqlWriter` opens connections to the databases of the digests file's `database` section that
name a `dsn_write_env` (the environment variable holding a DSN whose role may create indexes on
the tables; separate from the digest's read-only `dsn_env`). The kit carries only the mapping
name -> variable name (`RemediationKit.databases`); the DSN is read from the environment when a
connection opens, so it never reaches a proposal, the timeline or Slack.

Invariants:
- Autocommit, always: `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY` cannot run inside
  a transaction block. Each statement is sent alone (one statement per `execute`).
- `lock_timeout` is set on every write session and `statement_timeout` is off (0) unless the
  step configures one: a concurrent build may legitimately take hours.
- Every session carries `application_name = <tag>` (`opsbot-step-<proposal id>`), so that a
  recovery can tell a statement still running on the server from one that ended.
- While a write runs, a heartbeat thread calls the executor's lease renewal every
  `heartbeat_seconds`: the step's lease never lapses under a live statement. The heartbeat says
  False once the lease is lost (another worker recovered the step); the statement is then left
  to finish (cancelling a concurrent build would leave an INVALID index) and `HeartbeatStopped`
  is raised after it, so this worker records nothing more.
- Failures are `WriteError`s with the kinds the executor knows (conflict, unavailable, timeout,
  forbidden, not_found, invalid, refused); the DSN's password is scrubbed from every message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from bot.remediation.kube_write import WriteError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECONDS = 10
MAX_MESSAGE_CHARS = 300
DEFAULT_TAG = "opsbot-remediation"
SQLSTATE_KINDS: Mapping[str, str] = {
    "42P07": "conflict",  # duplicate_table: a relation of that name exists
    "40P01": "conflict",  # deadlock_detected
    "42501": "forbidden",  # insufficient_privilege (CREATE INDEX needs the table's owner)
    "42P01": "not_found",  # undefined_table
    "42703": "not_found",  # undefined_column
    "3F000": "not_found",  # invalid_schema_name
    "55P03": "timeout",  # lock_not_available (lock_timeout)
    "57014": "timeout",  # query_canceled (statement_timeout)
    "25006": "refused",  # read_only_sql_transaction (a standby, or a read-only role)
    "53100": "refused",  # disk_full
}

Heartbeat = Callable[[], bool]  # renew the lease; False once it is lost


class HeartbeatStopped(Exception):
    """The lease was lost while the statement ran: another worker recovered the step."""


@dataclass(frozen=True)
class Executed:
    seconds: float


def _scrub(text: str, dsn: str | None) -> str:
    if dsn:
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError:
            password = None
        if password:
            text = text.replace(str(password), "••••••")
    first = text.strip().splitlines()[0] if text.strip() else "no message"
    return first[:MAX_MESSAGE_CHARS]


def error_of(exc: Exception, what: str, dsn: str | None) -> WriteError:
    """A psycopg failure as a `WriteError` whose kind says what a retry or a person can do."""
    state = getattr(exc, "sqlstate", None)
    if state in SQLSTATE_KINDS:
        kind = SQLSTATE_KINDS[state]
    elif isinstance(exc, psycopg.OperationalError) or state is None:
        kind = "unavailable"  # the connection failed or dropped: the server may still be working
    else:
        kind = "invalid"
    return WriteError(kind, f"{what}: {_scrub(str(exc), dsn)}")


@dataclass(frozen=True)
class SqlWriter:
    """Sessions on the configured databases, as `tag`; `heartbeat` set by `leased`."""

    databases: Mapping[str, str]  # database name -> environment variable holding its write DSN
    tag: str = DEFAULT_TAG
    environ: Mapping[str, str] | None = None  # None: os.environ, read at each connection
    heartbeat: Heartbeat | None = None
    heartbeat_seconds: float = 30.0

    def leased(self, heartbeat: Heartbeat, every_seconds: float) -> SqlWriter:
        """This writer, with `heartbeat` called every `every_seconds` while a write runs."""
        return replace(self, heartbeat=heartbeat, heartbeat_seconds=max(0.2, every_seconds))

    def dsn(self, database: str) -> str:
        variable = self.databases.get(database)
        if variable is None:
            configured = ", ".join(sorted(self.databases)) or "none"
            raise WriteError("invalid", f"database {database} has no dsn_write_env in the digests file's database "
                                        f"section (databases with one: {configured})")
        value = (self.environ if self.environ is not None else os.environ).get(variable)
        if not value:
            raise WriteError("invalid", f"the environment variable {variable} (the write DSN of {database}) is not set")
        return value

    def connect(self, database: str) -> psycopg.Connection:
        dsn = self.dsn(database)
        try:
            return psycopg.connect(dsn, autocommit=True, application_name=self.tag, row_factory=dict_row,
                                   connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            raise error_of(exc, f"connect to {database}", dsn) from None

    def query(self, database: str, statement: sql.Composable | str, params: Mapping[str, Any] | None = None
              ) -> list[dict[str, Any]]:
        """The rows of one read (`params` bound by the driver)."""
        dsn = self.dsn(database)
        connection = self.connect(database)
        try:
            with connection:
                return list(connection.execute(statement, params).fetchall())
        except psycopg.Error as exc:
            raise error_of(exc, f"read {database}", dsn) from None

    def execute(self, database: str, statement: sql.Composable, *, lock_timeout_ms: int,
                statement_timeout_ms: int = 0) -> Executed:
        """Run one statement outside any transaction, the lease renewed meanwhile."""
        dsn = self.dsn(database)
        connection = self.connect(database)
        stop, lost = threading.Event(), threading.Event()
        beating = self._start_heartbeat(stop, lost)
        started = time.monotonic()
        try:
            with connection:
                connection.execute("SELECT set_config('lock_timeout', %s, false), "
                                   "set_config('statement_timeout', %s, false)",
                                   (f"{int(lock_timeout_ms)}ms", f"{int(statement_timeout_ms)}ms"))
                connection.execute(statement)
        except psycopg.Error as exc:
            raise error_of(exc, f"on {database}", dsn) from None
        finally:
            stop.set()
            if beating is not None:
                beating.join(timeout=5)
        if lost.is_set():
            raise HeartbeatStopped(f"the lease was lost while the statement ran on {database}")
        return Executed(round(time.monotonic() - started, 3))

    def _start_heartbeat(self, stop: threading.Event, lost: threading.Event) -> threading.Thread | None:
        beat = self.heartbeat
        if beat is None:
            return None

        def run() -> None:
            while not stop.wait(self.heartbeat_seconds):
                try:
                    held = beat()
                except Exception as exc:  # noqa: BLE001 - a failed renewal is tried again at the next beat
                    log.warning("%s: renewing the lease failed (%s), trying again", self.tag, exc)
                    continue
                if not held:
                    lost.set()
                    return

        thread = threading.Thread(target=run, name=f"{self.tag}-heartbeat", daemon=True)
        thread.start()
        return thread
