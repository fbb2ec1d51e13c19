"""PagerDuty both ways, through the running bot and the PagerDuty emulator (real client)."""

import json

import pytest
from sqlalchemy import func, select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery, TimelineEntry
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from bot.sandbox.pagerduty_webhooks import incident_resource, signed, webhook_event
from tests.concurrency import eventually
from tests.handlers.test_intake_rules import card_json, configured_bot, roots  # noqa: F401 - fixture
from tests.payloads import am_alert, am_body

SECRET = "whsec-test-secret"


@pytest.fixture
def pd(tmp_path):
    with PagerDutyEmulator() as emulator:
        yield emulator


def pd_bot(configured_bot, pd, tmp_path, **overrides):  # noqa: F811
    """A bot wired to the emulator both ways; `overrides` replace or add settings."""
    ca = tmp_path / "pd-ca.pem"
    ca.write_bytes(pd.ca_file.read_bytes())
    settings = dict(pagerduty_webhook_secrets=[SECRET], pagerduty_routing_key=pd.routing_key,
                    pagerduty_api_key=pd.api_token, pagerduty_from_email=pd.from_email,
                    pagerduty_events_url=pd.events_url, pagerduty_rest_url=pd.rest_url, pagerduty_ca_file=ca)
    bot = configured_bot(**{**settings, **overrides})
    pd.set_webhook(f"{bot.url}/webhooks/pagerduty", SECRET)
    return bot


def kinds(bot):
    with unit_of_work(bot.runtime.factory) as session:
        return [e.kind for e in session.execute(select(TimelineEntry).order_by(TimelineEntry.id)).scalars()]


def incident_count(bot):
    with unit_of_work(bot.runtime.factory) as session:
        return session.execute(select(func.count()).select_from(Incident)).scalar_one()


def test_an_incident_is_mirrored_to_pagerduty_and_back_without_a_loop(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical")]))
    (pd_incident,) = pd.wait_for(lambda emu: emu.incidents(), timeout=15)
    assert pd_incident["incident_key"] == "opsbot-INC-1"
    assert pd_incident["urgency"] == "high"
    # the card first: an acknowledgement that arrives before it is told by the card itself, not a note
    slack.wait_for(lambda emu: roots(emu), timeout=15)

    pd.acknowledge(pd_incident["id"], by="Alice Oncall")
    slack.wait_for(lambda emu: "acknowledged by Alice Oncall" in card_json(emu), timeout=15)
    root = roots(slack)[0]
    slack.wait_for(lambda emu: any("Acknowledged in PagerDuty by Alice Oncall" in r["text"]
                                   for r in emu.thread(root["channel"], root["ts"])[1:]))

    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical",
                                                       status="resolved", ends_at="2026-11-21T10:05:00Z")]))
    pd.wait_for(lambda emu: emu.incident(pd_incident["id"])["status"] == "resolved", timeout=15)
    bot.runtime.workers.wake()
    eventually(lambda: {"pagerduty.sent.triggered", "pagerduty.acknowledged", "pagerduty.sent.resolved",
                        "pagerduty.echo.resolved"} <= set(kinds(bot)))
    assert incident_count(bot) == 1, "PagerDuty's webhooks about our own incident open nothing"
    with unit_of_work(bot.runtime.factory) as session:
        incident = session.get(Incident, 1)
        assert incident.pagerduty_incident_id == pd_incident["id"]
        assert incident.links["pagerduty"].startswith("https://")
        assert incident.acknowledged_by == "Alice Oncall", "our own resolve's echo changed nothing visible"


