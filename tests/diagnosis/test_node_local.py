"""Trouble on one node's side: only the workload's pods there cannot connect, and node-exporter's
alert names that node by its address."""

from __future__ import annotations

from bot.context import kube_facts as facts
from bot.context.model import LogView, ObjectRef
from bot.diagnosis.analyzers.node import node_alerts
from bot.diagnosis.engine import diagnose
from tests.diagnosis.builders import alert, context, deployment, pod, stamp

WEB = ObjectRef("Deployment", "shop", "web")
TIMEOUT = "{ts} level=ERROR msg=\"query failed\" err=\"dial tcp 10.9.0.5:5432: i/o timeout\""
SERVED = "{ts} level=INFO msg=\"request served\" status=200"


def node(name: str, ip: str) -> dict:
    return {"kind": "Node", "metadata": {"name": name, "labels": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}


def log(pod_name: str, template: str, count: int = 6) -> LogView:
    lines = [template.format(ts=f"time={stamp(12 - 2 * n)}") for n in range(count)]
    return LogView(ObjectRef("Pod", "shop", pod_name), "app", False, lines, [], False)


def conntrack_alert(instance: str):
    return alert("NodeHighNumberConntrackEntriesUsed", minutes_ago=40, instance=instance, job="node-exporter",
                 namespace="monitoring", pod="kube-prometheus-stack-prometheus-node-exporter-8t2rq")


def scene(*, errors_on: dict[str, str], with_node_alert: bool):
    """Three web pods on three nodes; `errors_on` maps a pod to the log it prints."""
    pods = [pod("web-7d9f-a", node="worker-1"), pod("web-7d9f-b", node="worker-2"), pod("web-7d9f-c", node="worker-3")]
    alerts = [alert("WebHighErrorRate", service="web")]
    if with_node_alert:
        alerts.append(conntrack_alert("10.0.0.1:9100"))
    ctx = context(alerts=alerts, pods=pods, workloads=[deployment()], focus=[WEB])
    ctx.nodes = [facts.node_view(node(f"worker-{n}", f"10.0.0.{n}")) for n in (1, 2, 3)]
    ctx.logs = [log(name, template) for name, template in errors_on.items()]
    return ctx


def test_node_exporter_alerts_name_their_node_by_its_address():
    ctx = scene(errors_on={}, with_node_alert=True)
    one, two = ctx.nodes[0], ctx.nodes[1]
    assert [a.name for a in node_alerts(ctx, one.name, one)] == ["NodeHighNumberConntrackEntriesUsed"]
    assert node_alerts(ctx, two.name, two) == []


def test_errors_only_on_the_node_that_alerts_blame_the_node_not_the_dependency():
    ctx = scene(errors_on={"web-7d9f-a": TIMEOUT, "web-7d9f-b": SERVED}, with_node_alert=True)
    ranked = diagnose(ctx).hypotheses
    top = ranked[0]
    assert (top.category, top.resource) == ("node_failure", ObjectRef("Node", None, "worker-1"))
    assert "NodeHighNumberConntrackEntriesUsed" in " ".join(e.text for e in top.supporting)
    dependency = next(h for h in ranked if h.category == "dependency_unreachable")
    assert dependency.confidence < 0.5 and any("on other nodes" in e.text for e in dependency.contradicting)


def test_without_a_node_alert_the_dependency_is_only_doubted():
    ctx = scene(errors_on={"web-7d9f-a": TIMEOUT, "web-7d9f-b": SERVED}, with_node_alert=False)
    ranked = diagnose(ctx).hypotheses
    assert "node_failure" not in [h.category for h in ranked]
    dependency = next(h for h in ranked if h.category == "dependency_unreachable")
    assert dependency.confidence < 0.5, "a low answer, never a confident wrong one"


def test_errors_on_every_node_read_keep_the_dependency_confident():
    ctx = scene(errors_on={"web-7d9f-a": TIMEOUT, "web-7d9f-b": TIMEOUT}, with_node_alert=True)
    top = diagnose(ctx).top
    assert top.category == "dependency_unreachable" and top.confidence >= 0.6
    assert not any("on other nodes" in e.text for e in top.contradicting)


def test_a_sibling_whose_log_was_not_read_proves_nothing():
    ctx = scene(errors_on={"web-7d9f-a": TIMEOUT}, with_node_alert=False)
    top = diagnose(ctx).top
    assert top.category == "dependency_unreachable" and top.confidence >= 0.6
