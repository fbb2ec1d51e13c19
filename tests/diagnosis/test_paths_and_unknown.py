"""Issue 13: the path to a dependency (NetworkPolicy semantics, Services that select or target
nothing), and `unknown` as the first answer when no rule explains the symptoms."""

from __future__ import annotations

from datetime import timedelta

from bot.context import kube_facts as facts
from bot.context.model import ChangePoint, DependencyView, LogView, ObjectRef, ServiceView, Signal
from bot.context.netpol import DNS, Endpoint, allows, selector_matches
from bot.diagnosis.engine import diagnose
from tests.diagnosis.builders import NOW, alert, container, context, deployment, pod, stamp

WEB = ObjectRef("Deployment", "shop", "web")
WEB_POD = ObjectRef("Pod", "shop", "web-7d9f-a")


def policy(name, selector=None, types=("Egress",), egress=(), ingress=(), minutes_ago=30):
    return facts.network_policy_view({
        "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "shop", "creationTimestamp": stamp(minutes_ago)},
        "spec": {"podSelector": selector or {}, "policyTypes": list(types), "egress": list(egress),
                 "ingress": list(ingress)}})


WEB_END = Endpoint("shop", {"app": "web"})
DB_END = Endpoint("data", {"app": "postgres"})


def test_selectors_match_labels_and_expressions_and_say_when_they_cannot_tell():
    assert selector_matches({}, {"a": "1"}) is True
    assert selector_matches({"matchLabels": {"app": "web"}}, {"app": "web"}) is True
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
                            {"tier": "web"}) is False
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}) is True
    assert selector_matches({"matchLabels": {"app": "web"}}, None) is None


def test_egress_isolation_denies_what_no_rule_allows():
    deny_all = policy("default-deny-egress")
    assert allows([], "Egress", WEB_END, DNS, {53}) is True, "no policy: not isolated"
    assert allows([deny_all], "Egress", WEB_END, DNS, {53}) is False
    dns_rule = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                "ports": [{"protocol": "UDP", "port": 53}]}
    with_dns = [deny_all, policy("allow-dns", egress=[dns_rule])]
    assert allows(with_dns, "Egress", WEB_END, DNS, {53}) is True, "policies add up"
    assert allows(with_dns, "Egress", WEB_END, DB_END, {5432}) is False
    by_team_label = {"to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}]}
    assert allows([deny_all, policy("db", egress=[by_team_label])], "Egress", WEB_END, DB_END, {5432}) is None, \
        "namespace labels other than the name are not read: cannot tell"
    other_pods = policy("only-db", selector={"matchLabels": {"app": "batch"}})
    assert allows([other_pods], "Egress", WEB_END, DNS, {53}) is True, "a policy selecting other pods isolates nothing"


def _client_context(line: str, service_ports: dict, backend_ports=(5432,), backend_labels=None, selector=None):
    web = pod("web-7d9f-a", ready=False, containers=[container(ready=False, restarts=4, waiting="CrashLoopBackOff",
                                                                last="Error", last_exit=1)])
    db = pod("postgres-0", namespace="shop", owner=("StatefulSet", "postgres"), labels=backend_labels or {"app": "db"})
    db["spec"]["containers"][0]["ports"] = [{"containerPort": p} for p in backend_ports]
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[web, db], workloads=[deployment(available=0)], focus=[WEB])
    ctx.logs = [LogView(WEB_POD, "app", True, [line], [], False)]
    service = ObjectRef("Service", "shop", "db")
    ctx.services = [ServiceView(service, selector or {"app": "db"}, list(service_ports), 1, 0,
                                target_ports=service_ports)]
    ctx.dependencies = [DependencyView("db", 5432, 1, line, [WEB_POD], service, 1, [])]
    ctx.network_policies = []
    return ctx


def test_a_new_default_deny_egress_policy_that_blocks_dns_is_the_object_to_fix():
    ctx = _client_context("2026-10-01T11:59:00Z ERROR dial tcp: lookup db on 10.96.0.10:53: read udp "
                          "10.42.1.7:41234->10.96.0.10:53: i/o timeout", {5432: 5432})
    ctx.network_policies = [policy("default-deny-egress", minutes_ago=25)]
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("dependency_unreachable", "NetworkPolicy/shop/default-deny-egress")
    assert "DNS" in top.summary and top.explicit


def test_a_policy_that_allows_the_path_is_never_blamed():
    ctx = _client_context("2026-10-01T11:59:00Z ERROR dial tcp 10.96.7.7:5432: connect: connection refused",
                          {5432: 5432})
    ctx.network_policies = [policy("allow-all-egress", egress=[{}])]
    assert all(h.resource is None or h.resource.kind != "NetworkPolicy" for h in diagnose(ctx).hypotheses)


