"""The database digest's pure parts: filter parsing, selectivity, index statements, statement
classification, growth forecast, configuration. The server-facing behaviour is in
test_database_digest.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.digests.database import DatabaseConfig
from bot.digests.database import explain as plans
from bot.digests.database.build import size_forecast
from bot.digests.database.indexes import (
    ColumnStatistics,
    ExistingIndex,
    create_index_statement,
    equality_selectivity,
    filter_equality_columns,
    find_candidate,
    index_name_for,
)
from bot.digests.database.queries import statement_queries, statement_time_columns

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
MIB = 2**20


@pytest.mark.parametrize(("filter_text", "columns"), [
    ("(customer_id = $1)", ["customer_id"]),
    ("((orders.customer_id = $1) AND (orders.note IS NULL))", ["customer_id"]),
    ("((status)::text = 'paid'::text)", ["status"]),
    ("((kind)::text = ANY ('{a,b}'::text[]))", ["kind"]),
    ('("Region" = $1)', ["Region"]),
    ("((a >= $1) AND (b = $2) AND (a = $3))", ["b", "a"]),
    ("(lower(email) = $1)", []),
    ("(x <> $1)", []),
    (None, []),
])
def test_equality_columns_are_read_from_a_plan_filter(filter_text, columns):
    assert filter_equality_columns(filter_text) == columns


def test_selectivity_follows_pg_stats_conventions():
    assert equality_selectivity(ColumnStatistics("c", 1000, 0.0, None), 1e6) == pytest.approx(0.001)
    assert equality_selectivity(ColumnStatistics("c", -0.5, 0.0, None), 1e6) == pytest.approx(2e-6)
    assert equality_selectivity(ColumnStatistics("c", 10, 0.5, None), 1e6) == pytest.approx(0.05)
    assert equality_selectivity(ColumnStatistics("c", None, None, None), 1e6) is None


STATS = {
    "customer_id": ColumnStatistics("customer_id", 20000, 0.0, [0.0001]),
    "region": ColumnStatistics("region", 40, 0.0, [0.2]),
    "status": ColumnStatistics("status", 2, 0.0, [0.66, 0.34]),
}


def _candidate(filters, indexes=()):
    return find_candidate("public", "orders", 200_000, filters, STATS, list(indexes), max_selectivity=0.05)


def test_the_most_selective_unindexed_column_is_suggested():
    candidate = _candidate(["((status = $1) AND (region = $2) AND (customer_id = $3))"])
    assert candidate.column == "customer_id"
    assert candidate.statement == ("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx "
                                   "ON public.orders (customer_id);")


def test_no_suggestion_for_unselective_unknown_or_already_indexed_columns():
    assert _candidate(["(status = $1)"]) is None
    assert _candidate(["(no_such_column = $1)"]) is None
    covered = ExistingIndex("orders_customer_id_idx", ["customer_id", "id"], valid=True, partial=False)
    assert _candidate(["(customer_id = $1)"], [covered]) is None
    assert _candidate(["(customer_id = $1) AND (region = $2)"], [covered]).column == "region"


def test_an_invalid_index_left_by_a_failed_build_is_named():
    broken = ExistingIndex("orders_customer_id_idx", ["customer_id"], valid=False, partial=False)
    assert _candidate(["(customer_id = $1)"], [broken]).invalid_index == "orders_customer_id_idx"


def test_identifiers_are_quoted_when_needed_and_names_fit_63_bytes():
    statement = create_index_statement("Sales", "order", ["user"], keywords=["order", "user"])
    assert statement == ('CREATE INDEX CONCURRENTLY IF NOT EXISTS order_user_idx ON "Sales"."order" ("user");')
    name = index_name_for("t" * 80, ["c"])
    assert len(name.encode()) <= 63 and name.endswith("_idx")


@pytest.mark.parametrize(("statement", "kind", "read_only"), [
    ("SELECT * FROM orders WHERE id = $1", "select", True),
    ("/* app */ (SELECT 1)", "select", True),
    ("WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved", "with", False),
    ("UPDATE orders SET note = $1", "update", False),
    ("SELECT * FROM orders FOR UPDATE", "select", False),
    ("SELECT nextval($1)", "select", False),
    ("SELECT * INTO copy FROM orders", "select", False),
    ("VACUUM orders", "vacuum", False),
])
def test_only_plain_reads_may_be_analysed(statement, kind, read_only):
    assert plans.statement_kind(statement) == kind
    assert plans.is_read_only_select(statement) is read_only


def test_statements_without_a_plan_are_refused_before_reaching_the_server():
    assert "no plan" in plans.explain(None, "VACUUM orders", 150000).summary()
    assert plans.explain(None, "SELECT 1; DROP TABLE orders", 150000).reason == "the text holds more than one statement"
    assert plans.parameter_count("SELECT $1, $12, $3") == 12


def test_scans_are_read_from_a_json_plan():
    document = [{"Plan": {"Node Type": "Hash Join", "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public", "Alias": "o",
         "Filter": "(o.customer_id = $1)"},
        {"Node Type": "Index Scan", "Relation Name": "customers", "Schema": "public", "Index Name": "customers_pkey"},
    ]}}]
    scans = plans.scans_of(document)
    assert [(scan.node_type, scan.relation) for scan in scans] == [("Seq Scan", "orders"), ("Index Scan", "customers")]
    plan = plans.Plan("...", scans, "EXPLAIN")
    assert plan.summary() == ("Seq Scan on public.orders (Filter: (o.customer_id = $1)); "
                              "Index Scan on public.customers using customers_pkey")


def test_statement_columns_follow_the_server_version():
    assert statement_time_columns(150000) == ("mean_exec_time", "total_exec_time")
    assert statement_time_columns(120000) == ("mean_time", "total_time")
    assert "ORDER BY s.total_exec_time DESC" in statement_queries(160000, "public")["total-time"]


def test_size_without_history_waits_for_the_next_run():
    forecast = size_forecast(100 * MIB, None, None, NOW, 1000 * MIB)
    assert forecast.growth_per_day is None and "next run" in forecast.sentence and "10%" in forecast.sentence


def test_growth_forecasts_the_fill_date_and_says_it_is_an_estimate():
    forecast = size_forecast(600 * MIB, 500 * MIB, NOW - timedelta(days=2), NOW, 1000 * MIB)
    assert forecast.growth_per_day == pytest.approx(50 * MIB)
    assert forecast.days_to_full == pytest.approx(8)
    assert "2025-03-11" in forecast.sentence and "estimate" in forecast.sentence


def test_shrinking_slow_or_too_recent_history_has_no_fill_date():
    assert size_forecast(500 * MIB, 600 * MIB, NOW - timedelta(days=1), NOW, 1000 * MIB).days_to_full is None
    assert "not full within" in size_forecast(500 * MIB, 500 * MIB - 1, NOW - timedelta(days=1), NOW, 10**15).sentence
    assert size_forecast(500 * MIB, 400 * MIB, NOW - timedelta(minutes=5), NOW, 1000 * MIB).growth_per_day is None


@pytest.mark.parametrize("entry", [
    {"name": "a"},
    {"name": "a", "dsn": "host=x", "dsn_env": "X"},
    {"name": "a", "dsn_env": "X", "unknown": 1},
    {"name": "a b", "dsn_env": "X"},
])
def test_a_database_entry_needs_exactly_one_dsn_and_known_fields(entry):
    with pytest.raises(ValidationError):
        DatabaseConfig.model_validate({"databases": [entry]})


def test_database_names_are_unique_and_defaults_are_sane():
    with pytest.raises(ValidationError, match="unique"):
        DatabaseConfig.model_validate({"databases": [{"name": "a", "dsn_env": "X"}, {"name": "a", "dsn_env": "Y"}]})
    target = DatabaseConfig.model_validate({"databases": [{"name": "a", "dsn_env": "X"}]}).databases[0]
    assert target.explain and not target.explain_analyze_selects and target.top == 5
    assert DatabaseConfig().databases == []
