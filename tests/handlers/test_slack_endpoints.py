"""Slack's endpoints through Bolt's real signature verification and the Slack emulator."""

import time

import pytest
import requests

from bot.sandbox import slack_signing
from tests.conftest import SIGNING_SECRET
from tests.payloads import am_alert, am_body


def post(bot, path, signed):
    body, headers = signed
    return requests.post(f"{bot.url}{path}", data=body, headers=headers, timeout=10)


def test_ops_help_is_answered_in_the_ack(bot):
    response = post(bot, "/slack/commands", slack_signing.slash_command(SIGNING_SECRET, text="help"))
    assert response.status_code == 200
    assert "/ops status" in response.json()["text"]


def test_unknown_subcommand_gets_an_ephemeral_hint_that_escapes_input(bot):
    response = post(bot, "/slack/commands", slack_signing.slash_command(SIGNING_SECRET, text="<!channel>"))
    assert response.status_code == 200
    text = response.json()["text"]
    assert "Unknown subcommand" in text and "<!channel>" not in text


def test_ops_status_acks_then_lists_open_incidents_ephemerally(bot, slack):
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", severity="critical")], group_key="g1"))
    slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"))
    response = post(bot, "/slack/commands", slack_signing.slash_command(SIGNING_SECRET, text="status"))
    assert response.status_code == 200 and response.text == ""
    (ephemeral,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert "1 open incident" in str(ephemeral["blocks"]) and "INC-1" in str(ephemeral["blocks"])
    assert "1 opened, 0 resolved" in str(ephemeral["blocks"]) and "Bot's contribution" in str(ephemeral["blocks"])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}),
        lambda body, headers: (body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}),
        lambda body, headers: (body + b"&text=status", headers),
        lambda body, headers: slack_signing.slash_command("another-secret", text="help"),
        lambda body, headers: slack_signing.slash_command(SIGNING_SECRET, text="help",
                                                          timestamp=int(time.time()) - 6 * 60),
    ],
    ids=["missing", "wrong", "tampered-body", "wrong-secret", "stale"],
)
def test_requests_without_a_valid_fresh_signature_are_rejected(bot, slack, tamper):
    body, headers = tamper(*slack_signing.slash_command(SIGNING_SECRET, text="help"))
    for path in ("/slack/commands", "/slack/events", "/slack/interactions"):
        response = requests.post(f"{bot.url}{path}", data=body, headers=headers, timeout=10)
        assert response.status_code == 401, path
    assert slack.calls_to("chat.postEphemeral") == []


def test_url_verification_and_app_mention(bot, slack):
    response = post(bot, "/slack/events", slack_signing.url_verification(SIGNING_SECRET, "abc123"))
    assert response.status_code == 200 and response.json()["challenge"] == "abc123"
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> help", "channel": "C0OPSBOT",
             "ts": "1763721600.000100"}
    assert post(bot, "/slack/events", slack_signing.event_callback(SIGNING_SECRET, event)).status_code == 200
    (reply,) = slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"))
    assert reply.args["thread_ts"] == "1763721600.000100"
