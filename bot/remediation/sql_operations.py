"""The `postgres.*` operations: changes to a configured PostgreSQL database, typed like the
Kubernetes ones (`bot.remediation.operations`), run by the same engine.

`postgres.create_index` builds one index with `CREATE INDEX CONCURRENTLY` (the `create-index`
runbook, proposed from the database digest's missing-index findings). Invariants:

- The statement is rebuilt from typed input (`database`, `schema.table`, column identifiers);
  no text a digest, a person or the model wrote is ever executed. Identifiers must be plain
  (`IDENTIFIER`: letters, digits, `_`, `$`, at most 63 bytes), so a quote, a semicolon or a
  space is refused before anything connects; they are quoted anyway (`psycopg.sql.Identifier`).
- No `IF NOT EXISTS`: when a relation of the index's name appeared between the plan and the
  write, the statement fails (conflict) instead of succeeding silently, so the rollback can
  never drop an index this step did not create.
- The plan reads the live catalogue: the table (owned by the write role? a primary? a plain
  table?), its columns, and any relation of the index's name. A valid index of that name on
  that table means nothing to do (no write, no undo); an INVALID one (a failed build) is
  refused with how to drop it; anything else of that name is refused.
- The lock: SHARE UPDATE EXCLUSIVE on the table (`LOCK_NOTE`). Reads and writes go on; the
  build waits for transactions already using the table, runs outside a transaction, and when
  it fails leaves an INVALID index behind. The undo (`DROP INDEX CONCURRENTLY IF EXISTS` of
  exactly that index, on that table) is captured before the write; the verification
  (`pg_index.indisvalid AND indisready`) finding it invalid rolls it back.
- A step whose worker died is judged from the database (`judge`): being built (its progress
  row, or the step's tagged session still active) -> wait; exists -> applied (verified next;
  an INVALID one fails and is dropped); absent -> not applied. Never re-run.
- Policy: a postgres step must need approval by `APPROVER_GROUP` with at least
  `MIN_APPROVALS` approvals, never by its requester, and is never retried (`lint_step`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.context.model import ObjectRef
from bot.remediation import operations
from bot.remediation.index_names import index_name_for
from bot.remediation.intent import Judgement
from bot.remediation.kube_write import WriteError
from bot.remediation.operations import RESTORE, InputError, Operation, Plan
from bot.remediation.runbook_model import Runbook, Step, fill
from bot.remediation.sql_write import Executed, SqlWriter

PREFIX = "postgres."
CREATE_INDEX = "postgres.create_index"
CREATE_VERB, DROP_VERB = "sql.create_index", "sql.drop_index"
TAG_PREFIX = "opsbot-step-"
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
DATABASE_NAME = r"^[A-Za-z0-9_.-]{1,63}$"  # as `DatabaseTarget.name`
MAX_INDEX_COLUMNS = 32  # PostgreSQL's INDEX_MAX_KEYS
INDEXABLE_KINDS = {"r": "table", "m": "materialized view"}  # CONCURRENTLY cannot build on a partitioned table
LOCK_LEVEL = "SHARE UPDATE EXCLUSIVE"
LOCK_NOTE = (f"{LOCK_LEVEL} lock on the table: reads and writes go on (VACUUM, ANALYZE, other index builds and "
             "schema changes wait); runs outside a transaction and first waits for transactions already using "
             "the table; a failed build leaves an INVALID index, which the rollback drops (DROP INDEX CONCURRENTLY)")
DRY_RUN_TEXT = ("checked on the server (CREATE INDEX has no dry run): a primary, the write role owns {table}, "
                "the columns exist, no relation is named {index}")
APPROVER_GROUP = "dba"
MIN_APPROVALS = 2
STILL_RUNNING_NOTE = ("its worker stopped while {verb} ran on {database}: the build still runs on the server "
                   "({detail}); the bot checks again")


class CreateIndexInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field(pattern=DATABASE_NAME, description="a database of the digests file with a dsn_write_env")
    table: str = Field(pattern=rf"^{IDENTIFIER}\.{IDENTIFIER}$", description="schema.table, plain identifiers")
    columns: str = Field(description="comma-separated column identifiers, in index order")
    lock_timeout_seconds: float = Field(10, gt=0, le=600, description="how long the build waits for a lock")
    statement_timeout_seconds: int = Field(0, ge=0, description="0: no limit (a concurrent build may take hours)")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",")]
        if not 1 <= len(names) <= MAX_INDEX_COLUMNS or not all(re.fullmatch(IDENTIFIER, n) for n in names):
            raise ValueError(f"1 to {MAX_INDEX_COLUMNS} comma-separated plain identifiers (letters, digits, _ and $)")
        if len(set(names)) != len(names):
            raise ValueError("a column is named twice")
        return ",".join(names)

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]

    @property
    def column_list(self) -> list[str]:
        return self.columns.split(",")

    @property
    def index(self) -> str:
        return index_name_for(self.table_name, self.column_list)


def create_statement(inp: CreateIndexInput) -> sql.Composed:
    return sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} ({})").format(
        sql.Identifier(inp.index), sql.Identifier(inp.schema, inp.table_name),
        sql.SQL(", ").join(sql.Identifier(column) for column in inp.column_list))


def drop_statement(schema: str, index: str) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, index))


def text_of(statement: sql.Composable) -> str:
    return statement.as_string(None)


_TABLE = """
SELECT c.relkind, pg_has_role(c.relowner, 'USAGE') AS owned, pg_is_in_recovery() AS standby,
       greatest(c.reltuples, 0)::bigint AS rows, pg_total_relation_size(c.oid) AS bytes,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""
