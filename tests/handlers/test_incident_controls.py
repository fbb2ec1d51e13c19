"""The incident's life from Slack, driven as Slack drives it: signed button clicks, modal
submissions and slash commands to the bot's HTTP endpoints, on SQLite and PostgreSQL. Each
control changes the incident once, is on the timeline with who did it, follows the policy
(refusals change nothing and are said privately), and the postmortem lands in the thread once
per resolution, edited in place after a reopen."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import pytest
import requests
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import FollowUp, Incident, TimelineEntry
from bot.sandbox import slack_clicks, slack_signing
from tests.conftest import SIGNING_SECRET, make_settings, serve_on
from tests.payloads import am_alert, am_body

POLICY = """
id: test
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
incident_managers: [oncall]
"""
CAROL = "U0CAROL"  # in the workspace, not in @oncall: may take command and post updates, not resolve


@pytest.fixture
def bot(database_url, slack, engine, tmp_path):  # noqa: F811 - `engine` migrates the database
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    with ExitStack() as stack:
        yield serve_on(stack, make_settings(database_url, slack, policies_dir=policies, postmortem_grace_seconds=0,
                                            status_channel="#general"), slack)


def open_incident(bot, slack) -> dict:
    """The card posted and the investigation over (it has nothing to look at here: the thread
    says so), so later timeline entries are the controls' own."""
    assert bot.post_webhook("alertmanager", am_body([am_alert(pod="a")])).status_code == 202
    root = slack.wait_for(lambda emu: card(emu), timeout=15)
    slack.wait_for(lambda _: "investigation.told" in kinds(bot), timeout=15)
    return root


def card(slack) -> dict | None:
    roots = [m for m in slack.messages() if "thread_ts" not in m and "INC-" in m.get("text", "")]
    return roots[0] if roots else None


def thread_texts(slack, root: dict) -> list[str]:
    return [m.get("text", "") for m in slack.thread(root["channel"], root["ts"])[1:]]


def click(bot, slack, action_id: str, user: str, name: str) -> requests.Response:
    return slack_clicks.click(bot.url, SIGNING_SECRET, card(slack), action_id, user, user_name=name)


def choose_severity(bot, slack, user: str, grade: str) -> requests.Response:
    message = card(slack)
    menu = slack_clicks.find_button(message, "incident_severity")
    option = next(o for o in menu["options"] if o["value"].endswith(f":{grade}"))
    payload = slack_clicks.block_actions(message, {"action_id": "incident_severity", "block_id": menu["block_id"]},
                                         user)
    payload["actions"] = [{"type": "static_select", "action_id": "incident_severity", "block_id": menu["block_id"],
                           "selected_option": option, "action_ts": f"{time.time():.6f}"}]
    body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
    return requests.post(f"{bot.url}/slack/interactions", data=body, headers=headers, timeout=10)


def submit(bot, view: dict, user: str, name: str, values: dict) -> requests.Response:
    payload = {"type": "view_submission", "team": {"id": slack_signing.DEFAULT_TEAM_ID},
               "user": {"id": user, "username": name, "name": name},
               "api_app_id": slack_signing.DEFAULT_APP_ID, "trigger_id": slack_signing.new_trigger_id(),
               "view": {**view, "state": {"values": values}}}
    body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
    return requests.post(f"{bot.url}/slack/interactions", data=body, headers=headers, timeout=10)


def command(bot, text: str, user: str = "U0ALICE", name: str = "alice") -> requests.Response:
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, user_id=user, user_name=name,
                                                trigger_id=slack_signing.new_trigger_id())
    return requests.post(f"{bot.url}/slack/commands", data=body, headers=headers, timeout=10)


def incident(bot, incident_id: int = 1) -> Incident:
    with reading(bot.runtime.factory) as session:
        row = session.get(Incident, incident_id)
        session.expunge(row)
        return row


def kinds(bot, incident_id: int = 1) -> list[str]:
    with reading(bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.kind).where(TimelineEntry.incident_id == incident_id)
                                    .order_by(TimelineEntry.seq)).scalars())


def payloads(bot, prefix: str, incident_id: int = 1) -> list[dict]:
    with reading(bot.runtime.factory) as session:
        return [{"kind": e.kind, **e.payload} for e in session.execute(
            select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq))
            .scalars() if e.kind.startswith(prefix) or e.kind == "slack.failed"]


def ephemeral_to(slack, user: str) -> list[str]:
    return [m.get("text", "") for m in slack.ephemerals() if m.get("user") == user]


