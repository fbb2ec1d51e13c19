"""The recorded intent of a write, judged against the live objects of the sandbox API server
(through the real `kubernetes` client): applied, not applied, or undecided when someone else
changed the object since. And the unverified step's message, as a golden file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from bot.remediation import intent, operations
from bot.remediation.kube_write import KubeWriter
from bot.slack.render.proposal import ProposalView, render_proposal
from tests.context.sandbox import access, served, shared
from tests.slack.test_card_render import check_golden, valid_blocks


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


@contextmanager
def live_writer(scenario) -> Iterator[KubeWriter]:
    """A writer on the scenario's cluster behind the sandbox API server (the real client)."""
    with served(scenario) as url:
        api_client = access(url, None).api_client()
        try:
            yield KubeWriter(api_client)
        finally:
            api_client.close()


def planned(writer: KubeWriter, operation: str, values: dict) -> tuple[operations.Plan, list[dict]]:
    plan = operations.plan(writer, operation, values)
    recorder = intent.Recorder(writer)
    plan.write(recorder, True)
    return plan, recorder.calls


@pytest.mark.parametrize(("operation", "values"), [
    ("deployment.rollback", {"namespace": "orders", "name": "orders-api", "to_revision": 21}),
    ("deployment.scale", {"namespace": "orders", "name": "orders-api", "replicas": 5}),
    ("container.set_memory", {"namespace": "orders", "kind": "Deployment", "name": "orders-api",
                              "container": "api", "limit": "4Gi"}),
])
def test_a_write_is_judged_not_applied_before_and_applied_after(orders, operation, values):
    with live_writer(orders) as writer:
        plan, calls = planned(writer, operation, values)
        assert calls and all(not c.get("dry_run") for c in calls)
        before = intent.undo_calls(plan.undo)
        assert intent.judge(writer, calls, before).verdict == "not_applied"
        plan.write(writer, False)
        assert intent.judge(writer, calls, before).verdict == "applied"


def test_an_object_changed_by_someone_else_is_undecided(orders):
    with live_writer(orders) as writer:
        plan, calls = planned(writer, "deployment.scale", {"namespace": "orders", "name": "orders-api",
                                                           "replicas": 5})
        writer.scale("Deployment", "orders", "orders-api", 7, False)  # neither the plan nor the undo
        judgement = intent.judge(writer, calls, intent.undo_calls(plan.undo))
        assert judgement.verdict == "undecided" and "neither" in judgement.detail


def test_contains_matches_named_lists_by_name_and_none_as_absent():
    live = {"spec": {"containers": [{"name": "a", "image": "x", "ports": [1]}, {"name": "b", "image": "y"}]}}
    assert intent.contains(live, {"spec": {"containers": [{"name": "b", "image": "y"}]}}, by_name=True)
    assert not intent.contains(live, {"spec": {"containers": [{"name": "b", "image": "z"}]}}, by_name=True)
    assert intent.contains(live, {"spec": {"paused": None}})
    assert not intent.contains(live, {"spec": {"containers": None}})


NODE = "k8s-worker-01.dc1.northwind.internal"


def test_a_cordon_and_its_undo_are_judged_as_the_api_server_returns_the_node(orders):
    """The undo of a cordon asks for `unschedulable: false`; the API server returns no field."""
    with live_writer(orders) as writer:
        plan, calls = planned(writer, "node.cordon", {"name": NODE})
        before = intent.undo_calls(plan.undo)
        assert "unschedulable" not in (writer.get("Node", None, NODE).get("spec") or {})
        assert intent.judge(writer, calls, before).verdict == "not_applied"
        plan.write(writer, False)
        assert intent.judge(writer, calls, before).verdict == "applied"
        operations.apply_undo(writer, plan.undo)
        assert "unschedulable" not in writer.get("Node", None, NODE)["spec"], "stored as a real server stores it"
        assert intent.judge(writer, before, calls).verdict == "applied", "the undo, found applied"
        assert intent.judge(writer, calls, before).verdict == "not_applied"


