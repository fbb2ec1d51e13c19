"""Issue 12, item 4: no data during verification is "could not verify", never a rollback.

A step applied in the sandbox cluster while Prometheus refuses connections, is not configured,
or has no such series ends `unverified`: nothing is rolled back, the thread says so and offers
Roll back / Accept (signed, re-checked at click time). Accept records the decision; Roll back
applies the undo exactly once; refused clicks are answered to the clicker and on the timeline.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Proposal, TimelineEntry
from bot.remediation.execute import verdict_at_deadline
from bot.sandbox.promstack import free_port
from tests.concurrency import eventually
from tests.context.sandbox import shared
from tests.remediation.test_approval_flow import VERIFY_NEVER_HOLDS
from tests.remediation.world import ALICE, BOB, MALLORY, world  # noqa: F401 - fixture

NO_SUCH_SERIES = VERIFY_NEVER_HOLDS.replace(
    'promql: "vector(0)"', "promql: 'min(opsbot_test_no_such_series{deployment=\"${name}\"})'")
RUN = "run INC-1 scale-and-check namespace=orders name=orders-api replicas=4"


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


def result_of(w) -> tuple[str, dict]:
    with unit_of_work(w.bot.runtime.factory) as session:
        row = session.execute(select(Proposal).where(Proposal.runbook_id == "scale-and-check")).scalar_one()
        return row.status, dict(row.result or {})


def entries(w, kind: str) -> list[dict]:
    with unit_of_work(w.bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.payload).where(TimelineEntry.kind == kind)
                                    .order_by(TimelineEntry.id)).scalars())


def scales(w) -> list[int]:
    return [m.body["spec"]["replicas"] for m in w.writes() if m.subresource == "scale"]


def applied_unverified(w) -> dict:
    """Propose, approve, and wait for the step to end unverified; its message."""
    w.deliver()
    w.proposal("rollback-deployment")
    w.command(RUN, BOB)
    w.click(w.proposal("scale-and-check"), "step_approve", ALICE)
    message = w.wait_status("scale-and-check", "could not be verified", timeout=60)
    text = str(message["blocks"])
    assert "Could not verify" in text and "Nothing was rolled back" in text
    buttons = [e["text"]["text"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Roll back", "Accept"]
    assert scales(w) == [4], "applied once, not rolled back"
    assert w.cluster.get("Deployment", "orders", "orders-api")["spec"]["replicas"] == 4
    return message


@pytest.mark.prometheus
def test_a_series_prometheus_does_not_have_leaves_the_step_unverified_and_accept_records_it(world, orders):
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES})
    message = applied_unverified(w)
    status, result = result_of(w)
    assert status == "unverified" and "no series" in result["unverified"] and result["real_samples"] == 0
    w.click(message, "step_verify_accept", MALLORY)
    eventually(lambda: any("Not accepted" in t and "not in oncall" in t for t in w.ephemeral_to(MALLORY)))
    assert result_of(w)[0] == "unverified"
    w.click(message, "step_verify_accept", ALICE)
    done = w.wait_status("scale-and-check", "accepted without verification", timeout=30)
    assert f"<@{ALICE}> accepted it" in str(done["blocks"])
    assert not [b for b in done["blocks"] if b["type"] == "actions"], "no buttons once decided"
    w.click(message, "step_verify_rollback", BOB)  # the old message's button, after the decision
    eventually(lambda: any("no longer waiting" in t for t in w.ephemeral_to(BOB)))
    assert scales(w) == [4], "accepted: never rolled back"
    clicked = entries(w, "remediation.verification_clicked")
    assert [(c["action"], bool(c["refused"])) for c in clicked] == [
        ("verify_accept", True), ("verify_accept", False), ("verify_rollback", True)]
    assert len(entries(w, "remediation.accepted")) == 1


@pytest.mark.prometheus
def test_prometheus_refusing_connections_leaves_the_step_unverified_and_roll_back_undoes_it_once(world, orders):
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES}, prometheus=False, prometheus_url=refused)
    message = applied_unverified(w)
    assert "could not be read" in result_of(w)[1]["unverified"]
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "step_verify_rollback")
    from tests.remediation.world import block_actions

    forged = {**button, "value": button["value"][:-1] + ("0" if button["value"][-1] != "0" else "1")}
    w.post_interaction(block_actions(message, forged, ALICE))
    eventually(lambda: any("altered" in t for t in w.ephemeral_to(ALICE)))
    payload = block_actions(message, button, ALICE)
    assert w.post_interaction(payload).status_code == 200
    assert w.post_interaction(payload).status_code == 200  # the same signed click again
    done = w.wait_status("scale-and-check", "rolled back on request", timeout=30)
    assert f"<@{ALICE}>" in str(done["blocks"])
    assert scales(w) == [4, 3], "applied, then the undo exactly once"
    assert w.cluster.get("Deployment", "orders", "orders-api")["spec"]["replicas"] == 3
    eventually(lambda: any("no longer waiting" in t for t in w.ephemeral_to(ALICE)))
    assert [bool(c["refused"]) for c in entries(w, "remediation.verification_clicked")] == [True, False, True]
    assert result_of(w)[0] == "rolled_back"


def test_without_prometheus_the_step_is_unverified_at_once(world, orders):
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES}, prometheus=False)
    applied_unverified(w)
    assert result_of(w)[1]["unverified"] == "Prometheus is not configured"
    assert entries(w, "remediation.rolled_back") == []


def test_which_samples_decide_at_the_deadline():
    assert verdict_at_deadline(real_samples=0) == "unverified"  # nothing real in the whole window
    assert verdict_at_deadline(real_samples=1) == "failed"  # the last real sample did not hold