_RELATION = """
SELECT c.oid::bigint AS oid, c.relkind, i.indisvalid AS valid, i.indisready AS ready,
       tn.nspname AS table_schema, t.relname AS table_name,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid) AS building
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""
_TAGGED_ACTIVE = """
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE application_name = %(tag)s AND state = 'active' AND pid <> pg_backend_pid()) AS active
"""


@dataclass(frozen=True)
class IndexState:
    exists: bool
    is_index: bool = False
    valid: bool = False
    ready: bool = False
    table: str | None = None  # schema.table the index is on
    building: bool = False  # a build of it, or the step's tagged statement, is running now

    def describe(self) -> str:
        if not self.exists:
            return "absent"
        if not self.is_index:
            return "another kind of relation"
        return f"{'valid' if self.valid else 'INVALID'}{', ready' if self.ready else ''} on {self.table}"


def index_state(writer: SqlWriter, database: str, schema: str, name: str, tag: str | None = None) -> IndexState:
    rows = writer.query(database, _RELATION, {"schema": schema, "name": name})
    active = bool(tag) and bool(writer.query(database, _TAGGED_ACTIVE, {"tag": tag})[0]["active"])
    if not rows:
        return IndexState(False, building=active)
    row = rows[0]
    return IndexState(True, row["relkind"] == "i", bool(row["valid"]), bool(row["ready"]),
                      f"{row['table_schema']}.{row['table_name']}" if row["table_name"] else None,
                      bool(row["building"]) or active)


def _size(bytes_: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if bytes_ < 1024 or unit == "TB":
            return f"{bytes_:.0f} {unit}"
        bytes_ /= 1024
    return f"{bytes_} B"


def _plan_create_index(writer: SqlWriter, inp: CreateIndexInput) -> Plan:
    """Read the table and any relation of the index's name; the statement, its lock and undo."""
    target = ObjectRef("Table", inp.database, inp.table)
    statement = text_of(create_statement(inp))
    tables = writer.query(inp.database, _TABLE, {"schema": inp.schema, "table": inp.table_name})
    if not tables:
        raise WriteError("not_found", f"{inp.database} has no table {inp.table}")
    table = tables[0]
    if table["relkind"] not in INDEXABLE_KINDS:
        raise WriteError("invalid", f"{inp.table} is not a plain table (relkind {table['relkind']}): "
                                    "CREATE INDEX CONCURRENTLY cannot build on it")
    missing = [c for c in inp.column_list if c not in table["columns"]]
    if missing:
        raise WriteError("not_found", f"{inp.table} has no column {', '.join(missing)}")
    existing = index_state(writer, inp.database, inp.schema, inp.index)
    notes = [f"Lock: {LOCK_NOTE}", f"Statement: {statement}"]
    if existing.exists and existing.is_index and existing.table == inp.table and existing.valid:
        return Plan(CREATE_INDEX, target, f"nothing to do: the index {inp.schema}.{inp.index} exists on {inp.table} "
                                          "and is valid", [], 0, notes=notes,
                    write=lambda w, dry: "nothing to write: the index exists and is valid")
    if existing.exists and existing.is_index and existing.table == inp.table:
        raise WriteError("invalid", f"an INVALID index {inp.schema}.{inp.index} exists on {inp.table} (a failed "
                                    f"build): drop it first with DROP INDEX CONCURRENTLY {inp.schema}.{inp.index}")
    if existing.exists:
        raise WriteError("conflict", f"{inp.schema}.{inp.index} already names {existing.describe()}")
    size = f"about {table['rows']} rows, {_size(int(table['bytes'] or 0))}"
    undo = {"method": DROP_VERB, "database": inp.database, "schema": inp.schema, "index": inp.index,
            "table": inp.table, "lock_timeout_ms": int(inp.lock_timeout_seconds * 1000)}

    def write(w: SqlWriter, dry_run: bool) -> str | Executed:
        if dry_run:
            return _check_writable(w, inp, table)
        return w.execute(inp.database, create_statement(inp), lock_timeout_ms=int(inp.lock_timeout_seconds * 1000),
                         statement_timeout_ms=inp.statement_timeout_seconds * 1000)

    return Plan(CREATE_INDEX, target, f"{statement} on database {inp.database} ({inp.table}: {size}). Lock: {LOCK_NOTE}",
                [(f"index {inp.schema}.{inp.index}", "absent", f"valid, on {inp.table} ({inp.columns})"),
                 ("lock on the table", None, f"{LOCK_LEVEL} (reads and writes go on)")],
                0, undo=undo, write=write, notes=notes)


