"""The recorded intent of a write, judged against the live objects of the sandbox API server
(through the real `kubernetes` client): applied, not applied, or undecided when someone else
changed the object since. And the unverified step's message, as a golden file."""

from __future__ import annotations

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
    with served(orders) as url:
        api_client = access(url, None).api_client()
        try:
            writer = KubeWriter(api_client)
            plan, calls = planned(writer, operation, values)
            assert calls and all(not c.get("dry_run") for c in calls)
            before = intent.undo_calls(plan.undo)
            assert intent.judge(writer, calls, before).verdict == "not_applied"
            plan.write(writer, False)
            assert intent.judge(writer, calls, before).verdict == "applied"
        finally:
            api_client.close()


def test_an_object_changed_by_someone_else_is_undecided(orders):
    with served(orders) as url:
        api_client = access(url, None).api_client()
        try:
            writer = KubeWriter(api_client)
            plan, calls = planned(writer, "deployment.scale", {"namespace": "orders", "name": "orders-api",
                                                               "replicas": 5})
            writer.scale("Deployment", "orders", "orders-api", 7, False)  # neither the plan nor the undo
            judgement = intent.judge(writer, calls, intent.undo_calls(plan.undo))
            assert judgement.verdict == "undecided" and "neither" in judgement.detail
        finally:
            api_client.close()


def test_contains_matches_named_lists_by_name_and_none_as_absent():
    live = {"spec": {"containers": [{"name": "a", "image": "x", "ports": [1]}, {"name": "b", "image": "y"}]}}
    assert intent.contains(live, {"spec": {"containers": [{"name": "b", "image": "y"}]}}, by_name=True)
    assert not intent.contains(live, {"spec": {"containers": [{"name": "b", "image": "z"}]}}, by_name=True)
    assert intent.contains(live, {"spec": {"paused": None}})
    assert not intent.contains(live, {"spec": {"containers": None}})


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
