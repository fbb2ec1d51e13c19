"""Issue 12, item 4: no data during verification is "could not verify", never a rollback.

A step applied in the sandbox cluster while Prometheus refuses connections, is not configured,
or has no such series ends `unverified`: nothing is rolled back, the thread says so and offers
Roll back / Accept (signed, re-checked at click time). Accept records the decision; Roll back
applies the undo exactly once; refused clicks are answered to the clicker and on the timeline.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Proposal, TimelineEntry
from bot.remediation.execute import DECIDE_WINDOW, verdict_at_deadline
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
    w.click(message, "step_verify_rollback", ALICE)  # a new click after the decision
    eventually(lambda: any("no longer waiting" in t for t in w.ephemeral_to(ALICE)))
    assert [bool(c["refused"]) for c in entries(w, "remediation.verification_clicked")] == [False, True]
    forged_click, replayed = entries(w, "click.refused")  # on the thread's incident, as refused
    assert forged_click["action"] == "verify_rollback" and "altered" in forged_click["reason"]
    assert "replay" in replayed["reason"], "the same signed request again is refused at the door"
    assert result_of(w)[0] == "rolled_back"


def test_without_prometheus_the_step_is_unverified_at_once(world, orders):
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES}, prometheus=False)
    applied_unverified(w)
    assert result_of(w)[1]["unverified"] == "Prometheus is not configured"
    assert entries(w, "remediation.rolled_back") == []


def test_which_samples_decide_at_the_deadline():
    assert verdict_at_deadline(real_samples=0) == "unverified"  # nothing real in the whole window
    assert verdict_at_deadline(real_samples=1) == "failed"  # the last real sample did not hold


def test_a_value_naming_another_incidents_step_writes_nothing_into_its_timeline(world, orders):
    """A value that fails verification names nothing trusted: a click on a message that is not
    ours, carrying an existing step's id, must not reach that step's incident."""
    from tests.remediation.world import block_actions

    w = world(orders, prometheus=False)
    w.deliver()
    message = w.proposal("rollback-deployment")
    with unit_of_work(w.bot.runtime.factory) as session:
        step_id = session.execute(select(Proposal.id)).scalar_one()
    before = len(entries(w, "click.refused")) + len(entries(w, "remediation.verification_clicked"))
    elsewhere = {**message, "ts": "1700000000.000100"}  # a message of some other thread, not the bot's
    for action_id in ("step_verify_rollback", "step_verify_accept"):
        forged = {"action_id": action_id, "value": f"{step_id}.9999999999.{'0' * 32}"}
        assert w.post_interaction(block_actions(elsewhere, forged, MALLORY)).status_code == 200
    eventually(lambda: len([t for t in w.ephemeral_to(MALLORY) if "Not " in t]) == 2)
    assert len(entries(w, "click.refused")) + len(entries(w, "remediation.verification_clicked")) == before


def test_a_kill_switch_set_after_the_roll_back_click_stops_the_rollback(world, orders):
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES}, prometheus=False)
    message = applied_unverified(w)
    w.bot.runtime.workers.stop()  # the click lands, the executor has not picked the rollback up yet
    w.click(message, "step_verify_rollback", ALICE)
    eventually(lambda: result_of(w)[0] == "rollback_requested")
    w.command("freeze orders maintenance", BOB)
    eventually(lambda: any("Kill switch on" in t for t in w.ephemeral_to(BOB)))
    w.bot.runtime.workers.start()
    back = w.slack.wait_for(lambda _: next((m for m in w.proposals() if "`scale-and-check`" in str(m["blocks"])
                                            and "Not rolled back: the kill switch is on" in str(m["blocks"])), None),
                            timeout=30)
    assert "could not be verified: roll back or accept" in back["blocks"][0]["text"]["text"]
    buttons = [e["text"]["text"] for b in back["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Roll back", "Accept"], "the decision is still open"
    assert scales(w) == [4], "never rolled back"
    (denied,) = entries(w, "remediation.rollback_denied")
    assert denied["decision"]["decision"] == "deny"
    status, result = result_of(w)
    assert status == "unverified" and "rollback_intent" not in result, "denied before anything was recorded"


def test_an_unverified_step_nobody_decides_on_expires_when_its_buttons_do(world, orders):
    w = world(orders, runbooks={"scale-and-check": NO_SUCH_SERIES}, prometheus=False)
    message = applied_unverified(w)
    with unit_of_work(w.bot.runtime.factory) as session:
        row = session.execute(select(Proposal).where(Proposal.runbook_id == "scale-and-check")).scalar_one()
        window_end = datetime.fromisoformat(row.result["decide_until"])
        assert row.next_check_at == window_end.replace(tzinfo=row.next_check_at.tzinfo), "expires with the buttons"
        row.next_check_at = row.next_check_at - DECIDE_WINDOW  # the seven days, passed at once
    done = w.wait_status("scale-and-check", "nobody decided in time", timeout=30)
    assert "buttons expired" in str(done["blocks"]) and "Nothing was rolled back" in str(done["blocks"])
    assert not [b for b in done["blocks"] if b["type"] == "actions"], "no dead buttons"
    assert result_of(w)[0] == "unverified_expired"
    assert len(entries(w, "remediation.unverified_expired")) == 1
    w.click(message, "step_verify_rollback", ALICE)  # the old message's button
    eventually(lambda: any("no longer waiting" in t for t in w.ephemeral_to(ALICE)))
    assert scales(w) == [4]
