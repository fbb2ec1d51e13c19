"""Clicks an attacker (or a confused client) sends (issue 12, items 10 and 12): a click with no
channel where the policy lists channels is refused; every refused click is on the timeline."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import TimelineEntry
from bot.sandbox.slack_emulator.state import DEFAULT_CHANNEL_ID
from tests.concurrency import eventually
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, BOB, POLICY, block_actions, world  # noqa: F401 - fixture

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


def entries(w, kind: str) -> list[dict]:
    with reading(w.bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.payload).where(TimelineEntry.kind == kind)
                                    .order_by(TimelineEntry.seq)).scalars())


def approve_payload(message: dict, user: str, **changes) -> dict:
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "step_approve")
    return block_actions(message, {**button, **changes}, user)


def test_an_approve_click_without_a_channel_is_refused_where_channels_are_listed(world, orders):
    w = world(orders, policy=POLICY + f"channels: [{DEFAULT_CHANNEL_ID}]\n", prometheus=False)
    w.deliver()
    message = w.proposal("rollback-deployment")
    assert message["channel"] == DEFAULT_CHANNEL_ID
    payload = approve_payload(message, ALICE)
    del payload["channel"]
    assert w.post_interaction(payload).status_code == 200
    (clicked,) = eventually(lambda: entries(w, "remediation.clicked"), timeout=15)
    assert (clicked["decision"]["decision"], clicked["decision"]["rule"]) == ("deny", "channels")
    assert w.writes() == [], "the step did not run"
    reject = block_actions(message, next(e for b in message["blocks"] if b["type"] == "actions"
                                         for e in b["elements"] if e["action_id"] == "step_reject"), ALICE)
    del reject["channel"]
    root = w.thread()[0]
    acknowledge = block_actions(root, next(e for b in root["blocks"] if b["type"] == "actions"
                                           for e in b["elements"] if e["action_id"] == "incident_ack"), ALICE)
    del acknowledge["channel"]
    for payload in (reject, acknowledge):
        assert w.post_interaction(payload).status_code == 200
    refused = eventually(lambda: entries(w, "click.refused") if len(entries(w, "click.refused")) >= 2 else None,
                         timeout=15)
    assert sorted(entry["action"] for entry in refused) == ["acknowledge", "reject"]
    assert all("no channel" in entry["reason"] for entry in refused)
    assert entries(w, "remediation.rejected") == [] and entries(w, "incident.acknowledged") == []
    assert w.click(message, "step_approve", ALICE).status_code == 200  # the same click from the thread's channel
    eventually(lambda: entries(w, "remediation.applied"), timeout=30)
    assert len(w.writes()) == 1


def test_refused_clicks_are_on_the_timeline(world, orders):
    w = world(orders, prometheus=False)
    w.deliver()
    message = w.proposal("rollback-deployment")
    tampered = approve_payload(message, ALICE)
    value = tampered["actions"][0]["value"]
    tampered["actions"][0]["value"] = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert w.post_interaction(tampered).status_code == 200
    garbage = approve_payload(message, ALICE)
    garbage["actions"][0]["value"] = "not-a-token"
    assert w.post_interaction(garbage).status_code == 200
    refused = eventually(lambda: entries(w, "click.refused") if len(entries(w, "click.refused")) >= 2 else None,
                         timeout=15)
    reasons = sorted(entry["reason"] for entry in refused)
    assert any("altered" in reason for reason in reasons) and any("not one of opsbot's" in reason for reason in reasons)
    assert w.writes() == []
    assert w.click(message, "step_approve", ALICE).status_code == 200
    eventually(lambda: entries(w, "remediation.approved"), timeout=15)
    assert w.click(message, "step_approve", BOB).status_code == 200  # on a step already approved (or running)
    assert w.click(message, "step_reject", BOB).status_code == 200
    later = eventually(lambda: entries(w, "click.refused") if len(entries(w, "click.refused")) >= 4 else None,
                       timeout=15)
    assert [entry["action"] for entry in later[2:]] == ["approve", "reject"]
    assert all("already" in entry["reason"] for entry in later[2:])


def test_a_replayed_ops_run_creates_one_proposal(world, orders):
    import requests

    from bot.db.models import Proposal
    from bot.sandbox import slack_signing
    from tests.conftest import SIGNING_SECRET

    w = world(orders, prometheus=False)
    w.deliver()
    w.proposal("rollback-deployment")
    body, headers = slack_signing.slash_command(SIGNING_SECRET, user_id=BOB,
                                                text="run INC-1 restart-deployment namespace=orders name=orders-api")
    for _ in range(2):
        assert requests.post(f"{w.bot.url}/slack/commands", data=body, headers=headers, timeout=10).status_code == 200
    w.proposal("restart-deployment")
    assert w.command("status", BOB).status_code == 200  # a later command: the replay, had it run, ran before
    eventually(lambda: len(w.ephemeral_to(BOB)) >= 2, timeout=15)
    with reading(w.bot.runtime.factory) as session:
        runbooks = session.execute(select(Proposal.runbook_id).order_by(Proposal.id)).scalars().all()
    assert runbooks.count("restart-deployment") == 1


def test_a_replayed_click_is_refused_at_the_door_and_recorded(world, orders):
    w = world(orders, prometheus=False)
    w.deliver()
    message = w.proposal("rollback-deployment")
    payload = approve_payload(message, ALICE)
    assert w.post_interaction(payload).status_code == 200
    assert w.post_interaction(payload).status_code == 200  # the same signed request again
    (replayed,) = eventually(lambda: entries(w, "click.refused"), timeout=15)
    assert replayed["action"] == "step_approve" and "replay" in replayed["reason"]
    eventually(lambda: entries(w, "remediation.applied"), timeout=30)
    assert len(entries(w, "remediation.clicked")) == 1 and len(w.writes()) == 1
