"""The SQL of the database digest, declared as data, and the session it runs in.

Invariants:
- Every statement here only reads (catalogue views, statistics views, size functions). The
  session is also opened read-only (`SESSION_SETUP`, and `default_transaction_read_only` in the
  connection options), with a statement and lock timeout, so even a wrong query cannot write or
  wait on a lock for long.
- Parameters are bound by psycopg (`%(name)s`), never formatted into the text; the only text
  substitution is the pg_stat_statements schema and its column names, both read from the
  catalogue or from `STATEMENT_TIME_COLUMNS`.
- Supported servers: PostgreSQL 12 and later. pg_stat_statements renamed `mean_time` and
  `total_time` in 1.8 (PostgreSQL 13); `reserved_connections` exists from 16 and reads as 0
  before.
- The digest's own statements are left out of the statement rankings (`userid` of its role).
"""

from __future__ import annotations

from collections.abc import Mapping

APPLICATION_NAME = "opsbot-digest"

# SET takes no bound parameters: the timeouts go through set_config (session-wide: false).
SESSION_SETUP: tuple[str, ...] = (
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SELECT set_config('statement_timeout', %(statement_timeout_ms)s, false)",
    "SELECT set_config('lock_timeout', %(lock_timeout_ms)s, false)",
    "SELECT set_config('idle_in_transaction_session_timeout', %(statement_timeout_ms)s, false)",
)

# (minimum server_version_num, mean column, total column), newest first.
STATEMENT_TIME_COLUMNS: tuple[tuple[int, str, str], ...] = (
    (130000, "mean_exec_time", "total_exec_time"),
    (0, "mean_time", "total_time"),
)

SERVER_INFO = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_database() AS database,
       pg_is_in_recovery() AS in_recovery,
       current_user AS role
"""

EXTENSION = """
SELECT e.extversion AS version, quote_ident(n.nspname) AS schema_sql
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

PRELOADED_LIBRARIES = "SELECT current_setting('shared_preload_libraries') AS libraries"

_STATEMENTS = """
SELECT s.queryid, s.query, s.calls, s.{mean} AS mean_ms, s.{total} AS total_ms, s.rows
FROM {schema}.pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND s.calls >= %(min_calls)s
ORDER BY s.{order} DESC
LIMIT %(top)s
"""

_STATEMENTS_TOTAL = """
SELECT COALESCE(sum(s.{total}), 0) AS total_ms
FROM {schema}.pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
"""

LARGE_SEQ_SCANNED_TABLES = """
SELECT t.relid, t.schemaname AS schema_name, t.relname AS table_name,
       t.seq_scan, t.seq_tup_read, COALESCE(t.idx_scan, 0) AS idx_scan, t.n_live_tup
FROM pg_stat_user_tables t
WHERE t.n_live_tup >= %(large_table_rows)s
  AND t.seq_scan >= %(min_seq_scans)s
  AND t.seq_scan::float / NULLIF(t.seq_scan + COALESCE(t.idx_scan, 0), 0) >= %(min_seq_scan_share)s
ORDER BY t.seq_tup_read DESC
LIMIT %(limit)s
"""

COLUMN_STATISTICS = """
SELECT a.attname AS column_name, s.n_distinct, s.null_frac, s.most_common_freqs
FROM pg_attribute a
LEFT JOIN pg_stats s ON s.schemaname = %(schema_name)s AND s.tablename = %(table_name)s AND s.attname = a.attname
WHERE a.attrelid = %(relid)s AND a.attnum > 0 AND NOT a.attisdropped
"""

TABLE_INDEXES = """
SELECT c.relname AS index_name, i.indisvalid AS valid, i.indpred IS NOT NULL AS partial,
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.position) AS columns
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %(relid)s
"""

KEYWORDS = "SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'"

CONNECTIONS = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state LIKE 'idle in transaction%%')
         AS idle_in_transaction,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       COALESCE(current_setting('reserved_connections', true), '0')::int AS reserved
FROM pg_stat_activity
"""

TABLE_BLOAT = """
SELECT t.schemaname AS schema_name, t.relname AS table_name, t.n_live_tup, t.n_dead_tup,
       t.n_dead_tup::float / NULLIF(t.n_live_tup + t.n_dead_tup, 0) AS dead_ratio,
       pg_table_size(t.relid) AS table_bytes,
       GREATEST(t.last_vacuum, t.last_autovacuum) AS last_vacuum