def _check_writable(writer: SqlWriter, inp: CreateIndexInput, table: Mapping[str, Any]) -> str:
    """The dry run: what the server would refuse, asked before any approval."""
    if table["standby"]:
        raise WriteError("refused", f"{inp.database} is a standby (in recovery): indexes are built on the primary")
    if not table["owned"]:
        raise WriteError("forbidden", f"the write role of {inp.database} does not own {inp.table}; CREATE INDEX "
                                      "needs the table's owner (or a member of its role)")
    return DRY_RUN_TEXT.format(table=inp.table, index=inp.index)


REGISTRY: dict[str, Operation] = {op.name: op for op in (
    Operation(CREATE_INDEX, True, CreateIndexInput, _plan_create_index,
              "build one index with CREATE INDEX CONCURRENTLY (no write lock; outside a transaction)"),
)}


def is_sql(operation: str | None) -> bool:
    return bool(operation) and operation.startswith(PREFIX)


def validate_input(operation: str, values: dict[str, Any]) -> BaseModel:
    return operations.validate_input(operation, values, REGISTRY)


def plan(writer: SqlWriter, operation: str, values: dict[str, Any]) -> Plan:
    return REGISTRY[operation].plan(writer, validate_input(operation, values))


def tag_of(proposal_id: int | None) -> str:
    return f"{TAG_PREFIX}{proposal_id}" if proposal_id is not None else "opsbot-remediation"


