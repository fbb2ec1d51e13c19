"""The database-health digest: statements, sequential scans, connections, bloat, size, replication.

For each configured PostgreSQL database the builder reports the slowest and most time-consuming
statements from pg_stat_statements with their plans, large tables read by sequential scans
(with a `CREATE INDEX CONCURRENTLY` suggestion when a selective filtered column lacks an index),
connection saturation, table and index bloat (estimates), the database's size and growth, and
replication lag.

Invariants:
- Read-only: the DSN should name a read-only role, and the session is read-only anyway
  (`default_transaction_read_only` in the connection options, `SET SESSION CHARACTERISTICS`),
  with statement and lock timeouts. An index suggestion is a `Fix` for a DBA to approve through
  the `create-index` runbook; the digest never runs it.
- A failure is a problem line naming the database and the section, never an exception: an
  unreachable database, a denied permission or a failing query leaves the other sections and
  databases reported. The DSN never appears in a line; its password is scrubbed from messages.
- Keys are `database/<name>/<section>/<object>` with the section ids of `SECTIONS`, stable
  across runs (statements by queryid, tables by schema.table).
- `summary["size_bytes:<name>"]` is each database's size; the next run reads it back through
  `context.previous_summary` to compute growth and, with `disk_bytes`, a fill forecast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.digests.database import explain, indexes, queries
from bot.digests.model import SEVERITY_ORDER, DigestContext, DigestReport, Finding

SECTIONS: Mapping[str, str] = {
    "slowest": "Slowest statements",
    "total-time": "Most total time",
    "seq-scans": "Sequential scans on large tables",
    "connections": "Connections",
    "bloat": "Bloat",
    "size": "Size",
    "replication": "Replication",
}
READ_ONLY_GRANTS = "grant the digest's role pg_monitor (statistics) and pg_read_all_data (plans)"
TABLES_LISTED = 20
MIN_GROWTH_INTERVAL = timedelta(hours=1)
FORECAST_HORIZON_DAYS = 3650
MAX_ERROR_CHARS = 300
INDEX_TUPLE_OVERHEAD_BYTES = 12  # IndexTupleData header (8) + line pointer (4)
PAGE_OVERHEAD_BYTES = 40  # page header (24) + B-tree special space (16)


class DatabaseTarget(BaseModel):
    """One database to check, and the thresholds its findings use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="how the digest names the database (headings, finding keys)")
    dsn_env: str | None = Field(None, description="environment variable holding the DSN of a read-only role "
                                                  "(preferred: keeps the password out of the file)")
    dsn: str | None = Field(None, description="the DSN itself, when it holds no password")
    dsn_write_env: str | None = Field(
        None, description="environment variable holding the DSN of a role that owns the tables, used only by the "
                          "create-index runbook after approval by the dba group (the digest itself never writes)")
    explain: bool = Field(True, description="EXPLAIN the top statements (never executes them)")
    explain_analyze_selects: bool = Field(
        False, description="EXPLAIN ANALYZE read-only SELECTs without parameters, in a rolled-back transaction")
    top: int = Field(5, ge=1, le=50, description="statements listed per ranking")
    min_calls: int = Field(5, ge=1, description="statements called fewer times are not ranked")
    slow_mean_ms: float = Field(500, gt=0, description="a mean time from which a statement is a warning")
    large_table_rows: int = Field(100_000, ge=1, description="live rows from which a table counts as large")
    min_seq_scans: int = Field(100, ge=1, description="sequential scans since the statistics reset to report")
    min_seq_scan_share: float = Field(0.5, ge=0, le=1, description="share of the table's scans that are sequential")
    max_selectivity: float = Field(0.05, gt=0, le=1,
                                   description="an index is suggested when an equality keeps at most this share")
    dead_tuple_ratio: float = Field(0.2, gt=0, le=1, description="dead/(live+dead) tuples from which a table is bloated")
    min_dead_tuples: int = Field(10_000, ge=0, description="fewer dead tuples are never reported")
    index_bloat_ratio: float = Field(0.5, gt=0, lt=1, description="estimated wasted share from which an index is bloated")
    min_index_bytes: int = Field(10 * 2**20, ge=0, description="smaller indexes are not estimated")
    connections_warning_ratio: float = Field(0.8, gt=0, le=1)
    connections_critical_ratio: float = Field(0.95, gt=0, le=1)
    replication_lag_warning_seconds: float = Field(30, ge=0)
    replication_lag_critical_seconds: float = Field(300, ge=0)
    disk_bytes: int | None = Field(None, gt=0, description="space available to this database, for a fill forecast")
    fill_warning_days: float = Field(30, ge=0)
    fill_critical_days: float = Field(7, ge=0)
    statement_timeout_ms: int = Field(5000, ge=100, description="per statement, digest queries and EXPLAINs")
    lock_timeout_ms: int = Field(1000, ge=10)
    connect_timeout_seconds: int = Field(5, ge=1, le=60)

    @model_validator(mode="after")
    def _one_dsn(self) -> DatabaseTarget:
        if (self.dsn_env is None) == (self.dsn is None):
            raise ValueError(f"database {self.name}: set exactly one of dsn_env (preferred) and dsn")
        if self.connections_warning_ratio > self.connections_critical_ratio:
            raise ValueError("connections_warning_ratio must not exceed connections_critical_ratio")
        return self


