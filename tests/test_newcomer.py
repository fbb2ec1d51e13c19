"""What a newcomer meets first (issue 17): start-up warnings, CLI rough edges, quiet probes.

Real parts only: the shipped runbooks and policies, a migrated database, the Flask app over a
built runtime, and the real Prometheus for the delete-pod runbook's verify query.
"""

from __future__ import annotations

import json
import logging
import tomllib
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.alerts import deliveries
from bot.config import Settings
from bot.context.clusters import ClusterDirectory
from bot.db.engine import make_session_factory, unit_of_work
from bot.deliveries_cli import list_deliveries
from bot.policy.model import Policy, load_policies
from bot.remediation.catalog import check_query, load_catalog
from bot.remediation_cli import explain, incident_number, lint, plain_mentions
from bot.sandbox.promstack import http_request
from bot.startup_checks import startup_warnings
from bot.web import create_web_app, one_charset
from tests.payloads import am_alert, am_body
from tests.test_cli import opsbot

REPO = Path(__file__).resolve().parents[1]
REAL_SLACK = {"slack_bot_token": "xoxb-1-2-abc", "slack_signing_secret": "s", "webhook_token": "t"}


def _warnings(settings: Settings, policy: Policy) -> list[str]:
    return startup_warnings(settings, policy, ClusterDirectory.from_settings(settings))


# 1. start-up warnings

def test_the_defaults_warn_about_approvers_clusters_and_the_emulator():
    settings = Settings()
    lines = _warnings(settings, load_policies(REPO / "policies"))
    assert [line for line in lines if "nobody can approve" in line] == [
        line for line in lines if line.startswith("approver group")]
    assert any(line.endswith("nobody can approve steps that need oncall") for line in lines)
    assert any(line.endswith("nobody can approve steps that need dba") for line in lines)
    assert any(line.startswith("no Kubernetes cluster and no Prometheus configured: investigations will be skipped")
               for line in lines)
    assert any(line.startswith("emulator mode: no Slack token") for line in lines)
    assert len(lines) == 4


def test_a_configured_bot_starts_without_warnings():
    policy = Policy(approver_groups={"oncall": {"users": ["U01"]}, "dba": {"slack_usergroup": "S0DBA"},
                                     "sre": {"pagerduty_schedules": ["P1ONCAL"]}})
    settings = Settings(**REAL_SLACK, prometheus_url="http://prom:9090", kube_mode="kubeconfig")
    assert _warnings(settings, policy) == []
    only_prometheus = Settings(prometheus_url="http://prom:9090")
    assert not any("investigations" in line for line in _warnings(only_prometheus, policy))
    several = Settings(clusters={"eu": {"kube_mode": "url", "kube_api_url": "http://eu:6443"}})
    assert not any("investigated" in line or "investigations" in line for line in _warnings(several, policy))


def test_a_group_of_blank_names_names_nobody():
    policy = Policy(approver_groups={"oncall": {"users": [" "], "slack_usergroup": ""}, "ok": {"users": ["U1"]}})
    lines = _warnings(Settings(**REAL_SLACK, prometheus_url="http://prom:9090", kube_mode="kubeconfig"), policy)
    assert len(lines) == 1 and lines[0].startswith("approver group 'oncall' names nobody")


def test_an_emulator_url_without_a_token_is_named():
    lines = _warnings(Settings(slack_api_url="http://127.0.0.1:9/api/"), Policy())
    assert any("Slack emulator at http://127.0.0.1:9/api/" in line for line in lines)


# 2. CLI rough edges

def test_incident_references_are_read_as_people_write_them():
    assert incident_number("INC-12") == incident_number("inc-12") == incident_number(" 12 ") == 12
    for wrong in ("INC-", "P-3", "12a", ""):
        with pytest.raises(ValueError):
            incident_number(wrong)


def test_audit_verify_accepts_the_form_its_help_names(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path)}
    assert opsbot("db", "upgrade", env=env).returncode == 0
    for reference in ("INC-1", "1"):
        result = opsbot("audit", "verify", "--incident", reference, env=env)
        assert result.returncode == 2 and result.stdout.strip() == "no incident INC-1", result.stderr
    wrong = opsbot("audit", "verify", "--incident", "P-1", env=env)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip() == "opsbot: --incident: 'P-1' is not an incident reference (INC-12 or 12)"
    assert "INC-N" in opsbot("audit", "verify", "--help").stdout


