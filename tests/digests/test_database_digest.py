"""The database digest against a real PostgreSQL (tests/digests/pg_server.py).

The workload runs as the superuser; the digest connects as a read-only role (pg_monitor and
pg_read_all_data, default_transaction_read_only), as it would in production. The digest is
built once per module and each test checks one behaviour of that report, except the tests that
need their own configuration (growth, unreachable, replication).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bot.digests.database import DatabaseConfig, build
from bot.digests.database.build import _connect
from bot.digests.model import DigestContext, DigestReport
from bot.sandbox.promstack import free_port
from tests.digests.golden import check_digest_golden
from tests.digests.pg_server import PostgresServer, pg_server  # noqa: F401 - fixture

DIGEST_ROLE, DIGEST_PASSWORD = "digest_ro", "ro-digest-secret"
ORDERS_ROWS, CUSTOMERS = 200_000, 20_000
ORDER_LOOKUPS = 30
STATS_WAIT_SECONDS = 10
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

SETUP = (
    "CREATE EXTENSION pg_stat_statements",
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, note text)",
    f"INSERT INTO orders SELECT g, g % {CUSTOMERS}, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'open' END, NULL "
    f"FROM generate_series(1, {ORDERS_ROWS}) g",
    "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL)",
    "INSERT INTO events SELECT g, (ARRAY['click', 'view', 'buy'])[1 + g % 3] FROM generate_series(1, 150000) g",
    "CREATE TABLE churn (id bigint PRIMARY KEY, payload text) WITH (autovacuum_enabled = false)",
    "INSERT INTO churn SELECT g, repeat('x', 20) FROM generate_series(1, 50000) g",
    "CREATE TABLE shrunk (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false)",
    "INSERT INTO shrunk SELECT g FROM generate_series(1, 200000) g",
    # a sample as large as the table: pg_stats (and so the digest's wording) is the same every run
    "ALTER TABLE orders ALTER COLUMN customer_id SET STATISTICS 1000",
    "ANALYZE",
    "DELETE FROM churn WHERE id > 10000",
    "DELETE FROM shrunk WHERE id % 10 <> 0",
    "VACUUM ANALYZE shrunk",
)


def _role(server: PostgresServer) -> None:
    with server.admin() as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DIGEST_ROLE,)).fetchone():
            return
        admin.execute(f"CREATE ROLE {DIGEST_ROLE} LOGIN PASSWORD '{DIGEST_PASSWORD}' IN ROLE pg_monitor, pg_read_all_data")
        admin.execute(f"ALTER ROLE {DIGEST_ROLE} SET default_transaction_read_only = on")


def _wait_for_table_stats(server: PostgresServer, dbname: str, table: str, seq_scans: int) -> None:
    """Table statistics reach the shared view when the backend flushes them (at the latest at exit)."""
    deadline = time.monotonic() + STATS_WAIT_SECONDS
    with server.admin(dbname) as admin:
        while time.monotonic() < deadline:
            row = admin.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()
            if row and row[0] >= seq_scans:
                return
            time.sleep(0.1)
    raise AssertionError(f"statistics of {table} never showed {seq_scans} sequential scans")


@pytest.fixture(scope="module")
def shop(pg_server: PostgresServer) -> PostgresServer:
    """Databases `shop` (tables and a workload) and `noext` (no pg_stat_statements)."""
    _role(pg_server)
    with pg_server.admin() as admin:
        admin.execute("CREATE DATABASE shop")
        admin.execute("CREATE DATABASE noext")
    with pg_server.admin("shop") as admin:
        for statement in SETUP:
            admin.execute(statement)
        for customer in range(ORDER_LOOKUPS):
            admin.execute("SELECT * FROM orders WHERE customer_id = %s", (customer,))
        for kind in ("click", "view", "buy") * 4:
            admin.execute("SELECT count(*) FROM events WHERE kind = %s", (kind,))
        for number in range(6):
            admin.execute("UPDATE orders SET note = 'seen' WHERE customer_id = %s", (CUSTOMERS + number,))
            admin.execute("SELECT count(*) FROM orders WHERE note IS NULL")
    _wait_for_table_stats(pg_server, "shop", "orders", ORDER_LOOKUPS)
    _wait_for_table_stats(pg_server, "shop", "events", 12)
    return pg_server


def _config(server: PostgresServer, **extra) -> DatabaseConfig:
    settings = {"min_seq_scans": 10, "top": 8, "explain_analyze_selects": True, "min_index_bytes": 2**20, **extra}
    return DatabaseConfig.model_validate({"databases": [
        {"name": "shop", "dsn": server.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "shop"), **settings},
        {"name": "noext", "dsn": server.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "noext")},
    ]})


def _updates(server: PostgresServer) -> int:
    with server.admin("shop") as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        return admin.execute("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'orders'").fetchone()[0]


@pytest.fixture(scope="module")
def report_and_updates(shop: PostgresServer) -> tuple[DigestReport, int, int]:
    before = _updates(shop)
    report = build(_config(shop), DigestContext(clusters=None, now=NOW))
    time.sleep(1.2)  # let any statistics of the digest's session arrive
    return report, before, _updates(shop)


@pytest.fixture(scope="module")
def report(report_and_updates) -> DigestReport:
    return report_and_updates[0]


def _finding(report: DigestReport, key: str):
    matches = [finding for finding in report.findings if finding.key == key]
    assert matches, f"no finding {key}; keys: {[finding.key for finding in report.findings]}"
    return matches[0]


def test_the_slow_lookup_is_ranked_with_its_generic_plan(report):
    lookups = [finding for finding in report.findings if finding.section == "Slowest statements"
               and "customer_id = $1" in finding.subject and "SELECT" in finding.subject]
    assert len(lookups) == 1
    assert lookups[0].key.startswith("database/shop/slowest/")
    assert "Seq Scan on public.orders" in lookups[0].detail and "customer_id = $1" in lookups[0].detail
    assert lookups[0].numbers["calls"] == ORDER_LOOKUPS and lookups[0].numbers["mean_ms"] > 0
    assert any(finding.section == "Most total time" and "customer_id = $1" in finding.subject
               for finding in report.findings)
    plans = next(attachment for attachment in report.attachments if attachment.filename == "database-shop-plans.md")
    text = plans.content.decode()
    assert "force_generic_plan" in text and "Seq Scan on orders" in text


def test_a_selective_filtered_column_gets_a_concurrent_index_suggestion(report, shop):
    finding = _finding(report, "database/shop/seq-scans/public.orders")
    assert finding.section == "Sequential scans on large tables" and finding.severity == "warning"
    assert finding.fix is not None and finding.fix.runbook == "create-index"
    assert finding.fix.params["database"] == "shop" and finding.fix.params["table"] == "public.orders"
    assert finding.fix.params["columns"] == "customer_id"
    statement = finding.fix.params["statement"]
    assert statement.startswith("CREATE INDEX CONCURRENTLY") and statement.endswith("ON public.orders (customer_id);")
    assert statement in finding.detail
    with shop.admin("shop") as admin:  # suggested, never run
        names = [row[0] for row in admin.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")]
    assert names == ["orders_pkey"]


def test_an_unselective_filtered_column_gets_no_suggestion(report):
    finding = _finding(report, "database/shop/seq-scans/public.events")
    assert finding.fix is None and finding.severity == "info"
    assert "no selective column" in finding.detail


def test_connections_are_reported_against_usable_slots(report):
    finding = _finding(report, "database/shop/connections/server")
    assert finding.numbers["available"] == 40 - 3  # max_connections less superuser_reserved_connections
    assert 1 <= finding.numbers["used"] < finding.numbers["available"]
    assert "max_connections 40" in finding.detail


def test_analyze_runs_only_on_read_only_selects(report_and_updates, shop):
    report, updates_before, updates_after = report_and_updates
    assert updates_after == updates_before
    with shop.admin("shop") as admin:
        explained = [row[0] for row in admin.execute(
            "SELECT query FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            "WHERE r.rolname = %s AND query ILIKE 'EXPLAIN%%'", (DIGEST_ROLE,))]
    analysed = [query for query in explained if "ANALYZE" in query.upper()]
    assert analysed, explained
    assert all("SELECT count(*) FROM orders WHERE note IS NULL" in query for query in analysed), analysed
    update = next(finding for finding in report.findings if finding.section == "Slowest statements"
                  and finding.subject.startswith("shop: UPDATE"))
    assert "ANALYZE" not in update.detail and "was not run" in update.detail
    counted = next(finding for finding in report.findings if "note IS NULL" in finding.subject)
    assert "[EXPLAIN ANALYZE]" in counted.detail


def test_dead_tuples_and_an_oversized_index_are_bloat_estimates(report):
    churn = _finding(report, "database/shop/bloat/public.churn")
    # n_live_tup is itself an estimate (ANALYZE and pending insert counts can overlap), dead tuples are exact
    assert churn.numbers["n_dead_tup"] == 40_000 and churn.numbers["dead_ratio"] >= 0.3
    assert "estimate" in churn.detail
    index = _finding(report, "database/shop/bloat/public.shrunk_pkey")
    assert index.numbers["wasted_ratio"] >= 0.5 and "estimate" in index.detail


def test_a_database_without_the_extension_says_how_to_enable_it(report):
    lines = [line for line in report.problems if line.startswith("noext:")]
    assert any("CREATE EXTENSION pg_stat_statements" in line for line in lines), report.problems
    assert _finding(report, "database/noext/connections/server")  # its other sections still come


def test_size_is_in_the_summary(report):
    assert report.summary["size_bytes:shop"] > ORDERS_ROWS * 10
    assert "database/shop/size/database" in {finding.key for finding in report.findings}
    assert report.queries and any("pg_stat_statements" in query for query in report.queries)


def test_growth_since_the_previous_run_forecasts_the_fill_date(shop):
    first = build(_config(shop), DigestContext(clusters=None, now=NOW))
    size = first.summary["size_bytes:shop"]
    grown_per_day = 20 * 2**20
    config = _config(shop, disk_bytes=int(size + 5 * grown_per_day))
    context = DigestContext(clusters=None, now=NOW, previous_summary={"size_bytes:shop": size - grown_per_day},
                            previous_at=NOW - timedelta(days=1))
    finding = _finding(build(config, context), "database/shop/size/database")
    assert finding.severity == "critical"  # 5 days left, under fill_critical_days (7)
    assert 4 <= finding.numbers["days_to_full"] <= 6
    assert "full in about" in finding.detail and "estimate" in finding.detail


def test_unreachable_and_refused_databases_are_problem_lines_without_the_password(shop):
    config = DatabaseConfig.model_validate({"databases": [
        {"name": "down", "dsn": f"host=127.0.0.1 port={free_port()} user=x password=hunter2-secret dbname=x"},
        {"name": "wrong", "dsn": shop.dsn(DIGEST_ROLE, "not-the-password-secret", "shop")},
        {"name": "unset", "dsn_env": "OPSBOT_TEST_DSN_THAT_IS_NOT_SET"},
        {"name": "shop", "dsn": shop.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "shop"), "min_seq_scans": 10},
    ]})
    report = build(config, DigestContext(clusters=None, now=NOW))
    assert any(line.startswith("down: unreachable") for line in report.problems), report.problems
    assert any(line.startswith("wrong: could not log in") for line in report.problems), report.problems
    assert any(line.startswith("unset: environment variable") for line in report.problems), report.problems
    everything = repr(report)
    assert "hunter2-secret" not in everything and "not-the-password-secret" not in everything
    assert "database/shop/connections/server" in {finding.key for finding in report.findings}
    assert report.summary["databases_checked"] == 1 and report.summary["databases_unchecked"] == 3


def test_the_dsn_can_come_from_the_environment(shop, monkeypatch):
    monkeypatch.setenv("OPSBOT_TEST_SHOP_DSN", shop.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "shop"))
    config = DatabaseConfig.model_validate({"databases": [{"name": "shop", "dsn_env": "OPSBOT_TEST_SHOP_DSN"}]})
    report = build(config, DigestContext(clusters=None, now=NOW))
    assert report.summary["databases_checked"] == 1 and not any(p.startswith("shop:") for p in report.problems)


def test_the_session_is_read_only_even_for_a_role_that_could_write(shop):
    target = DatabaseConfig.model_validate({"databases": [{"name": "shop", "dsn": shop.dsn(dbname="shop")}]}).databases[0]
    with _connect(target, target.dsn) as connection:
        assert connection.execute("SHOW default_transaction_read_only").fetchone()["default_transaction_read_only"] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("CREATE TABLE should_not_exist (id int)")


def test_replication_lag_is_reported_on_the_primary_and_the_standby(shop):
    standby = shop.make_standby()
    try:
        deadline = time.monotonic() + STATS_WAIT_SECONDS
        with shop.admin() as admin:
            while not admin.execute("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'").fetchone():
                assert time.monotonic() < deadline, "the standby never streamed"
                time.sleep(0.1)
        config = DatabaseConfig.model_validate({"databases": [
            {"name": "primary", "dsn": shop.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "shop")},
            {"name": "replica", "dsn": standby.dsn(DIGEST_ROLE, DIGEST_PASSWORD, "shop")},
        ]})
        report = build(config, DigestContext(clusters=None, now=NOW))
    finally:
        standby.stop()
    replicas = [finding for finding in report.findings if finding.key.startswith("database/primary/replication/")]
    assert len(replicas) == 1 and replicas[0].section == "Replication" and "streaming" in replicas[0].detail
    standby_finding = _finding(report, "database/replica/replication/standby")
    assert "WAL receiver streaming" in standby_finding.detail
    assert any(note.startswith("replica:") and "standby" in note for note in report.notes)


STABLE_SECTIONS = ("Sequential scans on large tables", "Connections", "Size")  # not ranked by measured time


def test_the_digest_as_slack_receives_it(report):
    """The statement sections rank by measured time (their order can differ between runs): the
    golden pins the sections that do not, with digits masked."""
    stable = dataclasses.replace(report, findings=tuple(f for f in report.findings if f.section in STABLE_SECTIONS),
                                 queries=report.queries[:3], notes=())
    rendered = check_digest_golden("digest_database", stable, mask_numbers=True)
    assert "CREATE INDEX CONCURRENTLY" in str(rendered["blocks"])