def test_a_drain_is_judged_call_by_call(orders):
    with live_writer(orders) as writer:
        plan, calls = planned(writer, "node.drain", {"name": NODE})
        assert [c["verb"] for c in calls] == ["patch", "evict", "evict"]
        before = intent.undo_calls(plan.undo)
        assert intent.judge(writer, calls, before).verdict == "not_applied"
        writer.patch("Node", None, NODE, calls[0]["body"], calls[0]["content_type"], False)
        writer.evict(calls[1]["namespace"], calls[1]["name"], False)  # killed before the last eviction
        partly = intent.judge(writer, calls, before)
        assert partly.verdict == "undecided" and "2 of 3" in partly.detail
        writer.evict(calls[2]["namespace"], calls[2]["name"], False)
        assert intent.judge(writer, calls, before).verdict == "applied"


@pytest.mark.parametrize(("operation", "limit", "stored"), [
    ("container.set_memory", "1024Mi", "1Gi"),
    ("container.set_memory", "1536Mi", "1536Mi"),
    ("container.set_cpu", "2.5", "2500m"),
    ("container.set_cpu", "3000m", "3"),
])
def test_a_limit_is_judged_by_value_though_stored_in_canonical_form(orders, operation, limit, stored):
    values = {"namespace": "orders", "kind": "Deployment", "name": "pricing", "container": "pricing", "limit": limit}
    with live_writer(orders) as writer:
        plan, calls = planned(writer, operation, values)
        before = intent.undo_calls(plan.undo)
        assert intent.judge(writer, calls, before).verdict == "not_applied"
        plan.write(writer, False)
        live = writer.get("Deployment", "orders", "pricing")["spec"]["template"]["spec"]["containers"][0]
        assert live["resources"]["limits"][operation.rsplit("_", 1)[1]] == stored
        assert intent.judge(writer, calls, before).verdict == "applied"


def test_contains_reads_missing_as_empty_and_quantities_by_value():
    assert intent.contains({"spec": {}}, {"spec": {"unschedulable": False, "replicas": 0, "taints": [],
                                                   "labels": {}, "note": ""}})
    assert not intent.contains({"spec": {}}, {"spec": {"unschedulable": True}})
    assert intent.contains({"limits": {"memory": "1Gi", "cpu": "500m"}}, {"limits": {"memory": "1024Mi", "cpu": "0.5"}})
    assert not intent.contains({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1000Mi"}})
    assert not intent.contains({"image": "web:1"}, {"image": "web:2"})


UNVERIFIED = ProposalView(
    reference="INC-4", title="Scale orders-api to 4", runbook="scale-deployment", step="scale", risk="low",
    status="unverified", params={"namespace": "orders", "name": "orders-api", "replicas": 4},
    plan={"summary": "scale Deployment orders/orders-api from 3 to 4 replicas", "dry_run": "accepted by the API server",
          "diff": [["spec.replicas", 3, 4]]},
    decision={"decision": "needs_approval", "rule": "approval", "reason": "1 approval(s) from oncall",
              "approvals_needed": 1, "approver_groups": ["oncall"], "gates": []},
    approvals=["U0ALICE"],
    result={"query": "min(up)", "expect": "> 1", "before": None, "after": None,
            "unverified": "no data to verify with: Prometheus could not be read (ConnectionError)",
            "note": "The bot restarted while applying this step; the change was found applied, verifying it now."},
    rollback_value="7.1767000000.0123456789abcdef0123456789abcdef",
    accept_value="7.1767000000.fedcba9876543210fedcba9876543210")


def test_an_unverified_step_renders_its_note_and_both_buttons():
    rendered = render_proposal(UNVERIFIED)
    assert valid_blocks(rendered["blocks"])
    check_golden("proposal_unverified", rendered)
    accepted = render_proposal(replace(UNVERIFIED, status="accepted", result={**UNVERIFIED.result,
                                                                              "accepted_by": "U0BOB"}))
    assert not [b for b in accepted["blocks"] if b["type"] == "actions"]
    assert "<@U0BOB> accepted it as it is" in str(accepted["blocks"])