def postmortems(slack, root: dict) -> list[dict]:
    return [m for m in slack.thread(root["channel"], root["ts"])[1:] if m.get("text", "").startswith("Postmortem")]


def test_buttons_and_modals_run_the_incident_to_its_postmortem_and_back(bot, slack):
    root = open_incident(bot, slack)
    # Take command: open to anyone the actors allow
    assert click(bot, slack, "incident_take_command", CAROL, "carol").status_code == 200
    slack.wait_for(lambda emu: "*Commander*\ncarol" in json.dumps(card(emu)["blocks"]).replace("\\n", "\n"),
                   timeout=15)
    assert "incident_take_command" not in json.dumps(card(slack)["blocks"])
    # Severity: managed; carol is refused privately and nothing changes
    before = incident(bot).severity
    assert choose_severity(bot, slack, CAROL, "high").status_code == 200
    (refusal,) = slack.wait_for(lambda emu: ephemeral_to(emu, CAROL), timeout=15)
    assert "only the incident managers (oncall)" in refusal
    assert incident(bot).severity == before and "click.refused" in kinds(bot)
    assert choose_severity(bot, slack, "U0BOB", "high").status_code == 200
    slack.wait_for(lambda _: incident(bot).severity == "high", timeout=15)
    assert incident(bot).severity_by == "slack:U0BOB"
    # Resolve opens a modal; submitting it resolves with the note
    assert click(bot, slack, "incident_resolve", "U0ALICE", "alice").status_code == 200
    (view,) = slack.wait_for(lambda emu: emu.views, timeout=15)
    assert view["callback_id"] == "incident_resolve_note"
    assert submit(bot, view, "U0ALICE", "alice", {"note": {"text": {"type": "plain_text_input",
                                                           "value": "rolled back the config"}}}).status_code == 200
    slack.wait_for(lambda _: incident(bot).status == "resolved", timeout=15)
    resolved = incident(bot)
    assert (resolved.resolved_by, resolved.resolution_note, resolved.resolutions) == \
        ("alice", "rolled back the config", 1)
    (first,) = slack.wait_for(lambda emu: postmortems(emu, root), timeout=20)
    assert "human-resolved" not in first["text"] and "resolved by people" in json.dumps(first["blocks"])
    slack.wait_for(lambda emu: any("Resolved by alice: rolled back the config" in t for t in thread_texts(emu, root)),
                   timeout=15)
    slack.wait_for(lambda emu: [e["action_id"] for b in card(emu)["blocks"] if b["type"] == "actions"
                                for e in b["elements"]] == ["incident_reopen"], timeout=15)
    # Reopen, resolve again from /ops: the same postmortem message, edited, says it was updated
    assert click(bot, slack, "incident_reopen", "U0BOB", "bob").status_code == 200
    slack.wait_for(lambda _: incident(bot).status == "open", timeout=15)
    assert command(bot, "resolve INC-1 it came back; fixed the probe too").status_code == 200
    slack.wait_for(lambda emu: "reopened 1 time" in json.dumps(postmortems(emu, root)[0]["blocks"]), timeout=20)
    slack.wait_for(lambda _: "postmortem.updated" in kinds(bot), timeout=15)
    assert len(postmortems(slack, root)) == 1, "a re-resolved incident's postmortem is updated, never doubled"
    assert kinds(bot).count("postmortem.posted") == 1 and kinds(bot).count("postmortem.updated") == 1
    assert [k for k in kinds(bot) if k in ("incident.resolved", "incident.reopened")] == \
        ["incident.resolved", "incident.reopened", "incident.resolved"]
    files = [c for c in slack.calls_to("files.completeUploadExternal")]
    assert len(files) == 2, f"each version of the postmortem is attached as Markdown: {payloads(bot, 'postmortem.')}"


