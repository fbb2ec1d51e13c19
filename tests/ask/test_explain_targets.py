"""`/ops explain <alert name>` and `/ops explain deploy/<namespace>/<name>`, driven by signed
slash commands on SQLite and PostgreSQL. The rules come from the REAL Prometheus binary loaded
with the kubernetes-mixin alerting rules (read from the shared fixtures, never copied); the
workload from the sandbox API server serving the shared scenario "orders-api revision 22 panics
on start" (two ReplicaSets, a crash-looping new pod). Incidents come through the real intake
flow with their RCA stored as the RCA stage stores it."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from bot.ask.explain import FORMS, Target, parse_target, visibility_refusal
from bot.ask.explain_alert import RulesRead, looks_like_alert
from bot.ask.explain_workload import parse_workload
from bot.db.engine import make_session_factory
from bot.policy.model import load_policies
from bot.remediation.catalog import load_catalog
from bot.sandbox import slack_signing
from bot.sandbox.kube import KubeApiServer, SandboxCluster
from bot.web import HttpServer, create_web_app
from tests.ask.test_explain import ask, content
from tests.conftest import SIGNING_SECRET, make_settings
from tests.context.sandbox import shared
from tests.incidents.helpers import NOW, ingest_body, store_rca
from tests.payloads import am_alert, am_body
from tests.slack.test_card_render import check_golden, valid_blocks

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
MIXIN_ALERTS = ROOT.parent / "shared" / "fixtures" / "kubernetes-mixin" / "prometheus_alerts.yaml"
ORDERS = "Deployment/orders/orders-api"
POLICY = """
id: test
channels: ["#incidents"]
environments:
  production: {namespaces: ["orders"]}
autonomy:
  default: approve
  rules: [{runbooks: [rollback-deployment], environments: [production], level: suggest}]
"""


def _report(category: str, resource: str, facts: dict | None = None) -> dict:
    return {"version": 1, "subject": resource, "inconclusive": False, "owners": [resource], "gaps": [],
            "hypotheses": [{"category": category, "resource": resource, "confidence": 0.9,
                            "summary": f"{resource}: {category}", "supporting": [], "contradicting": [],
                            "facts": facts or {}}]}


def _incident(factory, key: str, at, alertname: str, namespace: str, report: dict | None, **labels) -> int:
    body = am_body([am_alert(alertname, namespace=namespace, pod=f"{key}-pod", **labels)], group_key=key)
    incident_id = ingest_body(factory, body, at).incident_id
    if report is not None:
        store_rca(factory, incident_id, report, at)
    return incident_id


def _history(factory) -> None:
    """KubePodCrashLooping: twice a bad rollout of orders-api (one naming its database as a
    dependency), once a memory limit elsewhere, all within 30 days; once 40 days ago (outside);
    and an unrelated alert on orders-api with no RCA."""
    _incident(factory, "a", NOW - timedelta(days=40), "KubePodCrashLooping", "orders", _report("memory_limit", ORDERS))
    _incident(factory, "b", NOW - timedelta(days=9), "KubePodCrashLooping", "orders",
              _report("bad_deploy", ORDERS, {"dependency": "orders-db.orders.svc:5432"}))
    _incident(factory, "c", NOW - timedelta(days=3), "KubePodCrashLooping", "shop",
              _report("memory_limit", "Deployment/shop/checkout"))
    _incident(factory, "d", NOW - timedelta(days=1), "KubePodCrashLooping", "orders", _report("bad_deploy", ORDERS))
    _incident(factory, "e", NOW, "KubeDeploymentReplicasMismatch", "orders", None, deployment="orders-api",
              service="orders-api")


@pytest.fixture
def world(database_url, engine, slack, tmp_path, prometheus_factory):
    """The bot serving /ops, its clock at NOW + 10 min, with a Prometheus holding the mixin's
    alerting rules and the orders-api scenario behind the sandbox API server."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    factory = make_session_factory(engine)
    _history(factory)
    prometheus = prometheus_factory(rule_files=[MIXIN_ALERTS])
    scenario = shared("orders-api-revision-22-panics-on-start")
    cluster = SandboxCluster(now=scenario.now)
    cluster.load(scenario.cluster.objects, scenario.cluster.events, [])
    with ExitStack() as stack:
        from bot.runtime import build_runtime

        kube = stack.enter_context(KubeApiServer(cluster))
        settings = make_settings(database_url, slack, policies_dir=policies, runbooks_dir=RUNBOOKS, kube_mode="url",
                                 kube_api_url=kube.base_url, prometheus_url=prometheus.url)
        runtime = build_runtime(settings, clock=lambda: NOW + timedelta(minutes=10))
        stack.callback(runtime.close)
        server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=2)
        yield {"url": server.start(), "kube": kube, "runtime": runtime, "policy": load_policies(policies)}
        server.stop()


