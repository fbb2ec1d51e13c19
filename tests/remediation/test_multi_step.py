"""Runbooks with several steps: the next step is proposed (and approved, run and verified like
the first) only after the previous one succeeded, never after it was rolled back."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Proposal
from tests.concurrency import eventually
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, BOB, world  # noqa: F401 - fixture

TWO_STEPS = """
id: scale-in-two-steps
title: Scale up in two steps
owners: [tests]
params:
  namespace: {type: name}
  name: {type: name}
  first: {type: integer}
  then: {type: integer}
steps:
  - id: first
    title: Scale ${name} to ${first}
    operation: deployment.scale
    input: {namespace: "${namespace}", name: "${name}", replicas: "${first}"}
    approval: {groups: [oncall], approvals: 1}
    capture: [target]
    verify: {promql: "vector(1)", compare: ">", threshold: 0, within_seconds: 20, poll_seconds: 1}
    on_failure: rollback
    rollback: {operation: restore.captured}
  - id: then
    title: Then scale ${name} to ${then}
    operation: deployment.scale
    input: {namespace: "${namespace}", name: "${name}", replicas: "${then}"}
    approval: {groups: [oncall], approvals: 1}
    capture: [target]
    verify: {promql: "vector(1)", compare: ">", threshold: 0, within_seconds: 20, poll_seconds: 1}
    on_failure: rollback
    rollback: {operation: restore.captured}
"""


def steps(w) -> list[tuple[str, str]]:
    with unit_of_work(w.bot.runtime.factory) as session:
        return [(p.step_id, p.status) for p in session.execute(
            select(Proposal).where(Proposal.runbook_id == "scale-in-two-steps").order_by(Proposal.id)).scalars()]


def message_of(w, title: str) -> dict:
    return w.slack.wait_for(lambda _: next((m for m in w.proposals() if title in str(m["blocks"])), None), timeout=30)


def test_the_second_step_is_proposed_after_the_first_succeeded_and_needs_its_own_approval(world):
    w = world(shared("orders-api-revision-22-panics-on-start"), runbooks={"scale-in-two-steps": TWO_STEPS})
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 scale-in-two-steps namespace=orders name=orders-api first=4 then=5", BOB)
    w.click(message_of(w, "Scale orders-api to 4"), "step_approve", ALICE)
    eventually(lambda: steps(w) == [("first", "succeeded"), ("then", "proposed")], timeout=60)
    assert w.cluster.get("Deployment", "orders", "orders-api")["spec"]["replicas"] == 4, "step 2 waits for approval"
    w.click(message_of(w, "Then scale orders-api to 5"), "step_approve", ALICE)
    eventually(lambda: steps(w) == [("first", "succeeded"), ("then", "succeeded")], timeout=60)
    assert [m.body["spec"]["replicas"] for m in w.writes() if m.subresource == "scale"] == [4, 5]


def test_no_next_step_after_a_rollback(world):
    never = TWO_STEPS.replace('promql: "vector(1)", compare: ">", threshold: 0, within_seconds: 20',
                              'promql: "vector(0)", compare: ">", threshold: 1, within_seconds: 2', 1)
    w = world(shared("orders-api-revision-22-panics-on-start"), runbooks={"scale-in-two-steps": never})
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 scale-in-two-steps namespace=orders name=orders-api first=4 then=5", BOB)
    w.click(message_of(w, "Scale orders-api to 4"), "step_approve", ALICE)
    eventually(lambda: steps(w) == [("first", "rolled_back")], timeout=60)
    w.bot.runtime.workers.stop()  # let any (wrong) follow-up proposal land before looking
    assert steps(w) == [("first", "rolled_back")]


def test_no_next_step_once_the_incident_closed_and_the_timeline_says_why(world):
    from bot.db.models import Incident, TimelineEntry
    from bot.incidents import lifecycle

    w = world(shared("orders-api-revision-22-panics-on-start"), runbooks={"scale-in-two-steps": TWO_STEPS})
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 scale-in-two-steps namespace=orders name=orders-api first=4 then=5", BOB)
    message = message_of(w, "Scale orders-api to 4")
    with unit_of_work(w.bot.runtime.factory) as session:  # the incident closes while step 1 awaits approval
        incident = session.get(Incident, 1)
        lifecycle.close(session, incident, "closed", "quiet for the window", w.bot.runtime.clock())
    w.click(message, "step_approve", ALICE)
    eventually(lambda: steps(w) == [("first", "succeeded")], timeout=60)

    def why() -> list[dict]:
        with unit_of_work(w.bot.runtime.factory) as session:
            return [e.payload for e in session.execute(select(TimelineEntry).where(
                TimelineEntry.kind == "remediation.next_step_not_proposed")).scalars()]

    eventually(lambda: why() != [])
    assert why()[0]["step"] == "then" and why()[0]["why"] == "the incident is no longer open"
    assert steps(w) == [("first", "succeeded")]
