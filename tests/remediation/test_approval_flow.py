"""The whole remediation path through signed Slack interaction payloads, against the sandbox
cluster and a real Prometheus that scrapes the sandbox's live state: propose, approve, run
exactly once, verify, roll back; and every click that must be refused."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Proposal, TimelineEntry
from bot.remediation import store, tokens
from bot.timeline.chain import verify_incident
from tests.concurrency import eventually, run_together
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, BOB, MALLORY, POLICY, world  # noqa: F401 - fixture

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


def kinds(w, incident_id=1):
    with unit_of_work(w.bot.runtime.factory) as session:
        return [e.kind for e in session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                                                .order_by(TimelineEntry.seq)).scalars()]


def status_of(w, runbook):
    with unit_of_work(w.bot.runtime.factory) as session:
        return session.execute(select(Proposal.status).where(Proposal.runbook_id == runbook)).scalar_one()


def test_a_bad_rollout_is_rolled_back_after_approval_and_verified(world, orders):
    w = world(orders)
    w.deliver()
    message = w.proposal("rollback-deployment")
    text = str(message["blocks"])
    assert "Roll orders-api back to revision 21" in text and "accepted by the API server" in text
    assert w.writes() == [], "nothing changes before someone approves"
    assert w.click(message, "step_approve", ALICE).status_code == 200
    done = w.wait_status("rollback-deployment", "succeeded", timeout=60)
    assert "before" in str(done["blocks"]) and "now 1" in str(done["blocks"])
    (write,) = w.writes()
    assert (write.verb, write.kind, write.name) == ("patch", "Deployment", "orders-api")
    images = [c["image"] for c in w.cluster.get("Deployment", "orders", "orders-api")["spec"]["template"]["spec"]
              ["containers"]]
    assert images == ["ghcr.io/northwind/orders-api:4.11.3"]
    trail = kinds(w)
    assert trail.index("remediation.proposed") < trail.index("remediation.considered")
    with unit_of_work(w.bot.runtime.factory) as session:
        considered = session.execute(select(TimelineEntry.payload)
                                     .where(TimelineEntry.kind == "remediation.considered")).scalar_one()
    assert considered["cause"] == "bad_deploy"
    assert [(p["runbook"], p["status"]) for p in considered["proposed"]] == [("rollback-deployment", "proposed")]
    for kind in ("remediation.proposed", "remediation.clicked", "remediation.approved",
                 "remediation.execution_checked", "remediation.applied", "remediation.succeeded"):
        assert kind in trail
    with unit_of_work(w.bot.runtime.factory) as session:
        from bot.db.models import Incident

        assert verify_incident(session, session.get(Incident, 1)) == []


def test_a_step_denied_by_a_freeze_window_never_touches_the_cluster(world, orders):
    frozen = POLICY + "freeze_windows:\n  - {id: always, cron: '* * * * *', namespaces: [orders], reason: release week}\n"
    w = world(orders, policy=frozen, prometheus=False)
    w.deliver()
    message = w.wait_status("rollback-deployment", "denied by policy")
    text = str(message["blocks"])
    assert "change freeze always" in text and "release week" in text
    assert not [b for b in message["blocks"] if b["type"] == "actions"], "no buttons on a denied step"
    time.sleep(1)
    assert w.cluster.mutations == [], "not even a dry run"


VERIFY_NEVER_HOLDS = """
id: scale-and-check
title: Scale and check something that never holds
owners: [tests]
params:
  namespace: {type: name}
  name: {type: name}
  replicas: {type: integer}
steps:
  - id: scale
    title: Scale ${name} to ${replicas}
    operation: deployment.scale
    input: {namespace: "${namespace}", name: "${name}", replicas: "${replicas}"}
    approval: {groups: [oncall], approvals: 1}
    capture: [target]
    verify: {promql: "vector(0)", compare: ">", threshold: 1, within_seconds: 2, poll_seconds: 1}
    on_failure: rollback
    rollback: {operation: restore.captured}