def test_slash_commands_update_follow_up_catch_up_and_declare(bot, slack):
    root = open_incident(bot, slack)
    assert command(bot, "update INC-1 Rolled back; error rate falling", CAROL, "carol").status_code == 200
    slack.wait_for(lambda emu: any("Status update" in t for t in thread_texts(emu, root)), timeout=15)
    status = slack.wait_for(lambda emu: [m for m in emu.messages() if "Rolled back" in m.get("text", "")
                                         and m["channel"] != root["channel"]], timeout=15)
    assert "INC-1" in status[0]["text"] and "|Thread>" in status[0]["text"], "the status channel links back"
    slack.wait_for(lambda emu: "Latest update" in json.dumps(card(emu)["blocks"]), timeout=15)
    assert command(bot, "followup INC-1 alert on probe failures <@U0BOB|bob>").status_code == 200
    catchup = slack.wait_for(lambda emu: [m for m in emu.thread(root["channel"], root["ts"])
                                          if m.get("text", "").startswith("Catch-up")], timeout=15)
    slack.wait_for(lambda emu: "alert on probe failures" in json.dumps(
        [m for m in emu.thread(root["channel"], root["ts"]) if m["ts"] == catchup[0]["ts"]]), timeout=15)
    with reading(bot.runtime.factory) as session:
        (item,) = session.execute(select(FollowUp)).scalars()
        assert (item.owner, item.created_by, item.closed_at) == ("U0BOB", "slack:U0ALICE", None)
        item_id = item.id
    assert command(bot, f"followup done F-{item_id}", "U0BOB", "bob").status_code == 200
    slack.wait_for(lambda emu: "none" in json.dumps(
        [m for m in emu.thread(root["channel"], root["ts"]) if m["ts"] == catchup[0]["ts"]]), timeout=15)
    catchups = [m for m in slack.thread(root["channel"], root["ts"]) if m.get("text", "").startswith("Catch-up")]
    assert len(catchups) == 1, "the catch-up is edited in place, never re-posted"
    assert command(bot, "catchup INC-1", CAROL, "carol").status_code == 200
    slack.wait_for(lambda emu: [t for t in ephemeral_to(emu, CAROL) if t.startswith("Catch-up on INC-1")], timeout=15)
    # declared by hand: its own card, the declarer leads it, the RCA says it had no alert
    assert command(bot, "declare Checkout is slow for EU customers high", "U0BOB", "bob").status_code == 200
    slack.wait_for(lambda emu: [m for m in emu.messages() if "INC-2" in m.get("text", "")
                                and "Checkout is slow" in m.get("text", "")], timeout=15)
    declared = incident(bot, 2)
    assert (declared.source, declared.severity, declared.declared_by, declared.commander) == \
        ("slack", "high", "bob", "bob")


@pytest.mark.parametrize("text, words", [
    ("resolve", "Name the incident"), ("severity INC-1 purple", "Name one severity"),
    ("resolve INC-x", "is not an incident"), ("ack INC-1 now please", "Too many words"),
    ("commander INC-1 bob", "is not a mention"), ("update INC-1", "needs some text"),
    ("followup done", "Name the follow-up"),
])
def test_malformed_commands_get_one_line_of_usage_and_change_nothing(bot, slack, text, words):
    open_incident(bot, slack)
    before = kinds(bot)
    answer = command(bot, text)
    assert answer.status_code == 200 and words in answer.json()["text"] and "Usage:" in answer.json()["text"]
    assert kinds(bot) == before


def test_refusals_name_the_reason_and_change_nothing(bot, slack):
    open_incident(bot, slack)
    assert command(bot, "resolve INC-1", CAROL, "carol").status_code == 200
    assert command(bot, "resolve INC-99").status_code == 200
    assert command(bot, "reopen INC-1").status_code == 200
    slack.wait_for(lambda emu: len(ephemeral_to(emu, CAROL)) == 1 and len(ephemeral_to(emu, "U0ALICE")) == 2,
                   timeout=15)
    assert "only the incident managers" in ephemeral_to(slack, CAROL)[0]
    assert any("INC-99 does not exist" in t for t in ephemeral_to(slack, "U0ALICE"))
    assert any("only a resolved incident can be reopened" in t for t in ephemeral_to(slack, "U0ALICE"))
    assert incident(bot).status == "open" and kinds(bot).count("click.refused") == 2


def test_postmortem_is_posted_once_with_two_replicas(database_url, slack, engine, tmp_path):  # noqa: F811
    """Two bots on one database, both running the postmortem stage: one message."""
    with ExitStack() as stack:
        settings = make_settings(database_url, slack, postmortem_grace_seconds=1)
        first = serve_on(stack, settings, slack)
        serve_on(stack, settings, slack)
        assert first.post_webhook("alertmanager", am_body([am_alert(pod="a")])).status_code == 202
        root = slack.wait_for(lambda emu: card(emu), timeout=15)
        assert first.post_webhook("alertmanager", am_body([am_alert(pod="a", status="resolved")])).status_code == 202
        slack.wait_for(lambda emu: postmortems(emu, root), timeout=20)
        time.sleep(2)  # both stages have had their rounds since
        assert len(postmortems(slack, root)) == 1
        assert kinds(first).count("postmortem.posted") == 1