FROM pg_stat_user_tables t
WHERE t.n_dead_tup >= %(min_dead_tuples)s
  AND t.n_dead_tup::float / NULLIF(t.n_live_tup + t.n_dead_tup, 0) >= %(dead_tuple_ratio)s
ORDER BY t.n_dead_tup DESC
LIMIT %(limit)s
"""

# Estimate of a B-tree's size if it were freshly built: reltuples leaf tuples of
# (tuple overhead + MAXALIGN'd average key width from pg_stats) packed at the index's fillfactor
# (default 90) into pages less their header and B-tree special space, plus the metapage.
# Indexes on expressions, or whose columns have no statistics, are left out.
INDEX_BLOAT_ESTIMATE = """
WITH btree AS (
  SELECT i.indexrelid, i.indrelid, c.relname AS index_name, n.nspname AS schema_name, t.relname AS table_name,
         c.relpages::bigint * current_setting('block_size')::int AS index_bytes, c.reltuples,
         current_setting('block_size')::int AS block_size, i.indkey::int2[] AS keys,
         COALESCE((SELECT substring(option FROM 'fillfactor=([0-9]+)')::int
                   FROM unnest(c.reloptions) AS option WHERE option LIKE 'fillfactor=%%'), 90) AS fillfactor
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am am ON am.oid = c.relam
  WHERE am.amname = 'btree' AND c.reltuples > 0
    AND c.relpages::bigint * current_setting('block_size')::int >= %(min_index_bytes)s
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
    AND NOT (0 = ANY (i.indkey::int2[]))
), key_widths AS (
  SELECT b.indexrelid, sum(((s.avg_width + 7) / 8) * 8) AS key_bytes, bool_and(s.avg_width IS NOT NULL) AS known
  FROM btree b
  CROSS JOIN LATERAL unnest(b.keys) AS k(attnum)
  JOIN pg_attribute a ON a.attrelid = b.indrelid AND a.attnum = k.attnum
  LEFT JOIN pg_stats s ON s.schemaname = b.schema_name AND s.tablename = b.table_name AND s.attname = a.attname
  GROUP BY b.indexrelid
)
SELECT b.schema_name, b.table_name, b.index_name, b.index_bytes,
       (ceil(b.reltuples * (%(index_tuple_overhead_bytes)s + w.key_bytes)
             / ((b.block_size - %(page_overhead_bytes)s) * b.fillfactor / 100.0)) + 1) * b.block_size
         AS expected_bytes
FROM btree b JOIN key_widths w ON w.indexrelid = b.indexrelid
WHERE w.known
ORDER BY b.index_bytes DESC
LIMIT %(limit)s
"""

DATABASE_SIZE = "SELECT pg_database_size(current_database()) AS size_bytes"

REPLICAS = """
SELECT application_name, client_addr::text AS client_addr, state, sync_state,
       EXTRACT(EPOCH FROM replay_lag)::float AS replay_lag_seconds,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float AS replay_lag_bytes
FROM pg_stat_replication
ORDER BY application_name
"""

STANDBY_LAG = """
SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float AS replay_delay_seconds,
       pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS caught_up,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS receiver_status
"""


def statement_time_columns(version_num: int) -> tuple[str, str]:
    """(mean, total) column names of pg_stat_statements on this server version."""
    for minimum, mean, total in STATEMENT_TIME_COLUMNS:
        if version_num >= minimum:
            return mean, total
    raise ValueError(f"unsupported server version {version_num}")


def statement_queries(version_num: int, schema_sql: str) -> Mapping[str, str]:
    """The statement rankings for this server: `slowest` (mean), `total-time` and `sum`.

    `schema_sql` is the extension's schema, already quoted by the server's quote_ident."""
    mean, total = statement_time_columns(version_num)
    return {
        "slowest": _STATEMENTS.format(schema=schema_sql, mean=mean, total=total, order=mean),
        "total-time": _STATEMENTS.format(schema=schema_sql, mean=mean, total=total, order=total),
        "sum": _STATEMENTS_TOTAL.format(schema=schema_sql, total=total),
    }


def listed(sql: str) -> str:
    """One query as listed at the bottom of the digest: whitespace collapsed, %% unescaped."""
    return " ".join(sql.split()).replace("%%", "%")
