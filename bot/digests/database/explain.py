"""EXPLAIN plans for statements taken from pg_stat_statements, and how ranked statements read.

pg_stat_statements keeps normalised text: constants are replaced by `$1`, `$2`, ... and their
values are gone. Such a statement cannot be planned as it is, so:
- PostgreSQL 16 and later: `EXPLAIN (GENERIC_PLAN) <statement>`.
- PostgreSQL 12 to 15: `PREPARE` the statement, `SET plan_cache_mode = force_generic_plan`,
  then `EXPLAIN EXECUTE` it with NULL for every parameter. The generic plan does not depend on
  the values, so the NULLs only satisfy the arity. A parameter whose type the server cannot
  infer (`SELECT $1`) makes the plan unavailable, with the reason.

Invariants:
- Only plannable statements (SELECT, VALUES, TABLE, WITH, INSERT, UPDATE, DELETE, MERGE) are
  explained; utility statements are reported as such. A text holding more than one statement
  is refused.
- Plain EXPLAIN never executes the statement. `EXPLAIN ANALYZE` (which does) runs only when
  the caller allows it, only on a read-only query (`is_read_only_select`: no write keyword, no
  sequence or signalling function, no SELECT INTO/FOR UPDATE), only when it has no parameters
  (their values are unknown), and inside a READ ONLY transaction that is always rolled back, on
  top of the session being read-only with a statement timeout.
- Every failure is a reason string in the result, never an exception to the caller.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from bot.digests.model import Attachment, Finding

GENERIC_PLAN_OPTION_SINCE = 160000
PREPARED_NAME = "opsbot_digest_plan"
PLANNABLE_KINDS = frozenset({"select", "values", "table", "with", "insert", "update", "delete", "merge"})
READ_ONLY_KINDS = frozenset({"select", "values", "table", "with"})
# Words that make a query more than a read (a write, a side effect, or a lock): never ANALYZEd.
WRITE_WORDS = re.compile(
    r"\b(insert|update|delete|merge|truncate|into|copy|call|do|lock|nextval|setval|"
    r"pg_terminate_backend|pg_cancel_backend|pg_advisory\w*|lo_\w+|dblink\w*|set_config)\b",
    re.IGNORECASE,
)
PARAMETER = re.compile(r"\$(\d+)")
LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/|\()+", re.DOTALL)
SCAN_NODE_SUFFIX = "Scan"
MAX_SUMMARY_SCANS = 3
SUBJECT_STATEMENT_CHARS = 100


@dataclass(frozen=True)
class ScanNode:
    """One scan of a relation in a plan: what the index finder needs."""

    node_type: str
    schema: str | None
    relation: str
    alias: str | None
    filter: str | None
    index_name: str | None = None


@dataclass(frozen=True)
class Plan:
    """A statement's plan, or why there is none (`text` None, `reason` set)."""

    text: str | None
    scans: tuple[ScanNode, ...] = ()
    method: str = ""
    analysed: bool = False
    reason: str | None = None

    def summary(self) -> str:
        """One line naming the scans: "Seq Scan on public.orders (Filter: (customer_id = $1))"."""
        if self.text is None:
            return f"no plan ({self.reason})"
        parts = []
        for scan in self.scans[:MAX_SUMMARY_SCANS]:
            name = f"{scan.schema}.{scan.relation}" if scan.schema else scan.relation
            part = f"{scan.node_type} on {name}"
            if scan.index_name:
                part += f" using {scan.index_name}"
            if scan.filter:
                part += f" (Filter: {scan.filter})"
            parts.append(part)
        if len(self.scans) > MAX_SUMMARY_SCANS:
            parts.append(f"{len(self.scans) - MAX_SUMMARY_SCANS} more scans")
        return "; ".join(parts) or self.text.splitlines()[0].strip()


def statement_kind(statement: str) -> str:
    """The leading keyword, lower case, after comments, whitespace and opening parentheses."""
    match = re.match(r"[A-Za-z]+", LEADING_NOISE.sub("", statement))
    return match.group(0).lower() if match else ""


def parameter_count(statement: str) -> int:
    return max((int(number) for number in PARAMETER.findall(statement)), default=0)


def is_read_only_select(statement: str) -> bool:
    """A query that only reads: the only kind that may be EXPLAIN ANALYZEd."""
    return statement_kind(statement) in READ_ONLY_KINDS and not WRITE_WORDS.search(statement)


def _single_statement(statement: str) -> str | None:
    body = statement.strip().rstrip(";").rstrip()
    return None if ";" in body else body


