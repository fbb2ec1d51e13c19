"""The create-index runbook on a real PostgreSQL: lint (two dba approvals, never retried), the plan
with its statement and lock level, the whole flow through the bot with signed clicks, the
rollback of an index left INVALID, the heartbeat that keeps the lease through a long build, and
the judgement of a step whose worker died, read from the database."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, Proposal, TimelineEntry
from bot.remediation import catalog, operations, propose, sql_operations
from bot.remediation.kube_write import WriteError
from bot.remediation.sql_write import SqlWriter
from bot.runtime import REPO
from bot.timeline.chain import verify_incident
from tests.concurrency import eventually
from tests.context.sandbox import shared
from tests.digests.pg_server import PostgresServer, pg_server  # noqa: F401 - fixture
from tests.remediation.world import ALICE, MALLORY, world  # noqa: F401 - fixture

CAROL, DAVE, ERIN = "U0CAROL", "U0DAVE", "U0ERIN"
DBA_POLICY = """
id: test
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
  dba: {users: [U0CAROL, U0DAVE, U0ERIN]}
freeze_managers: [oncall]
blast_radius: {max_pods: 50, max_replica_factor: 2.0}
"""
RUNBOOK = (REPO / "runbooks" / "create-index.yaml").read_text()
STATEMENT = 'CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" ("customer_id")'
INDEX = "orders_customer_id_idx"
ROWS = 20_000


@dataclass
class Shop:
    """A database with `public.orders` owned by a login role, and the env var of its DSN."""

    server: PostgresServer
    dbname: str
    owner: str
    dsn: str
    write_env: str

    def admin(self) -> psycopg.Connection:
        return self.server.admin(self.dbname)

    def index(self) -> tuple[bool, bool] | None:
        with self.admin() as connection:
            row = connection.execute("SELECT i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c "
                                     "ON c.oid = i.indexrelid WHERE c.relname = %s", (INDEX,)).fetchone()
        return None if row is None else (row[0], row[1])

    def create_index_calls(self) -> int:
        with self.admin() as connection:
            return int(connection.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                                          "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                                          "AND query ILIKE 'CREATE INDEX CONCURRENTLY%%'").fetchone()[0])

    def writer(self, tag: str = "opsbot-test") -> SqlWriter:
        return SqlWriter({"shop": self.write_env}, tag=tag, environ={self.write_env: self.dsn})


@pytest.fixture
def shop(pg_server, monkeypatch):  # noqa: F811
    suffix = uuid.uuid4().hex[:10]
    dbname, owner, password = f"shop_{suffix}", f"shop_owner_{suffix}", f"pw-{suffix}"
    with pg_server.admin() as connection:
        connection.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD \'{password}\'')
        connection.execute(f'CREATE DATABASE "{dbname}" OWNER "{owner}"')
    with pg_server.admin(dbname) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        connection.execute("CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id int, status text)")
        connection.execute(f"INSERT INTO public.orders (customer_id, status) SELECT g % 5000, 'open' "
                           f"FROM generate_series(1, {ROWS}) g")
        connection.execute(f'ALTER TABLE public.orders OWNER TO "{owner}"')
        connection.execute("CREATE TABLE public.audit (id int)")  # owned by the superuser, not the write role
        connection.execute("ANALYZE public.orders")
        connection.execute("SELECT pg_stat_statements_reset()")
    env = f"OPSBOT_TEST_SHOP_WRITE_DSN_{suffix.upper()}"
    shop = Shop(pg_server, dbname, owner, pg_server.dsn(user=owner, password=password, dbname=dbname), env)
    monkeypatch.setenv(env, shop.dsn)
    monkeypatch.setenv(f"{env}_READ", shop.dsn)
    yield shop
    with pg_server.admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        connection.execute(f'DROP ROLE IF EXISTS "{owner}"')


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


def digests_file(tmp_path, shop: Shop):
    path = tmp_path / "digests.yaml"
    path.write_text(f"database:\n  databases:\n    - {{name: shop, dsn_env: {shop.write_env}_READ, "
                    f"dsn_write_env: {shop.write_env}}}\n")
    return path


def start(world, orders, tmp_path, shop, runbook: str = RUNBOOK, **settings):  # noqa: F811
    w = world(orders, policy=DBA_POLICY, runbooks={"create-index": runbook}, prometheus=False,
              digests_file=digests_file(tmp_path, shop), **settings)
    w.deliver()
    eventually(lambda: kinds(w), timeout=30)
    return w


def kinds(w, incident_id=1):
    with unit_of_work(w.bot.runtime.factory) as session:
        return [e.kind for e in session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                                                .order_by(TimelineEntry.seq)).scalars()]


def proposal_of(w) -> Proposal:
    with unit_of_work(w.bot.runtime.factory) as session:
        proposal = session.execute(select(Proposal).where(Proposal.runbook_id == "create-index")).scalar_one()
        session.expunge(proposal)
        return proposal


def ask_for_the_index(w, requester: str = DAVE) -> dict:
    w.command("run INC-1 create-index database=shop table=public.orders columns=customer_id", requester)
    return w.proposal("create-index", timeout=30)


# -- lint ------------------------------------------------------------------------------------------

def test_the_shipped_runbook_lints_clean():
    loaded = catalog.load_catalog(REPO / "runbooks")
    step = loaded.get("create-index").steps[0]
    assert step.operation == sql_operations.CREATE_INDEX
    assert (step.approval.groups, step.approval.approvals, step.approval.requester_may_approve) == (["dba"], 2, False)
    assert not [w for w in loaded.warnings if w.startswith("create-index")]


@pytest.mark.parametrize(("change", "problem"), [
    (("groups: [dba], approvals: 2", "groups: [oncall], approvals: 2"), "needs approval (required) by groups [dba]"),
    (("groups: [dba], approvals: 2", "groups: [dba, oncall], approvals: 2"), "by groups [dba]"),
    (("groups: [dba], approvals: 2", "groups: [dba], approvals: 1"), "at least 2 approvals"),
    (("requester_may_approve: false", "requester_may_approve: true"), "requester_may_approve false"),
    (("approval: {groups", "approval: {required: false, groups"), "needs approval (required)"),
    (("retry: {attempts: 1}", "retry: {attempts: 2}"), "never retried"),
    (("%(index)s", "%(index_name)s"), "binds unknown values ['index_name']"),
    (("%(index)s", "'${table}'"), "${...} would fill them into the text"),
])
def test_a_database_step_that_is_not_approved_by_two_dbas_is_a_lint_error(tmp_path, change, problem):
    old, new = change
    assert old in RUNBOOK
    (tmp_path / "create-index.yaml").write_text(RUNBOOK.replace(old, new))
    with pytest.raises(catalog.CatalogError) as raised:
        catalog.load_catalog(tmp_path)
    assert problem in str(raised.value) and "create-index.yaml" in str(raised.value)


# -- typed input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "columns"), [
    ("public.orders;drop table orders", "customer_id"),
    ('public."orders"', "customer_id"),
    ("public.orders", "customer_id;select 1"),
    ("public.orders", 'customer"id'),
    ("public.orders", "customer id"),  # a space inside a name
    ("orders", "customer_id"),  # not schema-qualified
])
def test_identifiers_with_a_quote_or_semicolon_are_refused_by_the_params_and_the_input(table, columns):
    runbook = catalog.load_catalog(REPO / "runbooks").get("create-index")
    _values, problems = catalog.resolve_params(runbook, {}, {}, {"database": "shop", "table": table, "columns": columns})
    assert problems, "the runbook's param patterns refuse it"
    with pytest.raises(operations.InputError):
        sql_operations.validate_input(sql_operations.CREATE_INDEX, {"database": "shop", "table": table,
                                                                   "columns": columns})


def test_the_statement_is_rebuilt_from_typed_input_never_from_the_statement_param():
    inp = sql_operations.validate_input(sql_operations.CREATE_INDEX, {"database": "shop", "table": "Sales.Orders",
                                                                     "columns": "CustomerId,status"})
    assert sql_operations.text_of(sql_operations.create_statement(inp)) == (
        'CREATE INDEX CONCURRENTLY "Orders_CustomerId_status_idx" ON "Sales"."Orders" ("CustomerId", "status")')
    assert "statement" not in sql_operations.CreateIndexInput.model_fields, "no input takes SQL text"
    runbook = catalog.load_catalog(REPO / "runbooks").get("create-index")
    assert "${statement}" not in str(runbook.steps[0].model_dump())


# -- plan and dry run ------------------------------------------------------------------------------

def test_the_plan_shows_the_statement_its_lock_level_and_an_existing_or_invalid_index(shop):
    writer = shop.writer()
    values = {"database": "shop", "table": "public.orders", "columns": "customer_id"}
    plan = sql_operations.plan(writer, sql_operations.CREATE_INDEX, values)
    assert STATEMENT in plan.summary and "SHARE UPDATE EXCLUSIVE" in plan.summary
    assert "reads and writes go on" in plan.summary and "INVALID" in plan.summary
    assert str(plan.target) == "Table/shop/public.orders"
    assert plan.diff[0] == (f"index public.{INDEX}", "absent", "valid, on public.orders (customer_id)")
    assert plan.undo == {"method": "sql.drop_index", "database": "shop", "schema": "public", "index": INDEX,
                         "table": "public.orders", "lock_timeout_ms": 10_000}
    assert "no dry run" in plan.write(writer, True) and shop.index() is None, "the dry run builds nothing"

    with shop.admin() as connection:  # a valid index of that name: nothing to do, nothing to undo
        connection.execute(f"CREATE INDEX {INDEX} ON public.orders (customer_id)")
    again = sql_operations.plan(writer, sql_operations.CREATE_INDEX, values)
    assert again.summary.startswith("nothing to do") and again.undo is None
    assert sql_operations.intent_calls(again, values, "t") == []

    with shop.admin() as connection:  # a failed build leaves an INVALID index: refused, with how to drop it
        connection.execute(f"DROP INDEX {INDEX}")
        with pytest.raises(psycopg.errors.UniqueViolation):
            connection.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON public.orders (customer_id)")
    assert shop.index()[0] is False, "left INVALID"
    with pytest.raises(WriteError, match=f"INVALID index public.{INDEX}.*DROP INDEX CONCURRENTLY"):
        sql_operations.plan(writer, sql_operations.CREATE_INDEX, values)


def test_the_dry_run_refuses_a_table_the_write_role_does_not_own_and_unknown_names(shop):
    writer = shop.writer()
    audit = sql_operations.plan(writer, sql_operations.CREATE_INDEX,
                                {"database": "shop", "table": "public.audit", "columns": "id"})
    with pytest.raises(WriteError, match="does not own public.audit") as raised:
        audit.write(writer, True)
    assert raised.value.kind == "forbidden"
    with pytest.raises(WriteError, match="no column nope"):
        sql_operations.plan(writer, sql_operations.CREATE_INDEX,
                            {"database": "shop", "table": "public.orders", "columns": "nope"})
    with pytest.raises(WriteError, match="no dsn_write_env"):
        sql_operations.plan(writer, sql_operations.CREATE_INDEX,
                            {"database": "elsewhere", "table": "public.orders", "columns": "id"})


# -- the whole flow through the bot ----------------------------------------------------------------

def test_two_dba_approvals_build_the_index_once_and_verify_it(world, orders, tmp_path, shop):  # noqa: F811
    w = start(world, orders, tmp_path, shop)
    message = ask_for_the_index(w)
    text = str(message["blocks"])
    assert STATEMENT.replace('"', "") in text.replace('"', "").replace("&quot;", "")
    assert "SHARE UPDATE EXCLUSIVE" in text and "no dry run" in text and "Approvals: 0 of 2" in text

    w.click(message, "step_approve", MALLORY)
    eventually(lambda: any("not in dba" in t for t in w.ephemeral_to(MALLORY)))
    w.click(message, "step_approve", ALICE)  # on call, but not a dba
    eventually(lambda: any("not in dba" in t for t in w.ephemeral_to(ALICE)))
    w.click(message, "step_approve", DAVE)  # a dba, but the requester
    eventually(lambda: any("someone else must approve" in t for t in w.ephemeral_to(DAVE)))
    w.click(message, "step_approve", CAROL)
    eventually(lambda: any("1 of 2" in t for t in w.ephemeral_to(CAROL)))
    time.sleep(1)
    assert proposal_of(w).status == "proposed" and shop.index() is None, "one dba alone is not enough"

    w.click(message, "step_approve", ERIN)
    done = w.wait_status("create-index", "succeeded", timeout=60)
    assert "is true" in str(done["blocks"])
    assert shop.index() == (True, True)
    assert shop.create_index_calls() == 1, "run exactly once"
    assert w.writes() == [], "nothing was written to Kubernetes"
    proposal = proposal_of(w)
    assert proposal.target == "Table/shop/public.orders" and proposal.result["statement"] == STATEMENT
    assert proposal.result["intent"]["calls"][0]["statement"] == STATEMENT
    trail = kinds(w)
    for kind in ("remediation.proposed", "remediation.clicked", "remediation.approved",
                 "remediation.execution_checked", "remediation.applied", "remediation.succeeded"):
        assert kind in trail
    assert trail.count("remediation.applied") == 1
    with unit_of_work(w.bot.runtime.factory) as session:
        assert verify_incident(session, session.get(Incident, 1)) == []


def test_hostile_identifiers_are_refused_before_anything_runs(world, orders, tmp_path, shop):  # noqa: F811
    w = start(world, orders, tmp_path, shop)
    w.command("run INC-1 create-index database=shop table=public.orders;drop columns=customer_id", DAVE)
    eventually(lambda: any("does not match" in t for t in w.ephemeral_to(DAVE)))
    kit = w.bot.runtime.remediation
    runbook = kit.catalog.get("create-index")
    hostile = {"database": "shop", "table": 'public."orders"; DROP TABLE public.orders; --', "columns": "customer_id"}
    outcome = propose.propose(kit, 1, runbook, hostile, requested_by=DAVE, cluster=None, labels={})
    assert outcome.status == "denied" and "postgres.create_index: table" in outcome.problems[0]
    assert shop.create_index_calls() == 0 and shop.index() is None
    with shop.admin() as connection:
        assert connection.execute("SELECT count(*) FROM public.orders").fetchone()[0] == ROWS


FAST = RUNBOOK.replace("lock_timeout_seconds: 10", "lock_timeout_seconds: 1").replace(
    "within_seconds: 60", "within_seconds: 4").replace("poll_seconds: 5", "poll_seconds: 1")


def test_an_index_left_invalid_fails_verification_and_is_dropped(world, orders, tmp_path, shop):  # noqa: F811
    w = start(world, orders, tmp_path, shop, runbook=FAST)
    blocker = psycopg.connect(shop.server.dsn(dbname=shop.dbname))  # an open write: the build waits for it
    try:
        blocker.execute("INSERT INTO public.orders (customer_id) VALUES (1)")
        message = ask_for_the_index(w)
        w.click(message, "step_approve", CAROL)
        eventually(lambda: any("1 of 2" in t for t in w.ephemeral_to(CAROL)))
        w.click(message, "step_approve", ERIN)
        eventually(lambda: proposal_of(w).status == "verifying", timeout=30)  # lock timeout: left INVALID
        assert shop.index() == (False, False)
    finally:
        blocker.commit()
        blocker.close()
    w.wait_status("create-index", "rolled back", timeout=60)
    assert shop.index() is None, "the rollback dropped exactly that index"
    proposal = proposal_of(w)
    assert proposal.status == "rolled_back" and "left the index behind" in proposal.result["note"]
    assert proposal.result["rollback_intent"]["calls"][0]["statement"] == \
        f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{INDEX}"'
    assert "remediation.rolled_back" in kinds(w)


def test_the_lease_is_renewed_while_a_long_build_runs(world, orders, tmp_path, shop):  # noqa: F811
    w = start(world, orders, tmp_path, shop, step_lease_seconds=2, replicas=2)  # the other replica would recover it
    blocker = psycopg.connect(shop.server.dsn(dbname=shop.dbname))
    try:
        blocker.execute("INSERT INTO public.orders (customer_id) VALUES (1)")
        message = ask_for_the_index(w)
        w.click(message, "step_approve", CAROL)
        eventually(lambda: any("1 of 2" in t for t in w.ephemeral_to(CAROL)))
        w.click(message, "step_approve", ERIN)
        eventually(lambda: shop.index() is not None, timeout=30)
        time.sleep(5)  # the build waits for the open write for more than twice the lease
        assert proposal_of(w).status == "running"
    finally:
        blocker.commit()
        blocker.close()
    w.wait_status("create-index", "succeeded", timeout=60)
    assert shop.index() == (True, True) and shop.create_index_calls() == 1
    assert "remediation.recovered" not in kinds(w), "the lease never lapsed under the live statement"


# -- a worker that died: judged from the database, never re-run ------------------------------------

def test_a_step_whose_worker_died_is_judged_from_the_database(shop):
    writer = shop.writer()
    values = {"database": "shop", "table": "public.orders", "columns": "customer_id"}
    plan = sql_operations.plan(writer, sql_operations.CREATE_INDEX, values)
    tag = sql_operations.tag_of(41)
    calls = sql_operations.intent_calls(plan, values, tag)
    assert sql_operations.judge(writer, calls).verdict == "not_applied"

    blocker = psycopg.connect(shop.server.dsn(dbname=shop.dbname))
    blocker.execute("INSERT INTO public.orders (customer_id) VALUES (1)")
    building = threading.Thread(target=lambda: SqlWriter(writer.databases, tag=tag, environ=writer.environ).execute(
        "shop", sql_operations.create_statement(plan_input(values)), lock_timeout_ms=30_000))
    building.start()
    try:
        eventually(lambda: shop.index() is not None, timeout=10)
        judgement = sql_operations.judge(writer, calls)
        assert isinstance(judgement, sql_operations.StillRunning) and "still runs" in judgement.detail
    finally:
        blocker.commit()
        blocker.close()
        building.join(30)
    judgement = sql_operations.judge(writer, calls)
    assert judgement.verdict == "applied" and "valid" in judgement.detail
    drop = sql_operations.undo_calls(plan.undo, tag)
    assert sql_operations.judge(writer, drop).verdict == "not_applied"
    sql_operations.apply_undo(writer, plan.undo, before_write=lambda recorded: None)
    assert sql_operations.judge(writer, drop).verdict == "applied" and shop.index() is None


def plan_input(values):
    return sql_operations.validate_input(sql_operations.CREATE_INDEX, values)


def test_a_build_whose_worker_died_is_waited_for_then_verified_never_rerun(world, orders, tmp_path, shop):  # noqa: F811
    w = start(world, orders, tmp_path, shop, step_lease_seconds=2)  # the recovery looks again at each lapse
    kit = w.bot.runtime.remediation
    values = {"database": "shop", "table": "public.orders", "columns": "customer_id"}
    w.bot.runtime.workers.stop()  # nothing claims the step but the "dead" worker below
    outcome = propose.propose(kit, 1, kit.catalog.get("create-index"), values, requested_by=DAVE, cluster=None,
                              labels={})
    tag = sql_operations.tag_of(outcome.proposal_id)
    writer = shop.writer(tag)
    plan = sql_operations.plan(writer, sql_operations.CREATE_INDEX, values)
    blocker = psycopg.connect(shop.server.dsn(dbname=shop.dbname))
    blocker.execute("INSERT INTO public.orders (customer_id) VALUES (1)")
    # the dead worker recorded its intent, sent the statement (still running on the server), and stopped
    building = threading.Thread(target=lambda: writer.execute("shop", sql_operations.create_statement(
        plan_input(values)), lock_timeout_ms=60_000))
    building.start()
    try:
        eventually(lambda: shop.index() is not None, timeout=10)
        now = kit.clock()
        with unit_of_work(kit.factory) as session:
            session.execute(Proposal.__table__.update().where(Proposal.id == outcome.proposal_id).values(
                status="running", lease_owner="dead-worker", lease_until=now, undo=plan.undo,
                result={"intent": {"calls": sql_operations.intent_calls(plan, values, tag), "at": now.isoformat()}}))
        w.bot.runtime.workers.start()
        eventually(lambda: "still runs on the server" in str(proposal_of(w).result.get("note")), timeout=30)
        assert proposal_of(w).status == "running", "waited for, not judged yet"
    finally:
        blocker.commit()
        blocker.close()
        building.join(30)
    w.wait_status("create-index", "succeeded", timeout=90)
    assert shop.index() == (True, True) and shop.create_index_calls() == 1, "never run a second time"
    assert "remediation.recovered" in kinds(w)
