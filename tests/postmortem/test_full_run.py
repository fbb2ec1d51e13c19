"""A whole incident with two replicas: alert → RCA → approved step → verified → resolved → one
postmortem in the thread whose times and numbers are the database's; reopened and resolved
again → the same message, updated. The sandbox cluster, a real Prometheus scraping its live
state, signed Slack clicks and commands (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import Incident, Proposal, TimelineEntry
from bot.postmortem.facts import postmortem_facts
from bot.postmortem.markdown import duration, utc
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, BOB, world  # noqa: F401 - fixture

pytestmark = pytest.mark.prometheus


def postmortems(w) -> list[dict]:
    return [m for m in w.thread()[1:] if m.get("text", "").startswith("Postmortem")]


def catchups(w) -> list[dict]:
    return [m for m in w.thread()[1:] if m.get("text", "").startswith("Catch-up")]


def kinds(w) -> list[str]:
    with reading(w.bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.kind).where(TimelineEntry.incident_id == 1)
                                    .order_by(TimelineEntry.seq)).scalars())


def test_a_remediated_incident_gets_one_postmortem_that_matches_the_database(world):
    w = world(shared("orders-api-revision-22-panics-on-start"), replicas=2, postmortem_grace_seconds=0,
              investigation_budget_seconds=60)  # a loaded machine must not cut the RCA short
    w.deliver()
    proposal = w.proposal("rollback-deployment")
    card = w.slack.wait_for(lambda emu: next((m for m in emu.messages() if "thread_ts" not in m
                                              and "incident_take_command" in json.dumps(m["blocks"])), None))
    assert w.click(card, "incident_take_command", BOB).status_code == 200
    w.slack.wait_for(lambda _: "orders-api: proposed" in json.dumps(catchups(w)), timeout=15)
    assert w.click(proposal, "step_approve", ALICE).status_code == 200
    w.wait_status("rollback-deployment", "succeeded", timeout=60)
    w.slack.wait_for(lambda _: "rollback-deployment on Deployment/orders/orders-api: succeeded"
                     in json.dumps(catchups(w)), timeout=15)
    assert len(catchups(w)) == 1, "the catch-up follows the step in place"
    assert w.command("resolve INC-1 rolled back to 4.11.3", ALICE).status_code == 200
    (message,) = w.slack.wait_for(lambda _: postmortems(w), timeout=30)
    w.slack.wait_for(lambda _: "postmortem.posted" in kinds(w), timeout=15)

    with reading(w.bot.runtime.factory) as session:
        incident = session.get(Incident, 1)
        step = session.execute(select(Proposal).where(Proposal.runbook_id == "rollback-deployment")).scalar_one()
        facts = postmortem_facts(session, 1)
        resolved_at, result = incident.resolved_at, dict(step.result)
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert facts["resolution"] == "bot-mitigated" and "mitigated by the bot" in text
    assert utc(resolved_at.isoformat()) in text, "the resolution time is the database's"
    assert duration(facts["durations"]["ttr"]) in text
    shown = ["—" if result[k] is None else str(result[k]) for k in ("before", "after")]
    assert f"verification {shown[0]} → {shown[1]}" in text, "the check's numbers, before and after"
    assert "<@U0ALICE>" in text and "bad_deploy" in text

    # reopened and resolved again: the same message, edited, saying so; still one
    card = w.slack.wait_for(lambda emu: next((m for m in emu.messages() if "thread_ts" not in m
                                              and "incident_reopen" in json.dumps(m["blocks"])), None), timeout=15)
    assert w.click(card, "incident_reopen", BOB).status_code == 200
    w.slack.wait_for(lambda _: "incident.reopened" in kinds(w), timeout=15)
    assert w.command("resolve INC-1 it was the probe as well", BOB).status_code == 200
    w.slack.wait_for(lambda _: "postmortem.updated" in kinds(w), timeout=30)
    (updated,) = postmortems(w)
    assert updated["ts"] == message["ts"] and "reopened 1 time" in json.dumps(updated["blocks"])
    assert kinds(w).count("postmortem.posted") == 1, "two replicas, one postmortem"