def _walk(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("Plans", ()) or ():
        yield from _walk(child)


def scans_of(plan_json: Any) -> tuple[ScanNode, ...]:
    """The relation scans of an `EXPLAIN (VERBOSE, FORMAT JSON)` result, in plan order."""
    document = plan_json[0] if isinstance(plan_json, list) and plan_json else plan_json
    if not isinstance(document, Mapping) or not isinstance(document.get("Plan"), Mapping):
        return ()
    scans = []
    for node in _walk(document["Plan"]):
        kind = str(node.get("Node Type", ""))
        if kind.endswith(SCAN_NODE_SUFFIX) and node.get("Relation Name"):
            scans.append(ScanNode(kind, node.get("Schema"), str(node["Relation Name"]), node.get("Alias"),
                                  node.get("Filter"), node.get("Index Name")))
    return tuple(scans)


def _explain_rows(connection: psycopg.Connection, sql: str) -> list[Any]:
    with connection.cursor(row_factory=tuple_row) as cursor:
        return [row[0] for row in cursor.execute(sql, prepare=False).fetchall()]


def _plan_pair(connection: psycopg.Connection, target: str, options: str, analyse: bool) -> tuple[str, tuple]:
    """The text plan (for people) and the scans of the verbose JSON plan (for the index finder)."""
    text_options = ", ".join(filter(None, [options, "ANALYZE, BUFFERS" if analyse else ""]))
    prefix = f"EXPLAIN ({text_options}) " if text_options else "EXPLAIN "
    text = "\n".join(str(line) for line in _explain_rows(connection, prefix + target))
    json_options = ", ".join(filter(None, [options, "VERBOSE", "FORMAT JSON"]))
    json_rows = _explain_rows(connection, f"EXPLAIN ({json_options}) {target}")
    return text, scans_of(json_rows[0] if json_rows else None)


def explain(connection: psycopg.Connection, statement: str, version_num: int, *,
            analyse_selects: bool = False) -> Plan:
    """The plan of one normalised statement (see the module docstring for how and when)."""
    kind = statement_kind(statement)
    if kind not in PLANNABLE_KINDS:
        return Plan(None, reason=f"{kind.upper() or 'this'} statement has no plan")
    body = _single_statement(statement)
    if body is None:
        return Plan(None, reason="the text holds more than one statement")
    parameters = parameter_count(body)
    analyse = analyse_selects and parameters == 0 and is_read_only_select(body)
    try:
        if parameters == 0:
            method = "EXPLAIN ANALYZE in a rolled-back read-only transaction" if analyse else "EXPLAIN"
            if analyse:
                with connection.transaction(force_rollback=True):
                    connection.execute("SET TRANSACTION READ ONLY")
                    text, scans = _plan_pair(connection, body, "", analyse=True)
            else:
                text, scans = _plan_pair(connection, body, "", analyse=False)
        elif version_num >= GENERIC_PLAN_OPTION_SINCE:
            method = "EXPLAIN (GENERIC_PLAN)"
            text, scans = _plan_pair(connection, body, "GENERIC_PLAN", analyse=False)
        else:
            method = "generic plan: PREPARE, plan_cache_mode = force_generic_plan, EXPLAIN EXECUTE with NULLs"
            text, scans = _generic_plan_by_prepare(connection, body, parameters)
    except psycopg.errors.InsufficientPrivilege as exc:
        if kind not in READ_ONLY_KINDS:
            return Plan(None, reason=f"the digest's read-only role may not plan this {kind.upper()} (EXPLAIN "
                                     "checks the write privilege); the statement was not run")
        return Plan(None, reason=_first_line(exc))
    except psycopg.Error as exc:
        return Plan(None, reason=_first_line(exc))
    return Plan(text, scans, method, analysed=analyse)


def _generic_plan_by_prepare(connection: psycopg.Connection, body: str, parameters: int) -> tuple[str, tuple]:
    nulls = ", ".join(["NULL"] * parameters)
    connection.execute("SET plan_cache_mode = force_generic_plan", prepare=False)
    try:
        connection.execute(f"PREPARE {PREPARED_NAME} AS {body}", prepare=False)
        try:
            return _plan_pair(connection, f"EXECUTE {PREPARED_NAME}({nulls})", "", analyse=False)
        finally:
            _quietly(connection, f"DEALLOCATE {PREPARED_NAME}")
    finally:
        _quietly(connection, "RESET plan_cache_mode")


def _quietly(connection: psycopg.Connection, sql: str) -> None:
    with contextlib.suppress(psycopg.Error):
        connection.execute(sql, prepare=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def plan_entry(queryid: str, row: Mapping[str, Any], plan: Plan) -> str:
    """One statement's section of the plans attachment (Markdown)."""
    head = (f"## Statement {queryid}\n\ncalls {row['calls']}, mean {float(row['mean_ms']):.2f} ms, "
            f"total {float(row['total_ms']):.1f} ms\n\n```sql\n{str(row['query']).strip()}\n```\n")
    if plan.text is None:
        return head + f"\nNo plan: {plan.reason}\n"
    return head + f"\nPlan ({plan.method}):\n\n```\n{plan.text}\n```\n"


def plans_attachment(database: str, entries: list[str]) -> Attachment:
    body = f"# Plans of the top statements in {database}\n\n" + "\n".join(entries)
    return Attachment(f"database-{database}-plans.md", f"{database}: statements and plans", body.encode())


def statement_finding(key: str, section: str, database: str, row: Mapping[str, Any], plan: Plan,
                      overall_ms: float, slow_mean_ms: float) -> Finding:
    """One ranked statement: its figures and the one-line summary of its plan."""
    mean_ms, total_ms, calls = float(row["mean_ms"]), float(row["total_ms"]), int(row["calls"])
    share = total_ms / overall_ms if overall_ms > 0 else 0.0
    figures = (f"mean {duration_text(mean_ms)}, total {duration_text(total_ms)} ({share:.0%} of all statement "
               f"time), {calls} calls")
    analysed = " [EXPLAIN ANALYZE]" if plan.analysed else ""
    return Finding(key=key, section=section, subject=f"{database}: {one_line(row['query'])}",
                   detail=f"{figures}; plan{analysed}: {plan.summary()}",
                   severity="warning" if mean_ms >= slow_mean_ms else "info",
                   numbers={"mean_ms": mean_ms, "total_ms": total_ms, "calls": float(calls), "total_share": share})


def duration_text(milliseconds: float) -> str:
    if milliseconds < 1000:
        return f"{milliseconds:.1f} ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.2f} s"
    if milliseconds < 3_600_000:
        return f"{milliseconds / 60_000:.1f} min"
    return f"{milliseconds / 3_600_000:.1f} h"


def one_line(statement: str, limit: int = SUBJECT_STATEMENT_CHARS) -> str:
    flat = " ".join(str(statement).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
