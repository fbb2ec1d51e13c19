"""PagerDuty-born incidents acknowledged from Slack, reopened incidents and per-install dedup
keys: through the running bot, the real `pagerduty` client and the PagerDuty emulator, whose
webhooks reach the bot signed as PagerDuty signs them."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery, TimelineEntry
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from bot.sandbox.pagerduty_webhooks import incident_resource, signed, user_reference, webhook_event
from tests.concurrency import eventually
from tests.handlers.test_intake_rules import card_json, configured_bot, roots  # noqa: F401 - fixture
from tests.handlers.test_pagerduty_intake import SECRET, ack_click, incident_count, kinds, pd, pd_bot  # noqa: F401
from tests.pagerduty.conftest import SteppedClock
from tests.payloads import am_alert, am_body


def state(bot, incident_id):
    """The incident row (detached: read its columns)."""
    with unit_of_work(bot.runtime.factory) as session:
        incident = session.get(Incident, incident_id)
        session.expunge(incident)
        return incident


def entries(bot, kind):
    with unit_of_work(bot.runtime.factory) as session:
        return [e.payload for e in session.execute(
            select(TimelineEntry).where(TimelineEntry.kind == kind).order_by(TimelineEntry.id)).scalars()]


def settled(bot, incident_id) -> bool:
    """The card shows the incident as it is and no thread note is waiting."""
    incident = state(bot, incident_id)
    return incident.card_synced_version >= incident.card_version and not incident.note_pending


def replies(slack, index: int = 0) -> list[str]:
    root = roots(slack)[index]
    return [message["text"] for message in slack.thread(root["channel"], root["ts"])[1:]]


def puts(emulator, pd_id):
    return [c for c in emulator.calls_to("rest", f"/incidents/{pd_id}") if c.method == "PUT" and c.status == 200]


def post_processed(bot, event):
    """POST one signed V3 webhook and wait until the bot has processed it (so the next one
    cannot overtake it on another intake thread)."""
    body, headers = signed(event, [SECRET])
    response = bot.post_webhook("pagerduty", body, token=None, headers=headers)
    assert response.status_code == 202, response.text
    delivery = response.json()["delivery"]

    def done():
        with unit_of_work(bot.runtime.factory) as session:
            return session.get(RawDelivery, delivery).status == "done"
    eventually(done)


def test_a_slack_ack_of_a_pagerduty_incident_reaches_pagerduty_and_its_echo_changes_nothing(
        configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    pd_id = pd.trigger_incident("Payments API 5xx rate above 5%", urgency="high")
    slack.wait_for(lambda emu: "incident_ack" in card_json(emu), timeout=15)
    assert ack_click(bot, 1).status_code == 200
    pd.wait_for(lambda emu: emu.incident(pd_id)["status"] == "acknowledged", timeout=15)
    (put,) = puts(pd, pd_id)
    assert put.headers["from"] == pd.from_email and put.body["incident"]["status"] == "acknowledged"
    assert pd.incident(pd_id)["acknowledgements"][-1]["acknowledger"]["summary"] == "opsbot"
    assert not pd.calls_to("events"), "the Events API cannot act on another integration's incident"

    eventually(lambda: {"pagerduty.sent.acknowledged", "pagerduty.echo.acknowledged"} <= set(kinds(bot)))
    eventually(lambda: settled(bot, 1))
    incident = state(bot, 1)
    assert incident.acknowledged_by == "alice", "our own acknowledgement's echo does not rename who acknowledged"
    assert (incident.pagerduty_status_wanted, incident.pagerduty_status_synced) == ("acknowledged", "acknowledged")
    assert "pagerduty.acknowledged" not in kinds(bot)
    # one note, not a second one from the echo (it may also say why there is no RCA: no Kubernetes labels)
    (said,) = [text for text in replies(slack) if "Acknowledged" in text]
    assert said.startswith(":eyes: Acknowledged by alice") and said.count("Acknowledged") == 1
    (acting,) = entries(bot, "pagerduty.acknowledging")
    assert acting["as"] == pd.incident(pd_id)["acknowledgements"][-1]["acknowledger"]["id"]

    # PagerDuty's acknowledgement timeout: the card offers Acknowledge again, and it is sent again
    pd.unacknowledge(pd_id)
    slack.wait_for(lambda emu: "incident_ack" in card_json(emu), timeout=15)
    assert ack_click(bot, 1, user="U0BOB", name="bob").status_code == 200
    pd.wait_for(lambda emu: len(puts(emu, pd_id)) == 2 and emu.incident(pd_id)["status"] == "acknowledged",
                timeout=15)
    eventually(lambda: kinds(bot).count("pagerduty.echo.acknowledged") == 2)
    assert state(bot, 1).acknowledged_by == "bob"
    assert len(entries(bot, "pagerduty.acknowledging")) == 1, "the user opsbot acts as is recorded once"


def test_resolving_a_pagerduty_incident_in_slack_resolves_it_there_and_reopening_says_it_cannot(
        configured_bot, pd, slack, tmp_path):  # noqa: F811
    import requests

    from bot.sandbox import slack_signing
    from tests.conftest import SIGNING_SECRET

    def ops(text: str):
        body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, trigger_id=slack_signing.new_trigger_id())
        return requests.post(f"{bot.url}/slack/commands", data=body, headers=headers, timeout=10)

    bot = pd_bot(configured_bot, pd, tmp_path)
    pd_id = pd.trigger_incident("Payments API 5xx rate above 5%", urgency="high")
    slack.wait_for(lambda emu: "incident_ack" in card_json(emu), timeout=15)
    assert ops("resolve INC-1 failed over to the standby").status_code == 200
    pd.wait_for(lambda emu: emu.incident(pd_id)["status"] == "resolved", timeout=15)
    (put,) = puts(pd, pd_id)
    assert put.headers["from"] == pd.from_email and put.body["incident"]["status"] == "resolved"
    eventually(lambda: "pagerduty.sent.resolved" in kinds(bot))
    eventually(lambda: settled(bot, 1) and kinds(bot).count("alerts.received") == 2)  # its echo, ingested
    assert state(bot, 1).status == "resolved" and state(bot, 1).resolved_by == "alice"
    assert kinds(bot).count("incident.resolved") == 1, "the echo does not resolve it a second time"
    assert ops("reopen INC-1").status_code == 200
    eventually(lambda: state(bot, 1).status == "open")
    (entry,) = entries(bot, "pagerduty.not_updated")
    assert "cannot reopen" in entry["reason"] and pd.incident(pd_id)["status"] == "resolved"
    assert len(puts(pd, pd_id)) == 1, "nothing is sent that PagerDuty would refuse"


def test_a_person_acknowledging_in_pagerduty_is_mirrored_while_our_ack_waits(
        configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    pd_id = pd.trigger_incident("Checkout latency p99 above 2s", urgency="high")
    slack.wait_for(lambda emu: "incident_ack" in card_json(emu), timeout=15)
    pd.inject(f"/incidents/{pd_id}", status=503, times=2, retry_after=600)  # the client's retry included
    assert ack_click(bot, 1).status_code == 200
    eventually(lambda: "pagerduty.unavailable" in kinds(bot), timeout=15)
    incident = state(bot, 1)
    assert (incident.pagerduty_status_wanted, incident.pagerduty_status_synced) == ("acknowledged", None)
    assert incident.pagerduty_retry_at is not None, "backing off, as PagerDuty asked"
    assert pd.incident(pd_id)["status"] == "triggered"

    pd.acknowledge(pd_id, by="Bob")  # a person, while opsbot's own acknowledgement is still wanted
    slack.wait_for(lambda emu: "acknowledged by Bob" in card_json(emu), timeout=15)
    slack.wait_for(lambda emu: any("Acknowledged in PagerDuty by Bob" in text for text in replies(emu)))
    assert "pagerduty.echo.acknowledged" not in kinds(bot)
    assert [e["agent"] for e in entries(bot, "pagerduty.acknowledged")] == ["Bob"]


@pytest.mark.parametrize("missing", [
    {"pagerduty_api_key": None, "pagerduty_from_email": None},  # the stage runs, REST is not configured
    {"pagerduty_routing_key": None},  # no PagerDuty stage at all, only webhooks
], ids=["no-rest-key", "no-routing-key"])
def test_without_rest_access_a_slack_ack_stays_local_and_says_so(configured_bot, pd, slack, tmp_path,  # noqa: F811
                                                                 missing):
    bot = pd_bot(configured_bot, pd, tmp_path, **missing)
    pd_id = pd.trigger_incident("Disk almost full on db-1", urgency="low")
    slack.wait_for(lambda emu: "incident_ack" in card_json(emu), timeout=15)
    assert ack_click(bot, 1).status_code == 200
    slack.wait_for(lambda emu: "acknowledged by alice" in card_json(emu), timeout=15)
    slack.wait_for(lambda emu: any("PagerDuty not updated" in text for text in replies(emu)))
    (entry,) = entries(bot, "pagerduty.not_updated")
    assert "OPSBOT_PAGERDUTY_API_KEY" in entry["reason"]
    incident = state(bot, 1)
    assert incident.acknowledged_by == "alice"
    assert incident.pagerduty_status_wanted is None, "nothing queued, so nothing retries"
    assert pd.incident(pd_id)["status"] == "triggered"
    assert not pd.calls_to("rest") and not pd.calls_to("events")


@pytest.fixture
def pd_clock():
    return SteppedClock()


@pytest.fixture
def stepped_pd(pd_clock):
    with PagerDutyEmulator(clock=pd_clock) as emulator:
        yield emulator


def test_a_pagerduty_incident_reopened_after_its_resolve_fires_again(configured_bot, stepped_pd, pd_clock,  # noqa: F811
                                                                     slack, tmp_path):
    pd = stepped_pd
    bot = pd_bot(configured_bot, pd, tmp_path)
    pd_id = pd.trigger_incident("Queue backlog growing", urgency="high")
    slack.wait_for(lambda emu: roots(emu), timeout=15)
    pd.acknowledge(pd_id, by="Bob")
    slack.wait_for(lambda emu: "acknowledged by Bob" in card_json(emu), timeout=15)
    pd_clock.advance(120)
    pd.resolve(pd_id, by="Bob")
    slack.wait_for(lambda emu: "Resolved by source" in card_json(emu), timeout=15)
    pd_clock.advance(120)
    pd.reopen(pd_id, by="Carol")
    slack.wait_for(lambda emu: "Resolved by source" not in card_json(emu) and "incident_ack" in card_json(emu),
                   timeout=15)  # open again, and unacknowledged as PagerDuty shows it
    slack.wait_for(lambda emu: any("Firing again" in text for text in replies(emu)))
    assert incident_count(bot) == 1 and len(roots(slack)) == 1, "the same incident, within the reopen window"
    assert "incident.reopened" in kinds(bot)
    assert ack_click(bot, 1).status_code == 200
    pd.wait_for(lambda emu: emu.incident(pd_id)["status"] == "acknowledged", timeout=15)
    assert pd.incident(pd_id)["acknowledgements"][-1]["acknowledger"]["summary"] == "opsbot"


def test_a_reopen_after_the_reopen_window_opens_a_successor(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path, reopen_window_seconds=0)
    created = datetime.now(UTC) - timedelta(hours=1)  # recent: older events are refused as replays
    post_processed(bot, webhook_event("incident.triggered", incident_resource(
        "QREOPEN1", 7, "Disk almost full", created_at=created), occurred_at=created))
    post_processed(bot, webhook_event("incident.resolved", incident_resource(
        "QREOPEN1", 7, "Disk almost full", status="resolved", created_at=created),
        user_reference("PBOB", "Bob"), occurred_at=created + timedelta(minutes=30)))
    post_processed(bot, webhook_event("incident.reopened", incident_resource(
        "QREOPEN1", 7, "Disk almost full", created_at=created),
        user_reference("PCAROL", "Carol"), occurred_at=created + timedelta(minutes=45)))
    first, second = state(bot, 1), state(bot, 2)
    assert (first.status, first.is_open) == ("closed", None)
    assert (second.status, second.previous_incident_id, second.firing_count) == ("open", 1, 1)
    slack.wait_for(lambda emu: "follows INC-1" in card_json(emu, 1), timeout=15)


def test_an_opsbot_incident_reopened_in_pagerduty_is_mirrored_not_ingested(configured_bot, pd, slack,  # noqa: F811
                                                                          tmp_path):
    bot = pd_bot(configured_bot, pd, tmp_path)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical")]))
    (pd_incident,) = pd.wait_for(lambda emu: emu.incidents(), timeout=15)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical",
                                                       status="resolved", ends_at="2026-11-21T10:05:00Z")]))
    pd.wait_for(lambda emu: emu.incident(pd_incident["id"])["status"] == "resolved", timeout=15)
    eventually(lambda: "pagerduty.echo.resolved" in kinds(bot))
    pd.reopen(pd_incident["id"], by="Alice")
    eventually(lambda: "pagerduty.reopened" in kinds(bot))
    assert [e["agent"] for e in entries(bot, "pagerduty.reopened")] == ["Alice"]
    assert incident_count(bot) == 1, "our own PagerDuty incident never becomes an alert"
    incident = state(bot, 1)
    assert incident.status == "resolved" and "incident.reopened" not in kinds(bot)
    assert (incident.pagerduty_status_wanted, incident.pagerduty_status_synced) == ("resolved", "resolved"), \
        "nothing due: opsbot leaves the person's reopen alone"
    assert pd.incident(pd_incident["id"])["status"] == "triggered"


def test_another_installs_incidents_are_foreign_whatever_their_key(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path, pagerduty_dedup_prefix="team-a")
    pd.inject("/v2/enqueue", status=503, times=2, retry_after=600)  # our trigger waits (the client's retry included)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical")]))
    eventually(lambda: "pagerduty.unavailable" in kinds(bot), timeout=15)
    assert [c.body["dedup_key"] for c in pd.calls_to("events")] == ["team-a-INC-1", "team-a-INC-1"]
    incident = state(bot, 1)
    assert (incident.pagerduty_dedup_key, incident.pagerduty_incident_id) == ("team-a-INC-1", None)

    # other installs sharing the PagerDuty account, each with an INC-1 of its own
    others = [pd.trigger_incident(f"{key}: payments down", incident_key=key) for key in ("team-b-INC-1", "opsbot-INC-1")]
    eventually(lambda: incident_count(bot) == 3)
    for other in others:
        pd.acknowledge(other, by="Mallory")
    eventually(lambda: [state(bot, n).acknowledged_by for n in (2, 3)] == ["Mallory", "Mallory"])
    assert [state(bot, n).source for n in (2, 3)] == ["pagerduty", "pagerduty"]
    incident = state(bot, 1)
    assert (incident.acknowledged_by, incident.pagerduty_incident_id) == (None, None), "theirs control nothing of ours"

    # our key is ours before the stage hears back from PagerDuty (say its answer was lost)
    ours = pd.trigger_incident("INC-1 as PagerDuty has it", incident_key="team-a-INC-1")
    eventually(lambda: state(bot, 1).pagerduty_incident_id == ours)
    assert incident_count(bot) == 3 and "pagerduty.echo.triggered" in kinds(bot)
