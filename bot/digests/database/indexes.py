"""Missing-index candidates: large tables read by sequential scans whose filter an index would serve.

The evidence is joined from three places:
- `pg_stat_user_tables`: the table is large and mostly read by sequential scans;
- the plans of the top statements (`explain.ScanNode`): a `Seq Scan` on that table with a filter
  comparing a column for equality (`customer_id = $1`, `= ANY (...)`);
- `pg_stats`: that column is selective (an equality keeps at most `max_selectivity` of the rows)
  and `pg_index`: no valid index already starts with it.

Invariants:
- Pure: no database access here; the caller reads the catalogue and passes rows in.
- Keep the wording of `seq_scan_finding` plain text: table and column names come from the database.
- A candidate is a suggestion for a DBA: the statement is `CREATE INDEX CONCURRENTLY IF NOT
  EXISTS` (no long write lock, cannot run in a transaction) and the digest never runs it.
- Only names that are real columns of the table (from `pg_attribute`) end up in a statement,
  and every identifier is quoted unless it is a plain lower-case non-keyword name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.digests.database.explain import ScanNode
from bot.digests.model import Finding, Fix
from bot.remediation.index_names import index_name_for

SEQUENTIAL_SCAN = "Seq Scan"
FIX_RUNBOOK = "create-index"
PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")
# `col = ...`, `(col)::text = ...`, `alias.col = ANY (...)`, `"Col" = ...` in a plan's Filter; a match
# right after a function's opening parenthesis (`lower(email) = $1`) is not a plain column.
EQUALITY_COMPARISON = re.compile(
    r'''(?<![\w$."])(?:(?:"[^"]+"|[A-Za-z_][\w$]*)\.)?(?P<column>"[^"]+"|[A-Za-z_][\w$]*)\)?'''
    r'''(?:::[\w ]+?(?:\[\])?\)?)*\s+=\s+'''
)


@dataclass(frozen=True)
class ColumnStatistics:
    column: str
    n_distinct: float | None
    null_frac: float | None
    most_common_freqs: Sequence[float] | None


@dataclass(frozen=True)
class ExistingIndex:
    name: str
    columns: Sequence[str | None]  # None: an expression
    valid: bool
    partial: bool


@dataclass(frozen=True)
class IndexCandidate:
    schema: str
    table: str
    column: str
    selectivity: float
    most_common_share: float | None
    statement: str
    index_name: str
    invalid_index: str | None = None  # an invalid index on the same column, left by a failed build


def filter_equality_columns(filter_text: str | None) -> list[str]:
    """Column names compared for equality in a plan's Filter, in order, without repeats."""
    if not filter_text:
        return []
    seen: list[str] = []
    for match in EQUALITY_COMPARISON.finditer(filter_text):
        before = filter_text[: match.start()].rstrip("(")
        if before and (before[-1].isalnum() or before[-1] in "_$"):
            continue  # an argument of a function call, not the column itself
        column = match.group("column").strip('"')
        if column not in seen:
            seen.append(column)
    return seen


def equality_selectivity(stats: ColumnStatistics, live_rows: float) -> float | None:
    """The share of rows an equality on the column keeps for a typical value (None: no statistics).

    distinct values: n_distinct when positive, else -n_distinct * rows (pg_stats' convention)."""
    if stats.n_distinct is None or live_rows <= 0:
        return None
    distinct = stats.n_distinct if stats.n_distinct > 0 else -stats.n_distinct * live_rows
    if distinct <= 0:
        return None
    return min(1.0, (1.0 - (stats.null_frac or 0.0)) / distinct)


def quote_identifier(name: str, keywords: Iterable[str] = ()) -> str:
    """`name` as SQL: bare when plain lower case and not a keyword, else double-quoted."""
    if PLAIN_IDENTIFIER.fullmatch(name) and name not in set(keywords):
        return name
    return '"' + name.replace('"', '""') + '"'


def create_index_statement(schema: str, table: str, columns: Sequence[str], keywords: Iterable[str] = ()) -> str:
    words = set(keywords)
    name = index_name_for(table, columns)
    column_list = ", ".join(quote_identifier(column, words) for column in columns)
    return (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_identifier(name, words)} "
            f"ON {quote_identifier(schema, words)}.{quote_identifier(table, words)} ({column_list});")