def bind_values(operation: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values a `verify.sql` may bind besides the runbook's params: the names the operation
    derives from its input (`schema`, `table_name`, `index`); empty when the input does not fit."""
    if operation != CREATE_INDEX:
        return {}
    try:
        inp = CreateIndexInput.model_validate(values)
    except ValidationError:
        return {}
    return {"schema": inp.schema, "table_name": inp.table_name, "index": inp.index}


BINDABLE: Mapping[str, tuple[str, ...]] = {CREATE_INDEX: ("schema", "table_name", "index")}


def intent_calls(plan: Plan, values: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """What the write will do, recorded before it (empty when there is nothing to write)."""
    if plan.undo is None:
        return []
    inp = CreateIndexInput.model_validate(values)
    return [{"verb": CREATE_VERB, "database": inp.database, "schema": inp.schema, "table": inp.table,
             "index": inp.index, "tag": tag, "statement": text_of(create_statement(inp))}]


def undo_calls(undo: Mapping[str, Any], tag: str) -> list[dict[str, Any]]:
    return [{"verb": DROP_VERB, "database": undo["database"], "schema": undo["schema"], "index": undo["index"],
             "table": undo["table"], "tag": tag, "statement": text_of(drop_statement(undo["schema"], undo["index"]))}]


def apply_undo(writer: SqlWriter, undo: Mapping[str, Any], before_write: Callable[[list[dict[str, Any]]], None]
               ) -> Executed | None:
    """`DROP INDEX CONCURRENTLY IF EXISTS` of the captured index, only while it is still on the
    table the step built it on; `before_write` records the intent first."""
    if not undo or undo.get("method") != DROP_VERB:
        raise WriteError("invalid", "nothing was captured to drop")
    state = index_state(writer, undo["database"], undo["schema"], undo["index"])
    if state.exists and (not state.is_index or state.table != undo["table"]):
        raise WriteError("conflict", f"{undo['schema']}.{undo['index']} is now {state.describe()}, not the index "
                                     f"built on {undo['table']}: not dropped")
    before_write(undo_calls(undo, writer.tag))
    return writer.execute(undo["database"], drop_statement(undo["schema"], undo["index"]),
                          lock_timeout_ms=int(undo.get("lock_timeout_ms") or 10_000))


@dataclass(frozen=True)
class StillRunning:
    """The recorded statement still runs on the server: judge again later, never re-run it."""

    detail: str


def judge(writer: SqlWriter, calls: list[dict[str, Any]]) -> Judgement | StillRunning | None:
    """Whether the recorded statement took effect, from the database; None when it cannot be read."""
    if not calls:
        return Judgement("applied", "there was nothing to write")
    call = calls[0]
    try:
        state = index_state(writer, call["database"], call["schema"], call["index"], call.get("tag"))
    except WriteError:
        return None
    verb = "CREATE INDEX CONCURRENTLY" if call["verb"] == CREATE_VERB else "DROP INDEX CONCURRENTLY"
    if state.building:
        return StillRunning(STILL_RUNNING_NOTE.format(verb=verb, database=call["database"], detail=state.describe()))
    if call["verb"] == CREATE_VERB:
        if state.exists and state.is_index and state.table == call["table"]:
            return Judgement("applied", f"the index {call['schema']}.{call['index']} exists, {state.describe()}"
                             + ("" if state.valid else ": the build stopped; verification fails and the rollback "
                                                       "drops it"))
        if state.exists:
            return Judgement("undecided", f"{call['schema']}.{call['index']} is {state.describe()}")
        return Judgement("not_applied", "no index of that name exists and none is being built")
    if not state.exists:
        return Judgement("applied", f"the index {call['schema']}.{call['index']} is gone")
    return Judgement("not_applied", f"the index {call['schema']}.{call['index']} is still there, "
                                    f"{state.describe()}")


def apply(writer: SqlWriter, step: Step, values: dict[str, Any],
          intend: Callable[[list[dict[str, Any]], dict[str, Any] | None], None]) -> dict[str, Any]:
    """Plan again on the live database, `intend` (record the calls and the undo under the lease,
    before the write), then the one statement through `writer` (leased: its heartbeat renews the
    lease; `HeartbeatStopped` when it was lost). The result for the timeline, or an `error`; never
    retried: after a failure the database says what is left (`after_failure`)."""
    try:
        live = plan(writer, step.operation, values)
    except (WriteError, InputError) as exc:
        return {"error": str(exc), "error_kind": getattr(exc, "kind", "invalid"), "attempts": 1}
    calls = intent_calls(live, values, writer.tag)
    intend(calls, live.undo if "target" in step.capture else None)
    done = {"summary": live.summary, "diff": [[p, b, a] for p, b, a in live.diff], "attempts": 1}
    if not calls:
        return done
    try:
        executed = live.write(writer, False)
    except WriteError as exc:
        return after_failure(writer, calls, exc, done)
    return {**done, "statement": calls[0]["statement"], "seconds": executed.seconds}


def after_failure(writer: SqlWriter, calls: list[dict[str, Any]], exc: WriteError, done: dict[str, Any]
                  ) -> dict[str, Any]:
    """What a failed statement left, read from the database: nothing (the step failed); the index
    (applied: the verification decides, and an INVALID one is rolled back); or, when the server
    still runs it or cannot be read, `recovery` (the lease lapses and the recovery judges it)."""
    failed = {"error": str(exc), "error_kind": exc.kind, "attempts": 1}
    if exc.kind == "conflict":  # the name was taken before the build began: nothing of this step exists
        return failed
    judgement = judge(writer, calls)
    if judgement is None or isinstance(judgement, StillRunning):
        return {**failed, "recovery": f"the statement failed ({exc}) and its outcome is not known yet: "
                                      + (judgement.detail if judgement else "the database cannot be read")}
    if judgement.verdict == "applied":
        return {**done, "note": f"The statement failed ({exc}) and left the index behind: the verification "
                                "decides, and an INVALID index is rolled back."}
    return failed


def check(writer: SqlWriter, step: Step, params: dict[str, Any], values: dict[str, Any]
          ) -> tuple[float | None, str | None]:
    """A `verify.sql` read: 1.0 when its first column is true, 0.0 when false; None (with why)
    when it returns nothing or cannot be read. Values are bound, never filled in."""
    verify = step.verify
    binds = {**params, **bind_values(step.operation, values)}
    try:
        rows = writer.query(fill(verify.database, {k: str(v) for k, v in params.items()}), verify.sql,
                            {name: binds.get(name) for name in verify.sql_binds()})
    except WriteError as exc:
        return None, f"the database could not be read ({exc})"
    if not rows:
        return None, "the query returned no row"
    value = next(iter(rows[0].values()))
    if value is None:
        return None, "the query returned null"
    try:
        return float(value), None
    except (TypeError, ValueError):
        return None, f"the query's first column is not true or false ({type(value).__name__})"


def lint_step(runbook: Runbook, step: Step) -> list[str]:
    """Problems of a postgres step beyond the operation's own input: the strictest approval
    (`APPROVER_GROUP`, `MIN_APPROVALS`, never the requester, so never `auto`), no retry, a
    rollback that drops only what was captured, no Kubernetes precondition."""
    problems = []
    where = f"steps[{step.id}]"
    approval = step.approval
    if not approval.required or list(approval.groups) != [APPROVER_GROUP] or approval.approvals < MIN_APPROVALS \
            or approval.requester_may_approve:
        problems.append(f"{where}.approval: a {PREFIX}* step needs approval (required) by groups [{APPROVER_GROUP}] "
                        f"only, at least {MIN_APPROVALS} approvals, requester_may_approve false")
    if step.retry.attempts != 1:
        problems.append(f"{where}.retry: a {PREFIX}* step is never retried (a failed concurrent build leaves an "
                        "INVALID index): attempts 1")
    if step.rollback and step.rollback.operation and step.rollback.operation != RESTORE:
        problems.append(f"{where}.rollback: a {PREFIX}* step rolls back with {RESTORE} (the captured DROP INDEX)")
    if any(pre.exists for pre in runbook.preconditions):
        problems.append("preconditions: `exists` reads Kubernetes; a runbook with a postgres step has none")
    return problems


def lint_verify(runbook: Runbook, step: Step) -> list[str]:
    """A `verify.sql` binds only declared params and the names the step's operation derives."""
    if step.verify is None or step.verify.sql is None:
        return []
    known = set(runbook.params) | set(BINDABLE.get(step.operation, ()))
    unknown = step.verify.sql_binds() - known
    return [f"steps[{step.id}].verify.sql: binds unknown values {sorted(unknown)} (known: {sorted(known)})"] \
        if unknown else []