def test_notes_and_spoofed_keys(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical")]))
    (pd_incident,) = pd.wait_for(lambda emu: emu.incidents(), timeout=15)
    eventually(lambda: "pagerduty.echo.triggered" in kinds(bot))
    pd.annotate(pd_incident["id"], "looking at the database", by="Bob")
    eventually(lambda: "pagerduty.annotated" in kinds(bot))
    # a PagerDuty incident from elsewhere that merely uses an opsbot-looking key controls nothing
    spoof = incident_resource("QSPOOF1", 99, "Mallory's incident", status="acknowledged", incident_key="opsbot-INC-1")
    body, headers = signed(webhook_event("incident.acknowledged", spoof,
                                         {"id": "PMAL", "type": "user_reference", "summary": "Mallory"}), [SECRET])
    assert bot.post_webhook("pagerduty", body, token=None, headers=headers).status_code == 202
    eventually(lambda: incident_count(bot) == 2)
    with unit_of_work(bot.runtime.factory) as session:
        assert session.get(Incident, 1).acknowledged_by is None


def test_a_pagerduty_incident_from_elsewhere_becomes_a_thread(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    incident_id = pd.trigger_incident("Payments API 5xx rate above 5%", urgency="high")
    slack.wait_for(lambda emu: roots(emu), timeout=15)
    assert "Payments API 5xx rate" in roots(slack)[0]["text"]
    pd.annotate(incident_id, "rolled back to v41", by="Bob")
    pd.resolve(incident_id, by="Bob")
    slack.wait_for(lambda emu: "Resolved by source" in card_json(emu), timeout=15)
    assert incident_count(bot) == 1
    assert not pd.calls_to("events"), "a PagerDuty-born incident is never mirrored back"
    with unit_of_work(bot.runtime.factory) as session:
        note = session.execute(select(TimelineEntry).where(TimelineEntry.kind == "pagerduty.annotated")).scalar_one()
    assert note.payload["note"] == "rolled back to v41"


def test_pagerduty_webhooks_need_a_valid_signature(configured_bot, pd, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    incident = incident_resource("Q1ABC", 1, "Disk almost full")
    body, headers = signed(webhook_event("incident.triggered", incident), [SECRET])
    assert bot.post_webhook("pagerduty", body, token=None, headers=headers).status_code == 202
    _, wrong = signed(webhook_event("incident.triggered", incident), ["another-secret"])
    assert bot.post_webhook("pagerduty", body, token=None, headers=wrong).status_code == 401
    assert bot.post_webhook("pagerduty", body, token=None).status_code == 401
    ignored, headers = signed(webhook_event("service.updated", incident), [SECRET])
    response = bot.post_webhook("pagerduty", ignored, token=None, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    with unit_of_work(bot.runtime.factory) as session:
        assert session.execute(select(func.count()).select_from(RawDelivery)).scalar_one() == 1


def test_without_secrets_pagerduty_webhooks_are_refused(bot):
    response = bot.post_webhook("pagerduty", b"{}", token=None)
    assert response.status_code == 401 and "OPSBOT_PAGERDUTY_WEBHOOK_SECRETS" in response.json()["error"]


def ack_click(bot, incident_id, user="U0ALICE", name="alice"):
    import requests

    from bot.sandbox import slack_signing
    from tests.conftest import SIGNING_SECRET

    payload = {"type": "block_actions", "user": {"id": user, "username": name, "name": name, "team_id": "T0EMULATOR"},
               "api_app_id": "A0OPSBOT", "team": {"id": "T0EMULATOR"}, "channel": {"id": "C0OPSBOT"},
               "container": {"type": "message", "channel_id": "C0OPSBOT"}, "trigger_id": slack_signing.new_trigger_id(),
               "actions": [{"type": "button", "action_id": "incident_ack", "block_id": "incident_actions",
                            "value": str(incident_id), "action_ts": "1763721600.000300"}],
               "response_url": "http://127.0.0.1:9/unused"}
    body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
    return requests.post(f"{bot.url}/slack/interactions", data=body, headers=headers, timeout=10)


def test_acknowledging_in_slack_acknowledges_in_pagerduty(configured_bot, pd, slack, tmp_path):  # noqa: F811
    bot = pd_bot(configured_bot, pd, tmp_path)
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="critical")]))
    (pd_incident,) = pd.wait_for(lambda emu: emu.incidents(), timeout=15)
    slack.wait_for(lambda emu: roots(emu) and "incident_ack" in card_json(emu))
    assert ack_click(bot, 1).status_code == 200
    slack.wait_for(lambda emu: "acknowledged by alice" in card_json(emu), timeout=15)
    assert "incident_ack" not in json.dumps(roots(slack)[0]["blocks"]), "the button goes once used"
    pd.wait_for(lambda emu: emu.incident(pd_incident["id"])["status"] == "acknowledged", timeout=15)
    ack_click(bot, 1, user="U0BOB", name="bob")
    (refusal,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert "already acknowledged by alice" in refusal["text"]
    eventually(lambda: "incident.acknowledged" in kinds(bot))
