"""Socket Mode as production runs it: `bot.cli._start_socket_mode` connects slack_sdk's built-in
client (through Bolt's `SocketModeHandler`) to the emulator, which answers
`apps.connections.open` and then speaks Slack's Socket Mode over a real WebSocket: a `hello`,
envelopes for slash commands, interactions and events, and the app's acks read back.

A wrong or unknown token stops start-up with one line, never a traceback."""

from __future__ import annotations

import json
from contextlib import ExitStack
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.cli import CliError, _start_socket_mode
from bot.sandbox import slack_clicks, slack_signing
from bot.slack.render.card import ACK_ACTION_ID
from tests.conftest import make_settings, serve_on
from tests.payloads import am_alert, am_body
from tests.test_cli import opsbot

UNUSED_SECRET = "socket-mode-signs-nothing"  # Socket Mode payloads are not signed; the builders want one


@pytest.fixture
def bot(database_url, slack, engine):  # noqa: F811 - `engine` migrates the database
    """The bot serving HTTP (for the Alertmanager webhook) with Socket Mode started as `serve` does."""
    with ExitStack() as stack:
        running = serve_on(stack, make_settings(database_url, slack, slack_app_token=slack.app_token), slack)
        handler = _start_socket_mode(running.runtime)
        stack.callback(handler.close)  # closed first: the runtime and the emulator outlive it
        slack.socket_mode.wait_for_connection()
        yield running


def slash_command(text: str) -> dict[str, str]:
    """The `slash_commands` payload: the fields Slack posts in HTTP mode, as a JSON object."""
    body, _headers = slack_signing.slash_command(UNUSED_SECRET, text=text)
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def test_start_up_opens_one_connection_with_the_app_token(bot, slack):
    (opened,) = slack.calls_to("apps.connections.open")
    assert opened.ok and opened.response["url"].startswith("ws://127.0.0.1:")
    assert slack.socket_mode.open_connections == 1


def test_ops_help_is_answered_in_the_ack(bot, slack):
    envelope_id = slack.socket_mode.deliver("slash_commands", slash_command("help"))
    ack = slack.socket_mode.wait_for_ack(envelope_id)
    assert ack["payload"]["response_type"] == "ephemeral" and "/ops status" in ack["payload"]["text"]


def test_ops_status_is_acked_then_answered_ephemerally(bot, slack):
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", severity="critical")], group_key="g1"))
    slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"))
    envelope_id = slack.socket_mode.deliver("slash_commands", slash_command("status"))
    assert "payload" not in slack.socket_mode.wait_for_ack(envelope_id)  # an empty ack: the answer follows
    (ephemeral,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert ephemeral["user"] == slack_signing.DEFAULT_USER_ID
    assert "1 open incident" in str(ephemeral["blocks"]) and "INC-1" in str(ephemeral["blocks"])


def test_a_button_click_is_acked_and_answered(bot, slack):
    button = {"type": "button", "action_id": ACK_ACTION_ID, "value": "not-an-incident",
              "text": {"type": "plain_text", "text": "Acknowledge"}}
    ts = slack.add_message("C0OPSBOT", "a card", user="U0OPSBOT",
                           blocks=[{"type": "actions", "block_id": "controls", "elements": [button]}])
    message = slack.message("C0OPSBOT", ts)
    payload = slack_clicks.block_actions(message, slack_clicks.find_button(message, ACK_ACTION_ID), "U0BOB")
    envelope_id = slack.socket_mode.deliver("interactive", payload)
    assert slack.socket_mode.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
    (refusal,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert refusal["user"] == "U0BOB" and refusal["text"].startswith(":no_entry:")


def test_a_mention_event_is_acked_and_answered_in_its_thread(bot, slack):
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> help", "channel": "C0OPSBOT",
             "ts": "1763721600.000100"}
    body, _headers = slack_signing.event_callback(UNUSED_SECRET, event)
    envelope_id = slack.socket_mode.deliver("events_api", json.loads(body))
    assert slack.socket_mode.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
    (reply,) = slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"))
    assert reply.args["thread_ts"] == "1763721600.000100"


def test_the_bot_reconnects_when_slack_asks_and_keeps_answering(bot, slack):
    slack.socket_mode.request_refresh()
    slack.socket_mode.wait_for_connection(opened=2)
    assert len(slack.calls_to("apps.connections.open")) == 2  # a fresh URL, the old ticket is spent
    envelope_id = slack.socket_mode.deliver("slash_commands", slash_command("help"))  # to the new connection
    assert "/ops status" in slack.socket_mode.wait_for_ack(envelope_id)["payload"]["text"]


def test_the_emulator_takes_only_the_app_token_for_socket_mode(slack):
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=slack.base_url).apps_connections_open(app_token=slack.bot_token)
    assert refused.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as refused:
        WebClient(token=slack.app_token, base_url=slack.base_url).chat_postMessage(channel="#incidents", text="x")
    assert refused.value.response["error"] == "not_allowed_token_type"
    assert slack.socket_mode.connections_opened == 0


@pytest.mark.parametrize(("app_token", "error"), [
    ("xoxb-emulator", "not_allowed_token_type"),  # the bot token where the app token belongs
    ("xapp-1-A0OPSBOT-revoked", "invalid_auth"),
])
def test_a_token_slack_refuses_stops_start_up_with_one_line(database_url, slack, engine, app_token, error):
    settings = make_settings(database_url, slack, slack_app_token=slack.app_token)
    with ExitStack() as stack:
        running = serve_on(stack, settings.model_copy(update={"slack_app_token": app_token}), slack)
        with pytest.raises(CliError) as refused:
            _start_socket_mode(running.runtime)
    message = str(refused.value)
    assert "\n" not in message and error in message and "OPSBOT_SLACK_APP_TOKEN" in message
    assert slack.socket_mode.connections_opened == 0


def test_serve_with_a_bot_token_as_app_token_says_so_in_one_line(tmp_path):
    result = opsbot("serve", "--port", "0", env={"OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_SLACK_BOT_TOKEN": "xoxb-1",
                                                  "OPSBOT_SLACK_APP_TOKEN": "xoxb-1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "OPSBOT_SLACK_APP_TOKEN: must be an app-level token starting with xapp-" in result.stderr
