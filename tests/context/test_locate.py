"""Alerts without Kubernetes labels, located through the sandbox API server (real client):
a `service` label, a probe URL behind an Ingress, a target only a Probe object declares."""

from __future__ import annotations

from pathlib import Path

from bot.context.gather import gather
from bot.context.model import ObjectRef
from bot.sandbox.scenario import load_scenario
from tests.context.sandbox import access, alerts_of, served

OURS = Path(__file__).resolve().parents[1] / "scenarios"


def _gathered(name: str):
    scenario = load_scenario(OURS / f"{name}.yaml")
    with served(scenario) as kube:
        return gather(alerts_of(scenario), scenario.now, access(kube, None))


def test_a_service_label_leads_to_the_service_and_the_workload_behind_it():
    ctx = _gathered("checkout-high-latency-service-label-only-pricing-engine-4-3-0")
    assert ctx.focus[0] == ObjectRef("Deployment", "shop", "checkout-api")
    assert any(line.startswith("alert label service=checkout-api → Service/shop/checkout-api")
               for line in ctx.subject.located)
    assert ObjectRef("Deployment", "shop", "pricing-engine") in ctx.upstream, "its errors name the next link"


def test_a_probe_url_leads_through_the_ingress_rule_to_its_service():
    ctx = _gathered("blackbox-probe-failed-partner-gateway-service-targetport-8081")
    assert ObjectRef("Service", "partners", "partner-gateway") in ctx.subject.other
    assert ctx.subject.located[0].startswith("the Ingress rule for ")


def test_a_target_outside_the_cluster_names_the_probe_that_declares_it_and_says_nothing_maps():
    ctx = _gathered("blackbox-probe-failed-edi-gateway-outside-the-cluster")
    assert ctx.subject.other == [ObjectRef("Probe", "monitoring", "external-endpoints")]
    assert any(g.what == "which objects the alerts are about" for g in ctx.gaps)
    assert ctx.focus == []
