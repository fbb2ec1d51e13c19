"""The remediation commands as a user runs them: one line per problem, nothing changed."""

from __future__ import annotations

from sqlalchemy import text

from bot.sandbox.paths import shared_scenarios_dir
from tests.test_cli import opsbot

ORDERS = shared_scenarios_dir() / "orders-api-revision-22-panics-on-start.yaml"


def test_lint_passes_the_shipped_runbooks_and_names_every_problem(tmp_path):
    ok = opsbot("runbooks", "lint")
    assert ok.returncode == 0 and "13 runbook(s) valid" in ok.stdout
    (tmp_path / "broken.yaml").write_text("id: broken\ntitle: t\nowners: []\nsteps: []\nsurprise: 1\n")
    bad = opsbot("runbooks", "lint", "--dir", str(tmp_path))
    assert bad.returncode == 1 and "Traceback" not in bad.stdout + bad.stderr
    assert {"broken.yaml: owners", "broken.yaml: steps", "broken.yaml: surprise"} <= {
        line.split(":")[0] + ":" + line.split(":")[1] for line in bad.stdout.splitlines()}


def test_a_runbook_tested_against_a_scenario_shows_params_plan_and_decision():
    result = opsbot("runbooks", "test", "rollback-deployment", "--scenario", str(ORDERS))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "diagnosis: bad_deploy Deployment/orders/orders-api (conclusive)" in out
    assert "could not check Prometheus metrics: not configured" in out, "what was not checked is said"
    assert '"to_revision": 21' in out and "roll Deployment/orders/orders-api back from revision 22 to revision 21" in out
    assert "decision: needs_approval" in out and "nothing was changed" in out
    other = opsbot("runbooks", "test", "expand-pvc", "--scenario", str(ORDERS))
    assert other.returncode == 1 and "would not be proposed" in other.stdout


def test_policy_explain_prints_every_gate():
    result = opsbot("policy", "explain", "--runbook", "restart-deployment", "--namespace", "shop",
                    "--param", "name=web")
    assert result.returncode == 0
    for gate in ("kill_switch", "runbook_enabled", "change_freeze", "actor_and_channel", "parameter_schema",
                 "blast_radius", "rate_limit", "approval"):
        assert gate in result.stdout
    denied = opsbot("policy", "explain", "--runbook", "restart-deployment", "--namespace", "kube-system",
                    "--param", "name=coredns")
    assert denied.returncode == 1 and "decision: deny (rule kill-switch:namespace:kube-system)" in denied.stdout
    bad = opsbot("policy", "explain", "--runbook", "restart-deployment", "--param", "oops")
    assert bad.returncode == 2 and bad.stderr.strip() == "opsbot: --param 'oops' is not key=value"


def test_audit_verify_finds_an_edited_and_a_deleted_entry(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path)}
    assert opsbot("db", "upgrade", env=env).returncode == 0
    from sqlalchemy import create_engine

    from bot.db.engine import make_session_factory, unit_of_work
    from bot.db.models import Incident
    from bot.timeline import chain

    engine = create_engine(f"sqlite:///{tmp_path}/opsbot.sqlite3")
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, tzinfo=UTC)
    with unit_of_work(make_session_factory(engine)) as session:
        incident = Incident(group_key="g", group_key_hash="h", source="alertmanager", title="t", created_at=now,
                            updated_at=now)
        session.add(incident)
        session.flush()
        for kind in ("incident.opened", "remediation.approved", "remediation.succeeded"):
            chain.append(session, incident.id, kind, "opsbot", {"k": kind}, now)
    assert opsbot("audit", "verify", env=env).stdout.strip() == "1 incident timeline(s) intact"
    with engine.begin() as connection:  # an attacker with database access, past the append-only triggers
        connection.execute(text("DROP TRIGGER IF EXISTS timeline_entries_no_update"))
        connection.execute(text("DROP TRIGGER IF EXISTS timeline_entries_no_delete"))
        connection.execute(text("UPDATE timeline_entries SET actor = 'slack:U0MALLORY' WHERE seq = 2"))
        connection.execute(text("DELETE FROM timeline_entries WHERE seq = 3"))
    result = opsbot("audit", "verify", env=env)
    assert result.returncode == 1
    assert "INC-1 entry 2: content does not match its hash" in result.stdout
    assert "entries were deleted" in result.stdout
    with unit_of_work(make_session_factory(engine)) as session:  # the bot writes on: the gap stays visible
        chain.append(session, 1, "incident.resolved_by_source", "opsbot", {}, now)
    after = opsbot("audit", "verify", env=env).stdout
    assert "INC-1: entry 3 is missing" in after and "entry 2: content does not match" in after


def test_serve_refuses_to_start_with_a_runbook_it_cannot_read(tmp_path):
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "x.yaml").write_text("id: x\n")
    result = opsbot("serve", env={"OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_RUNBOOKS_DIR": str(tmp_path / "rb"),
                                  "OPSBOT_HTTP_PORT": "0"}, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the runbooks or policies are invalid" in result.stderr and "x.yaml: title" in result.stderr