def test_a_service_whose_target_port_no_pod_serves_is_the_object_to_fix():
    ctx = _client_context("2026-10-01T11:59:00Z ERROR could not connect to db:5432: connection refused",
                          {5432: 5433}, backend_ports=(5432,))
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("config_error", "Service/shop/db")
    assert "5433" in top.summary


def test_a_service_whose_selector_matches_nothing_is_the_object_to_fix():
    ctx = _client_context("2026-10-01T11:59:00Z ERROR could not connect to db:5432: connection refused",
                          {5432: 5432}, selector={"app": "db", "track": "stable"})
    ctx.services[0].ready_endpoints = 0
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("config_error", "Service/shop/db")
    assert "selects no pod" in top.summary


def test_symptoms_no_rule_explains_are_an_honest_unknown_with_what_was_seen():
    ctx = context(alerts=[alert("CheckoutLatencyHigh", service="web")], pods=[pod("web-7d9f-a")],
                  workloads=[deployment()], focus=[WEB])
    points = [(NOW - timedelta(minutes=30 - i), 0.1 if i < 20 else 0.9) for i in range(30)]
    ctx.signals = [Signal("latency_p95", "p95 latency", "q", "seconds", points,
                          change=ChangePoint(NOW - timedelta(minutes=10), 0.1, 0.9))]
    diagnosis = diagnose(ctx)
    top = diagnosis.top
    assert top.category == "unknown" and top.resource == WEB and diagnosis.inconclusive
    assert any("p95 latency" in e.text for e in top.supporting), "the unexplained symptom is listed"
    assert "not_an_issue" not in [h.category for h in diagnosis.hypotheses]


def test_a_firing_alert_with_nothing_found_is_unknown_not_silence():
    ctx = context(alerts=[alert("KubePodNotReady", pod="web-7d9f-a")], pods=[pod("web-7d9f-a")],
                  workloads=[deployment()], focus=[WEB])
    ctx.gaps = []
    top = diagnose(ctx).top
    assert top.category == "unknown" and "KubePodNotReady" in top.supporting[0].text


def test_a_conclusive_cause_is_not_hidden_behind_unknown():
    oom = container(ready=False, restarts=6, waiting="CrashLoopBackOff", last="OOMKilled", last_exit=137)
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[oom], ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB])
    assert diagnose(ctx).top.category == "memory_limit"


def test_a_release_that_raised_5xx_with_every_pod_ready_is_a_bad_deploy():
    from bot.context.model import Revision, RolloutView, TemplateChange

    ctx = context(alerts=[alert("HighErrorRate", service="web")], pods=[pod("web-7d9f-a")],
                  workloads=[deployment()], focus=[WEB])
    created = NOW - timedelta(minutes=14)
    current = Revision(8, "web-7d9f", "7d9f", created, {}, 2, 2)
    previous = Revision(7, "web-55c4", "55c4", NOW - timedelta(days=6), {}, 0, 0)
    ctx.rollouts = [RolloutView(WEB, [previous, current], current, previous,
                                [TemplateChange("containers[app].image", "web:1.7", "web:1.8")], False)]
    points = [(NOW - timedelta(minutes=30 - i), 0.004 if i < 18 else 0.12) for i in range(30)]
    step = ChangePoint(NOW - timedelta(minutes=12), 0.004, 0.12)
    ctx.signals = [Signal("error_ratio", "5xx ratio", "q", "ratio", points, change=step)]
    top = diagnose(ctx).top
    assert (top.category, top.resource) == ("bad_deploy", WEB)
    assert "every pod Ready" in top.summary
    ctx.signals = [Signal("error_ratio", "5xx ratio", "q", "ratio", points,
                          change=ChangePoint(NOW - timedelta(minutes=50), 0.004, 0.12))]
    assert diagnose(ctx).top.category == "unknown", "a step before the release is not the release's doing"


def test_an_unrelated_broken_neighbour_is_mentioned_not_diagnosed():
    from bot.diagnosis.nearby import broken_nearby

    oom = container(ready=False, restarts=6, waiting="CrashLoopBackOff", last="OOMKilled", last_exit=137)
    crashing = container(ready=False, restarts=9, waiting="CrashLoopBackOff", last="Error", last_exit=1)
    neighbour = pod("mailer-5c6d-x", owner=("ReplicaSet", "mailer-5c6d"), containers=[crashing], ready=False,
                    labels={"app": "mailer"})
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[oom], ready=False), neighbour],
                  workloads=[deployment(available=1)], focus=[WEB])
    diagnosis = diagnose(ctx)
    assert diagnosis.top.resource == WEB and diagnosis.top.category == "memory_limit"
    assert broken_nearby(ctx, diagnosis.hypotheses) == [
        "ReplicaSet/shop/mailer-5c6d: 1 pod(s) in trouble (1 CrashLoopBackOff)"]
