"""The request signer against slack_sdk's real verifier and Bolt's request handling."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.sandbox import slack_signing
from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, SlackEmulator

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def builders() -> dict[str, tuple[bytes, dict[str, str]]]:
    return {
        "slash_command": slack_signing.slash_command(SECRET, "/ops", "status INC-7"),
        "interaction": slack_signing.interaction(SECRET, {"type": "block_actions", "actions": [{"action_id": "a"}]}),
        "event_callback": slack_signing.event_callback(SECRET, {"type": "app_mention", "text": "<@U0OPSBOT> hi"}),
        "url_verification": slack_signing.url_verification(SECRET, "challenge-123"),
    }


@pytest.mark.parametrize("name", sorted(builders()))
def test_signature_verifies_with_slack_sdk(name: str) -> None:
    body, headers = builders()[name]
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b" ", headers)
    assert headers["Content-Type"] in ("application/x-www-form-urlencoded", "application/json")


def test_old_timestamp_rejected_and_signature_matches_sdk() -> None:
    stale = int(time.time()) - 6 * 60
    body, headers = slack_signing.interaction(SECRET, {"type": "block_actions"}, timestamp=stale)
    assert headers["X-Slack-Request-Timestamp"] == str(stale)
    assert not SignatureVerifier(SECRET).is_valid_request(body, headers)
    # the signature string itself matches slack_sdk's independent implementation
    sample = b"token=x&team_id=T1&command=%2Fops&text=status"
    assert slack_signing.signature(SECRET, sample, 1531420618) == SignatureVerifier(SECRET).generate_signature(
        timestamp="1531420618", body=sample)


def test_payload_shapes() -> None:
    body, _ = slack_signing.slash_command(SECRET, "/ops", "explain INC-7", user_id="U0BOB", trigger_id="1.2.abc")
    form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert (form["command"], form["text"], form["user_id"], form["trigger_id"]) == ("/ops", "explain INC-7", "U0BOB",
                                                                                    "1.2.abc")
    assert form["channel_id"] == DEFAULT_CHANNEL_ID and form["response_url"].startswith("https://hooks.slack.com/")
    body, _ = slack_signing.interaction(SECRET, {"type": "block_actions", "n": 1})
    assert json.loads(parse_qs(body.decode())["payload"][0]) == {"type": "block_actions", "n": 1}
    body, headers = slack_signing.event_callback(SECRET, {"type": "app_mention"}, event_id="Ev1", retry_num=1)
    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev1"
    assert envelope["event"] == {"type": "app_mention"} and envelope["team_id"] and envelope["api_app_id"]
    assert isinstance(envelope["event_time"], int) and headers["X-Slack-Retry-Num"] == "1"
    body, _ = slack_signing.url_verification(SECRET, "c")
    assert json.loads(body)["type"] == "url_verification"


def test_bolt_dispatch_end_to_end(emu: SlackEmulator) -> None:
    """A signed slash command reaches a Bolt listener, whose reply lands in the emulator."""
    app = App(client=WebClient(token=emu.bot_token, base_url=emu.base_url), signing_secret=SECRET,
              process_before_response=True)
    seen: list[dict[str, Any]] = []

    @app.command("/ops")
    def ops(ack: Any, command: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.append(command)
        client.chat_postMessage(channel=command["channel_id"], text=f"status: {command['text']}")

    body, headers = slack_signing.slash_command(SECRET, "/ops", "status")
    resp = app.dispatch(BoltRequest(body=body.decode(), headers=headers))
    assert resp.status == 200 and seen[0]["text"] == "status"
    assert emu.messages()[0]["text"] == "status: status"
    body, headers = slack_signing.url_verification(SECRET, "xyz")
    resp = app.dispatch(BoltRequest(body=body.decode(), headers=headers))
    assert resp.status == 200 and "xyz" in resp.body
    body, headers = slack_signing.slash_command("wrong-secret", "/ops", "status")
    assert app.dispatch(BoltRequest(body=body.decode(), headers=headers)).status == 401
