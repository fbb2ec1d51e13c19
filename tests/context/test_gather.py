"""The gatherers against the sandbox API server (real `kubernetes` client) and a real
Prometheus: what they find, and that every failure becomes a gap instead of an error."""

from __future__ import annotations

import pytest

from bot.context.clusters import ClusterAccess, ClusterDirectory
from bot.context.gather import gather
from bot.context.model import ObjectRef
from bot.diagnosis.engine import diagnose
from bot.sandbox.promstack import free_port
from tests.context.sandbox import access, alerts_of, served, shared

ORDERS_API = ObjectRef("Deployment", "orders", "orders-api")


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


@pytest.mark.prometheus
def test_gathers_subject_rollout_logs_and_metrics(orders, prometheus_factory):
    prometheus = prometheus_factory(orders)
    with served(orders) as kube:
        ctx = gather(alerts_of(orders), orders.now, access(kube, prometheus.url))
    assert ctx.focus == [ORDERS_API]
    rollout = ctx.rollout(ORDERS_API)
    assert (rollout.current.number, rollout.previous.number) == (22, 21)
    assert "containers[api].image" in [change.path for change in rollout.changes]
    jumped = [t for view in ctx.logs for t in view.templates if t.jumped]
    assert any(t.template.startswith("panic:") for t in jumped), "the crash's panic is a template that jumped"
    assert {"restarts", "available_replicas", "request_rate"} <= {s.key for s in ctx.signals}
    assert ctx.gaps == []
    assert {"kubernetes", "logs", "prometheus"} <= set(ctx.timings)


def test_prometheus_down_is_a_gap_and_the_rest_is_still_gathered(orders):
    with served(orders) as kube:
        ctx = gather(alerts_of(orders), orders.now, access(kube, f"http://127.0.0.1:{free_port()}"))
    assert [g for g in ctx.gaps if g.what == "Prometheus metrics" and "unreachable" in g.why]
    assert ctx.focus == [ORDERS_API] and ctx.logs and not ctx.signals
    assert diagnose(ctx).top.category == "bad_deploy", "the diagnosis degrades, it does not die"


def test_reads_forbidden_by_rbac_are_gaps(orders):
    def deny(cluster):
        cluster.deny("get", "pods/log")
        cluster.deny("list", "events")
    with served(orders, deny) as kube:
        ctx = gather(alerts_of(orders), orders.now, access(kube, None))
    forbidden = {g.what for g in ctx.gaps if g.why == "forbidden by RBAC"}
    assert "events in orders" in forbidden
    assert any(what.startswith("previous logs of orders/orders-api-") for what in forbidden)
    assert ctx.logs == [] and ctx.events == []
    assert any(g.what == "Prometheus metrics" and "not configured" in g.why for g in ctx.gaps)
    diagnosis = diagnose(ctx)
    assert diagnosis.top.category == "bad_deploy" and diagnosis.top.resource == ORDERS_API


def test_a_pod_that_is_gone_is_a_gap_and_its_workload_is_inferred(orders):
    with served(orders) as kube:
        ctx = gather(alerts_of(orders, pod="orders-api-wrvcn6pnr5-gone1"), orders.now, access(kube, None))
    assert any(g.what == "pod orders/orders-api-wrvcn6pnr5-gone1" and "not found" in g.why for g in ctx.gaps)
    assert ctx.focus == [ORDERS_API]


def test_api_server_unreachable_is_a_gap(orders):
    ctx = gather(alerts_of(orders), orders.now, access(f"http://127.0.0.1:{free_port()}", None),
                 budget_seconds=3)
    assert any(g.why == "API server unreachable" for g in ctx.gaps)
    assert ctx.pods == [] and ctx.focus == []
    diagnosis = diagnose(ctx)
    assert diagnosis.inconclusive


def test_an_exhausted_time_budget_is_a_gap(orders):
    with served(orders) as kube:
        ctx = gather(alerts_of(orders), orders.now, access(kube, None), budget_seconds=0.001)
    assert any("time budget" in g.why for g in ctx.gaps)


def test_an_alert_from_an_unknown_cluster_is_not_investigated(orders):
    directory = ClusterDirectory(None, {"eu-1": ClusterAccess("eu-1", None, None)})
    assert directory.resolve("us-2") is None
    ctx = gather(alerts_of(orders), orders.now, directory.resolve("us-2"), cluster="us-2")
    (gap,) = ctx.gaps
    assert "us-2" in gap.why and "not configured" in gap.why
    assert ctx.pods == [] and ctx.logs == []


def test_a_single_mapped_cluster_serves_alerts_without_a_cluster_label():
    only = ClusterAccess("eu-1", None, "http://prometheus.eu-1")
    assert ClusterDirectory(None, {"eu-1": only}).resolve(None) is only
    default = ClusterAccess(None, None, "http://prometheus")
    assert ClusterDirectory(default).resolve("anything") is default