def test_an_empty_delivery_listing_says_none(engine):
    factory = make_session_factory(engine)
    assert list_deliveries(factory, "failed", 20) == ["no deliveries with status failed"]
    assert list_deliveries(factory, None, 20) == ["no deliveries stored"]
    with unit_of_work(factory) as session:
        deliveries.store(session, "alertmanager", am_body([am_alert()]), {}, datetime.now(UTC))
    assert list_deliveries(factory, "failed", 20) == ["no deliveries with status failed"]
    (line,) = list_deliveries(factory, "pending", 20)
    assert "alertmanager" in line and "pending" in line


def test_slack_mentions_become_plain_names_or_ids():
    assert plain_mentions("<@U1> and <@U2|alice> ask <!subteam^S1> or <!subteam^S2|@dba> in <#C1|ops>, <!here>") \
        == "U1 and alice ask S1 or @dba in #ops, @here"
    assert plain_mentions("a < b > c") == "a < b > c"


def test_policy_explain_prints_no_slack_mention_syntax(tmp_path):
    (tmp_path / "p.yaml").write_text("actors: {users: [U0BOSS]}\napprover_groups: {oncall: {users: [U0BOSS]}}\n")
    code, lines = explain(REPO / "runbooks", tmp_path, "delete-pod", "shop", {"pod": "web-1"}, "U0NEW", [],
                          None, 1, None, "click", None, {})
    text = "\n".join(lines)
    assert code == 1 and "<@" not in text and "<!" not in text
    assert "U0NEW may not act on steps" in text and "U0NEW is not in oncall" in text


def test_the_shipped_runbooks_lint_without_warnings():
    code, lines = lint(REPO / "runbooks")
    assert code == 0 and not [line for line in lines if line.startswith("warning")], lines


def _openmetrics(at: datetime) -> str:
    """Three pods: `stuck` still there and not ready, `back` ready again, `gone` deleted."""
    families = {"kube_pod_info": [("stuck", "", 1), ("back", "", 1)],
                "kube_pod_status_ready": [("stuck", ',condition="true"', 0), ("back", ',condition="true"', 1)]}
    rows = []
    for name, series in families.items():
        rows.append(f"# TYPE {name} gauge")
        for offset in range(270, -1, -30):
            stamp = (at - timedelta(seconds=offset)).timestamp()
            rows += [f'{name}{{namespace="shop",pod="{pod}"{extra}}} {value} {stamp:.0f}'
                     for pod, extra, value in series]
    return "\n".join(rows) + "\n# EOF\n"


def test_the_delete_pod_verify_holds_once_the_pod_is_gone_or_ready(prometheus_factory):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    prometheus = prometheus_factory(openmetrics=_openmetrics(at))
    step = load_catalog(REPO / "runbooks").get("delete-pod").steps[0]
    assert step.verify is not None and step.verify.compare == ">=" and step.verify.threshold == 1

    def value(pod: str) -> float:
        query = urllib.parse.urlencode({"query": check_query(step.verify, {"namespace": "shop", "pod": pod}),
                                        "time": at.timestamp()})
        status, body = http_request("GET", f"{prometheus.url}/api/v1/query?{query}")
        assert status == 200, body
        (sample,) = json.loads(body)["data"]["result"]
        return float(sample["value"][1])

    assert value("stuck") == 0
    assert value("back") == 1
    assert value("gone") == 1


# 3. probes and metrics

def test_readyz_logs_nothing_and_metrics_names_one_charset(runtime, caplog):
    client = create_web_app(runtime, with_slack=False).test_client()
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO] == []
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.lower().count("charset=") == 1 and content_type.startswith("text/plain")


def test_one_charset_keeps_the_first_and_everything_else():
    assert one_charset("text/plain; version=1.0.0; charset=utf-8; charset=utf-8") \
        == "text/plain; version=1.0.0; charset=utf-8"
    assert one_charset("application/json") == "application/json"


# 4. packaging

def test_the_license_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(setuptools.split(">=")[1].split(".")[0]) >= 77, "SPDX license strings need setuptools 77"