def test_an_alert_is_explained_from_prometheus_rules_and_its_history_here(world, slack):
    answer = ask(world, slack, "explain KubePodCrashLooping")
    assert valid_blocks(answer["blocks"])
    check_golden("explain_alert", {"text": answer["text"], "blocks": answer["blocks"]})
    lines = content(answer["blocks"])
    assert "Pod is crash looping." in lines, "the rule's summary, from Prometheus"
    assert 'Expression: max_over_time(kube_pod_container_status_waiting_reason{job="kube-state-metrics",' \
           'reason="CrashLoopBackOff"}[5m]) >= 1' in lines, "as Prometheus parsed it"
    assert "Fires after the expression holds for 15m." in lines and "Labels: severity=warning." in lines
    assert "Runbook: https://github.com/kubernetes-monitoring/kubernetes-mixin/tree/master/runbook.md" \
           "#alert-name-kubepodcrashlooping" in lines
    assert "Fired 3 time(s) (distinct alerts) in 3 incident(s): INC-4, INC-3, INC-2." in lines, \
        "40 days ago is outside the window"
    usual = lines[lines.index("What it usually turned out to be") + 1:]
    assert usual == ["Bad rollout: 2 of 3", "Memory limit too low: 1 of 3"]


def test_any_rule_prometheus_knows_is_an_alert_and_unknown_names_say_so(world, slack):
    lines = content(ask(world, slack, "explain KubeDeploymentReplicasMismatch")["blocks"])
    assert "Fired 1 time(s) (distinct alerts) in 1 incident(s): INC-5." in lines and "No RCA stored: 1 of 1" in lines
    named = ask(world, slack, "explain NoSuchRuleAnywhere")
    assert "No alert named 'NoSuchRuleAnywhere'" in named["text"] and "\n" not in named["text"]
    rules = RulesRead({None: [{"name": "g", "rules": [{"type": "alerting", "name": "disk_full"}]}]})
    catalog = load_catalog(RUNBOOKS)
    assert parse_target("disk_full", catalog, rules.names) == Target("alert", "disk_full")
    assert parse_target("restart-deployment", catalog, lambda: {"restart-deployment"}).kind == "runbook", \
        "a runbook id wins over a rule of the same name"
    assert looks_like_alert("KubePodCrashLooping") and not looks_like_alert("kubepodcrashlooping")


def test_a_workload_is_explained_from_kubernetes_incidents_rcas_and_runbooks(world, slack):
    answer = ask(world, slack, "explain deploy/orders/orders-api")
    assert valid_blocks(answer["blocks"])
    check_golden("explain_workload", {"text": answer["text"], "blocks": answer["blocks"]})
    lines = content(answer["blocks"])
    health = lines[lines.index("Health now") + 1:lines.index("Recent rollouts")]
    assert health[0].endswith("replicas ready, 1 updated.") and "7 container restart(s)" in health[1]
    rollouts = lines[lines.index("Recent rollouts") + 1:lines.index("Incidents on it")]
    assert rollouts[0].startswith("Revision 22 (orders-api-wrvcn6pnr5)") and rollouts[0].endswith("— current.")
    assert "Changes from revision 21 to 22:" in rollouts
    assert any(line.startswith("containers[") and ".image:" in line for line in rollouts)
    incidents = lines[lines.index("Incidents on it") + 1:lines.index("Dependencies (as its RCAs found them)")]
    assert [line.split()[0] for line in incidents] == ["INC-5", "INC-4", "INC-2", "INC-1"], \
        "by RCA or by service; INC-3 is another workload"
    assert "orders-db.orders.svc:5432 (named by INC-2)" in lines
    runbooks = lines[lines.index(next(x for x in lines if x.startswith("Runbooks for a Deployment"))) + 1:]
    levels = {line.split(":")[0]: line.rsplit("— ", 1)[1] for line in runbooks}
    assert levels == {"raise-cpu-limit": "approve", "raise-hpa-max-replicas": "approve",
                      "raise-memory-limit": "approve", "restart-deployment": "approve",
                      "rollback-deployment": "suggest", "scale-deployment": "approve"}, "the policy's rule for orders"