class DatabaseConfig(BaseModel):
    """The `database` section of the digests file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    databases: list[DatabaseTarget] = Field(default_factory=list, description="the databases to check")

    @model_validator(mode="after")
    def _unique_names(self) -> DatabaseConfig:
        names = [target.name for target in self.databases]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"database names must be unique: {', '.join(repeated)}")
        return self


@dataclass
class _Run:
    """What one build accumulates across databases."""

    context: DigestContext
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    queries: dict[str, None] = field(default_factory=dict)
    attachments: list = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)


@dataclass
class _Database:
    """One open session and what is known about its server."""

    target: DatabaseTarget
    connection: psycopg.Connection
    version_num: int
    version: str
    in_recovery: bool
    secrets: tuple[str, ...]
    scans: list[explain.ScanNode] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)

    def fetch(self, run: _Run, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        run.queries[queries.listed(sql)] = None
        return self.connection.execute(sql, dict(params or {}), prepare=False).fetchall()

    def key(self, section: str, subject: str) -> str:
        return f"database/{self.target.name}/{section}/{subject}"


def build(config: DatabaseConfig, context: DigestContext) -> DigestReport:
    run = _Run(context)
    for target in config.databases:
        try:
            _check_database(target, run)
        except Exception as exc:  # the report must come whatever one database does
            run.problems.append(f"{target.name}: the check stopped early: {type(exc).__name__}")
    return _assemble(config, run)


def _check_database(target: DatabaseTarget, run: _Run) -> None:
    dsn = target.dsn if target.dsn is not None else os.environ.get(target.dsn_env or "")
    if not dsn:
        run.problems.append(f"{target.name}: environment variable {target.dsn_env} is not set (it holds the DSN)")
        return
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        run.problems.append(f"{target.name}: the DSN cannot be parsed (check {target.dsn_env or 'dsn'})")
        return
    secrets = (str(password),) if password else ()
    try:
        connection = _connect(target, dsn)
    except psycopg.Error as exc:
        message = _scrub(exc, secrets)
        refused = any(word in message.lower() for word in ("authentication", "permission denied", "does not exist"))
        run.problems.append(f"{target.name}: {'could not log in' if refused else 'unreachable'}: {message}")
        return
    with connection:
        try:
            for statement in queries.SESSION_SETUP:
                connection.execute(statement, {"statement_timeout_ms": str(target.statement_timeout_ms),
                                               "lock_timeout_ms": str(target.lock_timeout_ms)})
            info = connection.execute(queries.SERVER_INFO).fetchone()
        except psycopg.Error as exc:  # never go on without a read-only session with timeouts
            run.problems.append(f"{target.name}: the read-only session could not be set up: {_scrub(exc, secrets)}")
            return
        database = _Database(target, connection, info["version_num"], info["version"], info["in_recovery"], secrets)
        run.checked.append(target.name)
        run.notes.append(f"{target.name}: PostgreSQL {info['version']} ({'standby' if info['in_recovery'] else 'primary'}),"
                         f" database {info['database']}, role {info['role']}, session read-only")
        for label, check in _SECTION_CHECKS:
            if not _section(database, run, label, check):
                break
        if database.plans:
            run.attachments.append(explain.plans_attachment(target.name, database.plans))


def _connect(target: DatabaseTarget, dsn: str) -> psycopg.Connection:
    given = conninfo_to_dict(dsn).get("options")
    options = " ".join(filter(None, [str(given) if given else "", "-c default_transaction_read_only=on",
                                     f"-c statement_timeout={target.statement_timeout_ms}"]))
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=target.connect_timeout_seconds,
                           application_name=queries.APPLICATION_NAME, options=options)


def _section(database: _Database, run: _Run, label: str, check: Callable[[_Database, _Run], None]) -> bool:
    """Run one section; a failure becomes a problem line. False when the session is gone."""
    name = database.target.name
    try:
        check(database, run)
    except psycopg.errors.InsufficientPrivilege as exc:
        run.problems.append(f"{name}: {label}: permission denied ({_scrub(exc, database.secrets)}); "
                            f"{READ_ONLY_GRANTS}")
    except psycopg.Error as exc:
        run.problems.append(f"{name}: {label} could not be read: {_scrub(exc, database.secrets)}")
    except Exception as exc:
        run.problems.append(f"{name}: {label} failed: {type(exc).__name__}: {_scrub(exc, database.secrets)}")
    if database.connection.broken or database.connection.closed:
        run.problems.append(f"{name}: the connection was lost; the remaining sections were not checked")
        return False
    return True


def _statements(database: _Database, run: _Run) -> None:
    target, name = database.target, database.target.name
    extension = database.fetch(run, queries.EXTENSION)
    if not extension:
        run.problems.append(f"{name}: pg_stat_statements is not installed: {_enable_hint(database, run)}")
        return
    statement_sql = queries.statement_queries(database.version_num, extension[0]["schema_sql"])
    params = {"top": target.top, "min_calls": target.min_calls}
    try:
        ranked = {section: database.fetch(run, statement_sql[section], params) for section in ("slowest", "total-time")}
    except psycopg.errors.ObjectNotInPrerequisiteState:
        run.problems.append(f"{name}: pg_stat_statements is installed but not loaded: add it to "
                            "shared_preload_libraries in postgresql.conf and restart the server")
        return
    overall_ms = float(database.fetch(run, statement_sql["sum"])[0]["total_ms"] or 0.0)
    plans: dict[str, explain.Plan] = {}
    hidden = 0
    for section, rows in ranked.items():
        for row in rows:
            if row["query"] == "<insufficient privilege>":
                hidden += 1
                continue
            queryid = str(row["queryid"])
            if queryid not in plans:
                plans[queryid] = _plan_for(database, row["query"])
                database.plans.append(explain.plan_entry(queryid, row, plans[queryid]))
            run.findings.append(explain.statement_finding(database.key(section, queryid), SECTIONS[section], name, row,
                                                          plans[queryid], overall_ms, target.slow_mean_ms))
    if hidden:
        run.problems.append(f"{name}: {hidden} ranked statements of other roles are hidden: grant the digest's role "
                            "pg_read_all_stats (or pg_monitor)")
    if target.explain and plans:
        database.scans.extend(scan for plan in plans.values() for scan in plan.scans)
        run.queries["EXPLAIN (VERBOSE, FORMAT JSON) <statement>; generic plans: " +
                    ("EXPLAIN (GENERIC_PLAN)" if database.version_num >= explain.GENERIC_PLAN_OPTION_SINCE else
                     "PREPARE ... ; SET plan_cache_mode = force_generic_plan; EXPLAIN EXECUTE ...(NULL, ...)")] = None


def _plan_for(database: _Database, statement: str) -> explain.Plan:
    if not database.target.explain:
        return explain.Plan(None, reason="explain is off for this database")
    return explain.explain(database.connection, statement, database.version_num,
                           analyse_selects=database.target.explain_analyze_selects)


def _enable_hint(database: _Database, run: _Run) -> str:
    create = f"run CREATE EXTENSION pg_stat_statements; in database {database.target.name} as its owner"
    try:
        libraries = database.fetch(run, queries.PRELOADED_LIBRARIES)[0]["libraries"]
    except psycopg.Error:
        return (f"{create}; the server must also have pg_stat_statements in shared_preload_libraries "
                "(postgresql.conf, then restart)")
    if "pg_stat_statements" in str(libraries):
        return f"{create} (the server already preloads it)"
    return f"add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart the server, then {create}"


def _seq_scans(database: _Database, run: _Run) -> None:
    target = database.target
    tables = database.fetch(run, queries.LARGE_SEQ_SCANNED_TABLES, {
        "large_table_rows": target.large_table_rows, "min_seq_scans": target.min_seq_scans,
        "min_seq_scan_share": target.min_seq_scan_share, "limit": TABLES_LISTED})
    keywords: list[str] | None = None
    for table in tables:
        schema, name, live = table["schema_name"], table["table_name"], float(table["n_live_tup"])
        filters = indexes.seq_scan_filters(database.scans, schema, name)
        candidate = None
        if filters:
            if keywords is None:
                keywords = [row["word"] for row in database.fetch(run, queries.KEYWORDS)]
            ref = {"relid": table["relid"], "schema_name": schema, "table_name": name}
            statistics = {row["column_name"]: indexes.ColumnStatistics(
                row["column_name"], row["n_distinct"], row["null_frac"], row["most_common_freqs"])
                for row in database.fetch(run, queries.COLUMN_STATISTICS, ref)}
            existing = [indexes.ExistingIndex(row["index_name"], row["columns"], row["valid"], row["partial"])
                        for row in database.fetch(run, queries.TABLE_INDEXES, ref)]
            candidate = indexes.find_candidate(schema, name, live, filters, statistics, existing,
                                               max_selectivity=target.max_selectivity, keywords=keywords)
        run.findings.append(indexes.seq_scan_finding(
            database.key("seq-scans", f"{schema}.{name}"), SECTIONS["seq-scans"], target.name, table, bool(filters),
            candidate, indexes.fix_for(target.name, candidate), explained=target.explain))


def _connections(database: _Database, run: _Run) -> None:
    target, row = database.target, database.fetch(run, queries.CONNECTIONS)[0]
    available = max(1, row["max_connections"] - row["superuser_reserved"] - row["reserved"])
    ratio = row["used"] / available
    severity = ("critical" if ratio >= target.connections_critical_ratio else
                "warning" if ratio >= target.connections_warning_ratio else "info")
    reserved = f"{row['superuser_reserved']} reserved for superusers" + (
        f", {row['reserved']} for pg_use_reserved_connections" if row["reserved"] else "")
    run.summary[f"connections_used_ratio:{target.name}"] = ratio
    run.findings.append(Finding(
        key=database.key("connections", "server"), section=SECTIONS["connections"],
        subject=f"{target.name}: client connections (whole server)",
        detail=(f"{row['used']} of {available} usable connections in use ({ratio:.0%}; max_connections "
                f"{row['max_connections']}, {reserved}); {row['active']} active, "
                f"{row['idle_in_transaction']} idle in transaction"),
        severity=severity,
        numbers={"used": float(row["used"]), "available": float(available), "ratio": ratio,
                 "idle_in_transaction": float(row["idle_in_transaction"])},
    ))


def _bloat(database: _Database, run: _Run) -> None:
    target = database.target
    for row in database.fetch(run, queries.TABLE_BLOAT, {
            "min_dead_tuples": target.min_dead_tuples, "dead_tuple_ratio": target.dead_tuple_ratio,
            "limit": TABLES_LISTED}):
        run.findings.append(_table_bloat_finding(
            database.key("bloat", f"{row['schema_name']}.{row['table_name']}"), target.name, row))
    for row in database.fetch(run, queries.INDEX_BLOAT_ESTIMATE, {
            "min_index_bytes": target.min_index_bytes, "index_tuple_overhead_bytes": INDEX_TUPLE_OVERHEAD_BYTES,
            "page_overhead_bytes": PAGE_OVERHEAD_BYTES, "limit": TABLES_LISTED}):
        wasted = 1.0 - float(row["expected_bytes"]) / float(row["index_bytes"])
        if wasted >= target.index_bloat_ratio:
            run.findings.append(_index_bloat_finding(
                database.key("bloat", f"{row['schema_name']}.{row['index_name']}"), target.name, row, wasted))


def _size(database: _Database, run: _Run) -> None:
    target = database.target
    size = float(database.fetch(run, queries.DATABASE_SIZE)[0]["size_bytes"])
    run.summary[f"size_bytes:{target.name}"] = size
    previous = getattr(run.context, "previous_summary", None) or {}
    forecast = size_forecast(size, previous.get(f"size_bytes:{target.name}"),
                             getattr(run.context, "previous_at", None), run.context.now, target.disk_bytes)
    severity = "info"
    if forecast.days_to_full is not None:
        severity = ("critical" if forecast.days_to_full <= target.fill_critical_days else
                    "warning" if forecast.days_to_full <= target.fill_warning_days else "info")
    numbers = {"size_bytes": size}
    if forecast.growth_per_day is not None:
        numbers["growth_bytes_per_day"] = forecast.growth_per_day
    if forecast.days_to_full is not None:
        numbers["days_to_full"] = forecast.days_to_full
    run.findings.append(Finding(key=database.key("size", "database"), section=SECTIONS["size"],
                                subject=f"{target.name}: database size", detail=forecast.sentence,
                                severity=severity, numbers=numbers))


def _replication(database: _Database, run: _Run) -> None:
    target = database.target
    if database.in_recovery:
        row = database.fetch(run, queries.STANDBY_LAG)[0]
        lag = 0.0 if row["caught_up"] else row["replay_delay_seconds"]
        run.findings.append(_standby_finding(database.key("replication", "standby"), target, row, lag))
        return
    replicas = database.fetch(run, queries.REPLICAS)
    if not replicas:
        run.notes.append(f"{target.name}: primary without streaming replicas (pg_stat_replication is empty)")
    for row in replicas:
        replica = row["application_name"] or row["client_addr"] or "replica"
        run.findings.append(_replica_finding(database.key("replication", replica), target, row))


_SECTION_CHECKS: tuple[tuple[str, Callable[[_Database, _Run], None]], ...] = (
    ("statements (pg_stat_statements)", _statements),
    ("sequential scans", _seq_scans),
    ("connections", _connections),
    ("bloat", _bloat),
    ("size", _size),
    ("replication", _replication),
)


@dataclass(frozen=True)
class SizeForecast:
    sentence: str
    growth_per_day: float | None = None
    days_to_full: float | None = None


def size_forecast(size: float, previous_size: float | None, previous_at: datetime | None, now: datetime,
                  disk_bytes: int | None, min_interval: timedelta = MIN_GROWTH_INTERVAL) -> SizeForecast:
    """The size sentence, growth per day since the previous run and, with a disk size, days until full.

    A straight line through two points: an estimate, and said to be one."""
    parts = [_bytes(size)]
    share = f"{size / disk_bytes:.0%} of the {_bytes(disk_bytes)} configured as disk_bytes" if disk_bytes else ""
    if previous_size is None or previous_at is None or now - previous_at < min_interval:
        parts += ["growth shows from the next run (no earlier size on record)", share]
        return SizeForecast("; ".join(filter(None, parts)))
    growth = (size - previous_size) / ((now - previous_at).total_seconds() / 86400)
    parts.append(f"{'+' if growth >= 0 else '-'}{_bytes(abs(growth))} per day since {previous_at:%Y-%m-%d %H:%M} UTC")
    if not disk_bytes:
        return SizeForecast("; ".join(parts), growth)
    parts.append(share)
    if growth <= 0:
        return SizeForecast("; ".join([*parts, "not growing"]), growth)
    days_to_full = max(0.0, (disk_bytes - size) / growth)
    if days_to_full > FORECAST_HORIZON_DAYS:
        parts.append(f"not full within {FORECAST_HORIZON_DAYS // 365} years at this rate")
    else:
        parts.append(f"full in about {days_to_full:.0f} days, around {now + timedelta(days=days_to_full):%Y-%m-%d} "
                     "(estimate: a straight line through the last two sizes)")
    return SizeForecast("; ".join(parts), growth, days_to_full)


def _table_bloat_finding(key: str, name: str, row: Mapping[str, Any]) -> Finding:
    dead, live, ratio = int(row["n_dead_tup"]), int(row["n_live_tup"]), float(row["dead_ratio"])
    vacuumed = (f"last vacuum {row['last_vacuum']:%Y-%m-%d %H:%M}" if row["last_vacuum"] else
                "not vacuumed since the statistics were reset")
    return Finding(
        key=key, section=SECTIONS["bloat"], subject=f"{name}: table {row['schema_name']}.{row['table_name']}",
        detail=(f"about {dead} dead tuples, {ratio:.0%} of {dead + live} (estimate from pg_stat_user_tables); "
                f"table {_bytes(row['table_bytes'])}; {vacuumed}; check autovacuum and long-running transactions"),
        numbers={"n_dead_tup": float(dead), "dead_ratio": ratio, "table_bytes": float(row["table_bytes"])})


def _index_bloat_finding(key: str, name: str, row: Mapping[str, Any], wasted: float) -> Finding:
    return Finding(
        key=key, section=SECTIONS["bloat"],
        subject=f"{name}: index {row['schema_name']}.{row['index_name']} on {row['table_name']}",
        detail=(f"{_bytes(row['index_bytes'])}, about {_bytes(row['expected_bytes'])} if rebuilt: roughly "
                f"{wasted:.0%} wasted (estimate from pg_stats column widths and the fillfactor); "
                "REINDEX INDEX CONCURRENTLY reclaims it"),
        numbers={"index_bytes": float(row["index_bytes"]), "wasted_ratio": wasted})


def _lag_severity(target: DatabaseTarget, lag_seconds: float | None) -> str:
    if lag_seconds is None:
        return "info"
    return ("critical" if lag_seconds >= target.replication_lag_critical_seconds else
            "warning" if lag_seconds >= target.replication_lag_warning_seconds else "info")


def _standby_finding(key: str, target: DatabaseTarget, row: Mapping[str, Any], lag: float | None) -> Finding:
    status = row["receiver_status"] or "not running"
    if lag is None:
        detail, severity = "no transaction replayed yet and not caught up: the replay delay is unknown", "warning"
    else:
        detail, severity = (f"replay delay {lag:.1f} s" + (" (caught up with what it received)" if lag == 0 else
                                                            " (now minus the last replayed commit)")), \
            _lag_severity(target, lag)
    if status != "streaming":
        severity = "warning" if severity == "info" else severity
    return Finding(key=key, section=SECTIONS["replication"], subject=f"{target.name}: this standby",
                   detail=f"{detail}; WAL receiver {status}", severity=severity,
                   numbers={"lag_seconds": lag} if lag is not None else {})


def _replica_finding(key: str, target: DatabaseTarget, row: Mapping[str, Any]) -> Finding:
    seconds, behind = row["replay_lag_seconds"], row["replay_lag_bytes"]
    severity = _lag_severity(target, seconds)
    if row["state"] != "streaming" and severity == "info":
        severity = "warning"
    lag = f"replay lag {seconds:.1f} s" if seconds is not None else "no replay lag reported (idle or caught up)"
    position = f", {_bytes(behind)} of WAL behind" if behind is not None else ""
    numbers = {name: float(value) for name, value in (("lag_seconds", seconds), ("lag_bytes", behind))
               if value is not None}
    return Finding(key=key, section=SECTIONS["replication"],
                   subject=f"{target.name}: replica {row['application_name'] or row['client_addr'] or 'unnamed'}",
                   detail=f"{row['state']} ({row['sync_state']}); {lag}{position}", severity=severity,
                   numbers=numbers)


def _assemble(config: DatabaseConfig, run: _Run) -> DigestReport:
    order = {heading: position for position, heading in enumerate(SECTIONS.values())}
    findings = sorted(run.findings, key=lambda finding: (SEVERITY_ORDER[finding.severity],
                                                          order.get(finding.section, len(order))))
    attention = sum(1 for finding in findings if finding.severity != "info")
    candidates = sum(1 for finding in findings if finding.fix is not None)
    checked, total = len(run.checked), len(config.databases)
    unchecked = f"; {total - checked} could not be checked" if checked < total else ""
    if total == 0:
        headline = "No databases configured: add them under database.databases in the digests file"
    elif checked == 0:
        headline = f"Could not check {'the database' if total == 1 else f'any of the {total} databases'}"
    elif attention:
        headline = (f"{attention} {'finding needs' if attention == 1 else 'findings need'} attention in "
                    f"{checked} {'database' if checked == 1 else 'databases'}{unchecked}")
    else:
        headline = f"No database problems in {', '.join(run.checked)}{unchecked}"
    notes = list(run.notes)
    if checked:
        notes += ["Statement figures are cumulative since pg_stat_statements was last reset; plans are generic "
                  "(parameter values are not kept) and use the digest session's search_path.",
                  "Bloat figures are estimates: dead-tuple ratios from pg_stat_user_tables, and B-tree sizes "
                  "against a fresh build estimated from pg_stats column widths."]
    summary = {**run.summary, "databases_checked": float(checked), "databases_unchecked": float(total - checked),
               "findings_attention": float(attention), "index_candidates": float(candidates)}
    return DigestReport(name="database", title="Database health", headline=headline,
                        generated_at=run.context.now, findings=tuple(findings), problems=tuple(run.problems),
                        notes=tuple(notes), queries=tuple(run.queries), attachments=tuple(run.attachments),
                        summary=summary)


def _scrub(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The error's first lines, the DSN's password replaced, bounded in length."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    message = " ".join(lines[:2]) or type(exc).__name__
    for secret in secrets:
        message = message.replace(secret, "***")
    return message[:MAX_ERROR_CHARS]


def _bytes(count: float) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