def test_the_update_button_and_the_declare_form_work_through_their_modals(bot, slack):
    root = open_incident(bot, slack)
    assert click(bot, slack, "incident_update", CAROL, "carol").status_code == 200
    (view,) = slack.wait_for(lambda emu: emu.views, timeout=15)
    assert view["callback_id"] == "incident_update_text"
    assert submit(bot, view, CAROL, "carol", {"update": {"text": {"type": "plain_text_input",
                                                                  "value": "Failover done"}}}).status_code == 200
    slack.wait_for(lambda emu: any("Status update* by carol: Failover done" in t for t in thread_texts(emu, root)),
                   timeout=15)
    assert incident(bot).latest_update == "Failover done"
    # /ops declare with no title opens the form; its submission opens the incident
    assert command(bot, "declare", "U0BOB", "bob").status_code == 200
    declare = slack.wait_for(lambda emu: [v for v in emu.views if v["callback_id"] == "incident_declare"], timeout=15)
    values = {"title": {"text": {"type": "plain_text_input", "value": "Payments degraded in eu-west"}},
              "severity": {"choice": {"type": "static_select", "selected_option": {"value": "critical"}}}}
    assert submit(bot, declare[0], "U0BOB", "bob", values).status_code == 200
    slack.wait_for(lambda _: kinds(bot, 2)[:1] == ["incident.opened"], timeout=15)
    assert (incident(bot, 2).title, incident(bot, 2).severity) == ("Payments degraded in eu-west", "critical")
    # a form submitted by someone the policy refuses changes nothing
    assert submit(bot, declare[0], CAROL, "carol", values).status_code == 200
    slack.wait_for(lambda emu: any("only the incident managers" in t for t in ephemeral_to(emu, CAROL)), timeout=15)
    with reading(bot.runtime.factory) as session:
        assert session.execute(select(Incident.id).order_by(Incident.id.desc())).scalars().first() == 2


def test_a_message_in_the_thread_becomes_a_follow_up_through_the_shortcut(bot, slack):
    root = open_incident(bot, slack)
    reply = slack.thread(root["channel"], root["ts"])[-1]

    def shortcut(message: dict, user: str, in_thread: bool = True) -> requests.Response:
        payload = {"type": "message_action", "callback_id": "incident_followup_from_message",
                   "trigger_id": slack_signing.new_trigger_id(), "team": {"id": slack_signing.DEFAULT_TEAM_ID},
                   "user": {"id": user, "username": "bob", "name": "bob"}, "channel": {"id": root["channel"]},
                   "message": {"type": "message", "ts": message["ts"], "text": "Add an alert on probe failures",
                               **({"thread_ts": root["ts"]} if in_thread else {})},
                   "response_url": "http://127.0.0.1:9/unused"}
        body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
        return requests.post(f"{bot.url}/slack/interactions", data=body, headers=headers, timeout=10)

    assert shortcut(reply, "U0BOB").status_code == 200
    (view,) = slack.wait_for(lambda emu: emu.views, timeout=15)
    assert view["callback_id"] == "incident_followup"
    assert view["blocks"][1]["element"]["initial_value"] == "Add an alert on probe failures"
    values = {"followup": {"text": {"type": "plain_text_input", "value": "Alert on probe failures"}},
              "owner": {"user": {"type": "users_select", "selected_user": "U0CAROL"}}}
    assert submit(bot, view, "U0BOB", "bob", values).status_code == 200
    slack.wait_for(lambda _: "followup.added" in kinds(bot), timeout=15)
    with reading(bot.runtime.factory) as session:
        (item,) = session.execute(select(FollowUp)).scalars()
        assert (item.incident_id, item.text, item.owner, item.created_by) == \
            (1, "Alert on probe failures", "U0CAROL", "slack:U0BOB")
    # a message that is in no incident's thread: said privately, nothing opens
    elsewhere = {"ts": "1700000000.000100", "channel": root["channel"]}
    assert shortcut(elsewhere, "U0BOB", in_thread=False).status_code == 200
    slack.wait_for(lambda emu: any("not in an incident's thread" in t for t in ephemeral_to(emu, "U0BOB")),
                   timeout=15)
    assert len(slack.views) == 1