"""


def test_a_failed_verification_rolls_the_step_back(world, orders):
    w = world(orders, runbooks={"scale-and-check": VERIFY_NEVER_HOLDS})
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 scale-and-check namespace=orders name=orders-api replicas=4", BOB)
    message = w.proposal("scale-and-check")
    w.click(message, "step_approve", ALICE)
    done = w.wait_status("scale-and-check", "rolled back", timeout=60)
    assert "before" in str(done["blocks"])
    scales = [m for m in w.writes() if m.subresource == "scale"]
    assert [m.body["spec"]["replicas"] for m in scales] == [4, 3], "scaled, then restored"
    assert w.cluster.get("Deployment", "orders", "orders-api")["spec"]["replicas"] == 3
    assert "remediation.rolled_back" in kinds(w)


def test_clicks_that_must_be_refused_are_refused_with_a_reason(world, orders):
    w = world(orders)
    w.deliver()
    message = w.proposal("rollback-deployment")
    w.click(message, "step_approve", MALLORY)
    eventually(lambda: any("not in oncall" in t for t in w.ephemeral_to(MALLORY)))
    assert status_of(w, "rollback-deployment") == "proposed"

    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "step_approve")
    from tests.remediation.world import block_actions

    forged = dict(button, value=button["value"][:-1] + ("0" if button["value"][-1] != "0" else "1"))
    w.post_interaction(block_actions(message, forged, ALICE))
    eventually(lambda: any("altered" in t for t in w.ephemeral_to(ALICE)))

    payload = block_actions(message, button, ALICE)
    first = w.post_interaction(payload)
    replay = w.post_interaction(payload)  # the same signed payload again
    assert first.status_code == replay.status_code == 200
    w.wait_status("rollback-deployment", "succeeded", timeout=60)
    w.click(message, "step_approve", BOB)  # a second click, on the old message
    eventually(lambda: any("already" in t for t in w.ephemeral_to(BOB)))
    assert len(w.writes()) == 1, "approved twice, run once"


def test_self_approval_is_refused_where_the_runbook_forbids_it(world, orders):
    w = world(orders)
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 restart-deployment namespace=orders name=orders-api", ALICE)
    message = w.proposal("restart-deployment")
    w.click(message, "step_approve", ALICE)
    eventually(lambda: any("someone else must approve" in t for t in w.ephemeral_to(ALICE)))
    assert status_of(w, "restart-deployment") == "proposed"


SHORT_LIVED = VERIFY_NEVER_HOLDS.replace("id: scale-and-check", "id: short-lived").replace(
    "approval: {groups: [oncall], approvals: 1}", "approval: {groups: [oncall], approvals: 1, request_ttl_seconds: 1}")


def test_an_expired_request_cannot_be_approved(world, orders):
    w = world(orders, runbooks={"short-lived": SHORT_LIVED}, prometheus=False)
    w.deliver()
    w.proposal("rollback-deployment")
    w.command("run INC-1 short-lived namespace=orders name=orders-api replicas=4", BOB)
    message = w.proposal("short-lived")
    time.sleep(2)
    w.click(message, "step_approve", ALICE)
    eventually(lambda: any("expired" in t for t in w.ephemeral_to(ALICE)))
    assert status_of(w, "short-lived") in ("proposed", "expired")
    assert not [m for m in w.writes() if m.subresource == "scale"]


def test_the_kill_switch_stops_an_approved_step_before_it_runs(world, orders):
    w = world(orders)
    w.deliver()
    message = w.proposal("rollback-deployment")
    w.bot.runtime.workers.stop()  # the approval lands, the executor has not picked it up yet
    w.click(message, "step_approve", ALICE)
    eventually(lambda: status_of(w, "rollback-deployment") == "approved")
    w.command("freeze orders", MALLORY)
    eventually(lambda: any("Not frozen: only the freeze managers (oncall)" in t for t in w.ephemeral_to(MALLORY)))
    with unit_of_work(w.bot.runtime.factory) as session:
        assert store.kill_switches(session) == frozenset(), "a refused freeze changes nothing"
    w.command("freeze orders maintenance", BOB)
    eventually(lambda: any("Kill switch on" in t for t in w.ephemeral_to(BOB)))
    w.bot.runtime.workers.start()
    eventually(lambda: status_of(w, "rollback-deployment") == "denied", timeout=15)
    assert w.writes() == []
    w.command("unfreeze orders", BOB)
    eventually(lambda: any("lifted" in t for t in w.ephemeral_to(BOB)))


def test_rejecting_asks_for_a_reason_and_the_step_never_runs(world, orders):
    w = world(orders, prometheus=False)
    w.deliver()
    message = w.proposal("rollback-deployment")
    w.click(message, "step_reject", BOB)
    (opened,) = w.slack.wait_for(lambda emu: emu.calls_to("views.open"))
    view = opened.args["view"]
    submission = {"type": "view_submission", "user": {"id": BOB, "team_id": "T0EMULATOR"},
                  "team": {"id": "T0EMULATOR"}, "api_app_id": "A0OPSBOT", "trigger_id": "1.2.3",
                  "view": {**view, "id": "V1", "state": {"values": {"reason": {"text": {
                      "type": "plain_text_input", "value": "the fix is already being deployed"}}}}}}
    assert w.post_interaction(submission).status_code == 200
    done = w.wait_status("rollback-deployment", "rejected")
    assert "the fix is already being deployed" in str(done["blocks"])
    assert w.writes() == []


def test_concurrent_approvals_run_the_step_exactly_once(world, orders):
    w = world(orders)
    w.deliver()
    message = w.proposal("rollback-deployment")
    w.bot.runtime.workers.stop()
    responses: list[requests.Response] = []
    errors = run_together(lambda i: responses.append(w.click(message, "step_approve", (ALICE, BOB)[i])), 2)
    assert errors == [] and all(r.status_code == 200 for r in responses)
    eventually(lambda: status_of(w, "rollback-deployment") == "approved")
    w.bot.runtime.workers.start()
    w.wait_status("rollback-deployment", "succeeded", timeout=60)
    assert len(w.writes()) == 1
    refused = w.ephemeral_to(ALICE) + w.ephemeral_to(BOB)
    assert sum("already approved" in t for t in refused) == 1


def test_a_token_names_its_purpose(orders):
    key = tokens.key_from("s")
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    value = tokens.sign(key, "approve", 7, now + timedelta(minutes=5))
    assert tokens.verify(key, "approve", value, now) == 7
    with pytest.raises(tokens.TokenError, match="altered"):
        tokens.verify(key, "reject", value, now)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(key, "approve", value, now + timedelta(minutes=6))
    with pytest.raises(tokens.TokenError, match="not one of"):
        tokens.verify(key, "approve", "7.abc", now)


def test_why_shows_the_step_decision_to_the_clicker_alone_and_changes_nothing(world, orders):
    w = world(orders)
    w.deliver()
    message = w.proposal("rollback-deployment")
    # the RCA may be posted just before or after the proposal (it follows the card at once):
    # let the thread settle, so that only what the click writes could differ
    eventually(lambda: "slack.rca_posted" in kinds(w), timeout=30)
    before = kinds(w)
    assert w.click(message, "step_why", BOB).status_code == 200
    said = w.slack.wait_for(lambda emu: [e for e in emu.ephemerals() if e.get("user") == BOB], timeout=15)
    text = str(said[0]["blocks"])
    assert "P-1" in text and "needs_approval" in text and "oncall" in text
    assert status_of(w, "rollback-deployment") == "proposed" and w.writes() == []
    assert kinds(w) == before, "reading the explanation writes nothing"