def test_a_workload_kubernetes_cannot_read_says_so_in_one_line_and_answers_the_rest(world, slack):
    lines = content(ask(world, slack, "explain sts/orders/orders-db")["blocks"])
    health = lines[lines.index("Health now") + 1:lines.index("Recent rollouts")]
    assert health == ["Could not read StatefulSet/orders/orders-db: not found."]
    assert "Could not read its revisions from Kubernetes." in lines and "None recorded." in lines
    assert "Not known: no stored RCA of its incidents names one." in lines


def test_the_answer_comes_after_the_ack_while_kubernetes_is_slow(world, slack):
    hold = world["kube"].hold("GET", "/apis/apps/v1/namespaces/orders/deployments/orders-api", seconds=30)
    before = len(slack.ephemerals())
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text="explain deploy/orders/orders-api",
                                                user_id="U0ALICE", channel_name="incidents")
    response = requests.post(f"{world['url']}/slack/commands", data=body, headers=headers, timeout=10)
    assert response.status_code == 200 and not response.text.strip()
    assert hold.arrived.wait(15), "the read started after the ack"
    assert slack.ephemerals()[before:] == [], "acked while Kubernetes still holds the read"
    hold.release()
    answers = slack.wait_for(lambda emu: emu.ephemerals()[before:], timeout=15)
    assert len(answers) == 1 and "Deployment/orders/orders-api" in answers[0]["text"]


def test_parsing_and_visibility_of_the_new_forms(world):
    assert str(parse_workload("deploy/shop/checkout")) == "Deployment/shop/checkout"
    assert str(parse_workload("CronJob/ops/backup")) == "CronJob/ops/backup"
    assert parse_workload("svc/shop/checkout") is None and parse_workload("deploy/Shop/x_y") is None
    assert all(form in FORMS for form in ("an alert name such as KubePodCrashLooping",
                                          "a workload such as deploy/shop/checkout"))
    for target in (Target("alert", "KubePodCrashLooping"), Target("workload", ORDERS)):
        refusal = visibility_refusal(world["policy"], target, "C1", "random")
        assert refusal is not None and refusal.startswith(f"{target.kind} {target.key} is not explained")


def test_prometheus_not_configured_or_down_is_one_line_and_the_history_still_answers(database_url, engine, tmp_path):
    from bot.ask.explain import explain
    from bot.ask.explain_alert import read_rules
    from bot.context.clusters import ClusterAccess, ClusterDirectory
    from bot.db.engine import reading

    factory = make_session_factory(engine)
    _history(factory)
    (tmp_path / "test.yaml").write_text(POLICY)
    catalog, policy = load_catalog(RUNBOOKS), load_policies(tmp_path)
    for url, line in ((None, "Could not read the rule: Prometheus is not configured."),
                      ("http://127.0.0.1:1", "Could not read the rule: Prometheus is unreachable.")):
        read = read_rules(ClusterDirectory(ClusterAccess(None, None, url)))
        with reading(factory) as session:
            explanation = explain(session, Target("alert", "KubePodCrashLooping"), catalog, policy, read, NOW)
        parts = {part.heading: part.lines for part in explanation.parts}
        assert parts["The rule"] == (line,), "not claimed missing: Prometheus could not be asked"
        assert parts["Here in the last 30 days"][0].startswith("Fired 3 time(s)")