def seq_scan_filters(scans: Iterable[ScanNode], schema: str, table: str) -> list[str]:
    """The filters of sequential scans of `schema.table` in the given plans."""
    return [scan.filter for scan in scans
            if scan.node_type == SEQUENTIAL_SCAN and scan.relation == table
            and (scan.schema in (None, schema)) and scan.filter]


def find_candidate(schema: str, table: str, live_rows: float, filters: Sequence[str],
                   statistics: Mapping[str, ColumnStatistics], indexes: Sequence[ExistingIndex], *,
                   max_selectivity: float, keywords: Iterable[str] = ()) -> IndexCandidate | None:
    """The most selective filtered column not yet leading a valid index, if selective enough."""
    covered = {index.columns[0] for index in indexes if index.valid and not index.partial and index.columns}
    invalid = {index.columns[0]: index.name for index in indexes if not index.valid and index.columns}
    best: tuple[float, str] | None = None
    for filter_text in filters:
        for column in filter_equality_columns(filter_text):
            stats = statistics.get(column)
            if stats is None or column in covered:
                continue
            selectivity = equality_selectivity(stats, live_rows)
            if selectivity is None or selectivity > max_selectivity:
                continue
            if best is None or selectivity < best[0]:
                best = (selectivity, column)
    if best is None:
        return None
    selectivity, column = best
    stats = statistics[column]
    common = max(stats.most_common_freqs) if stats.most_common_freqs else None
    return IndexCandidate(schema, table, column, selectivity, common,
                          create_index_statement(schema, table, [column], keywords),
                          index_name_for(table, [column]), invalid.get(column))


def share_text(fraction: float) -> str:
    """A fraction as a percentage with two significant digits: 0.000025 -> "0.0025%"."""
    return f"{fraction * 100:.2g}%"


def seq_scan_finding(key: str, section: str, database: str, table: Mapping[str, Any], filtered: bool,
                     candidate: IndexCandidate | None, fix: Fix | None, explained: bool = True) -> Finding:
    """A large table read by sequential scans, with the index suggestion when there is one."""
    scans, rows_read, index_scans = int(table["seq_scan"]), int(table["seq_tup_read"]), int(table["idx_scan"])
    live = int(table["n_live_tup"])
    detail = (f"{scans} sequential scans read {rows_read} rows (about {rows_read // max(scans, 1)} per scan) "
              f"against {index_scans} index scans; {live} live rows")
    if candidate is not None:
        common = (f", the most common value {share_text(candidate.most_common_share)}"
                  if candidate.most_common_share is not None else "")
        detail += (f". The top statements filter it on {candidate.column} (a value keeps about "
                   f"{share_text(candidate.selectivity)} of rows{common}), which no valid index leads. Suggested for a DBA "
                   f"to approve (the digest never runs it): {candidate.statement}")
        if candidate.invalid_index:
            detail += f" The invalid index {candidate.invalid_index} (a failed build) should be dropped first."
    elif filtered:
        detail += ". The top statements filter it, but on no selective column without an index"
    elif not explained:
        detail += ". Plans are off for this database (explain: false), so no filtered column is known"
    else:
        detail += ". None of the top statements scans it: look for its readers in pg_stat_statements"
    numbers = {"seq_scan": float(scans), "seq_tup_read": float(rows_read), "idx_scan": float(index_scans),
               "n_live_tup": float(live)}
    if candidate is not None:
        numbers["selectivity"] = candidate.selectivity
    return Finding(key=key, section=section, subject=f"{database}: table {table['schema_name']}.{table['table_name']}",
                   detail=detail, severity="warning" if candidate is not None else "info", fix=fix, numbers=numbers)


def fix_for(database_name: str, candidate: IndexCandidate | None) -> Fix | None:
    """The `create-index` runbook step a DBA may approve; `columns` is comma-separated text."""
    if candidate is None:
        return None
    return Fix(FIX_RUNBOOK, {"database": database_name, "table": f"{candidate.schema}.{candidate.table}",
                             "columns": candidate.column, "statement": candidate.statement},
               title=f"Create index {candidate.index_name} on {candidate.schema}.{candidate.table} ({candidate.column})")
