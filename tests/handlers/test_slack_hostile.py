"""Hostile requests to Slack's endpoints (issue 12, items 9 and 11): verify first, parse after,
act once on a replay."""

from __future__ import annotations

import logging
import time

import pytest
import requests

from bot.sandbox import slack_signing
from tests.conftest import SIGNING_SECRET

PATHS = ("/slack/commands", "/slack/events", "/slack/interactions")


def send(bot, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{bot.url}{path}", data=body, headers=headers, timeout=10)


GARBAGE = [
    (b"{not json", {"Content-Type": "application/json"}),
    (b"{not json", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "abc",
                    "X-Slack-Signature": "v0=" + "0" * 64}),
    (b"payload=%7Bnot", {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": "-1",
                         "X-Slack-Signature": "nonsense"}),
    (b"\xff\xfe", {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=x"}),
]


def test_unsigned_garbage_is_a_401_with_at_most_one_warning_and_no_error(bot, slack, caplog):
    caplog.set_level(logging.INFO)
    for _ in range(50):
        for body, headers in GARBAGE:
            for path in PATHS:
                response = send(bot, path, body, headers)
                assert response.status_code == 401, (path, body, headers)
                assert "error" in response.json()
    records = [r for r in caplog.records if r.name.startswith(("bot", "handlers", "slack_bolt", "opsbot"))]
    assert not [r for r in records if r.levelno >= logging.ERROR], "no error, no traceback"
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) <= len(PATHS), "one warning line per endpoint per minute, not one per request"
    assert outcomes(bot, "/slack/events")["unsigned"] == 50 * len(GARBAGE)
    assert slack.calls == []


@pytest.mark.parametrize(("path", "body", "content_type", "needle"), [
    ("/slack/events", b"{not json", "application/json", "not valid JSON"),
    ("/slack/events", b"[1, 2]", "application/json", "JSON object"),
    ("/slack/events", b'{"event_id": "Ev1"}', "application/json", "no type"),
    ("/slack/interactions", b"user=U1", "application/x-www-form-urlencoded", "no payload"),
    ("/slack/interactions", b"payload=%7Bnot", "application/x-www-form-urlencoded", "not valid JSON"),
    ("/slack/interactions", b"payload=%5B%5D", "application/x-www-form-urlencoded", "JSON object"),
    ("/slack/commands", b"text=status", "application/x-www-form-urlencoded", "no command"),
    ("/slack/commands", b"\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
])
def test_signed_garbage_is_a_400_naming_the_problem(bot, slack, path, body, content_type, needle, caplog):
    response = send(bot, path, body, slack_signing.sign(SIGNING_SECRET, body, content_type=content_type))
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_stale_or_future_timestamp_is_refused_even_when_signed(bot):
    for offset in (-6 * 60, 6 * 60):
        body, headers = slack_signing.slash_command(SIGNING_SECRET, text="help", timestamp=int(time.time()) + offset)
        response = send(bot, "/slack/commands", body, headers)
        assert response.status_code == 401 and "stale" in response.json()["error"]


def outcomes(bot, endpoint: str) -> dict[str, float]:
    """The bot's own count of Slack requests by outcome (opsbot_slack_requests_total)."""
    registry = bot.runtime.metrics.registry
    return {outcome: registry.get_sample_value("opsbot_slack_requests_total",
                                               {"endpoint": endpoint, "outcome": outcome}) or 0
            for outcome in ("accepted", "duplicate", "unsigned", "malformed")}


def test_a_replayed_slash_command_is_acted_on_once(bot, slack):
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text="status")
    first = send(bot, "/slack/commands", body, headers)
    second = send(bot, "/slack/commands", body, headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert outcomes(bot, "/slack/commands")["duplicate"] == 1, "the replay stopped at the door, before Bolt"
    # a fresh command after the replay: once its reply is in, a reply to the replay would be too
    assert send(bot, "/slack/commands", *slack_signing.slash_command(SIGNING_SECRET, text="status")).status_code == 200
    slack.wait_for(lambda emu: len(emu.calls_to("chat.postEphemeral")) >= 2)
    assert len(slack.calls_to("chat.postEphemeral")) == 2, "the replay was not acted on"


def test_an_event_resent_by_slack_with_a_retry_number_is_answered_once(bot, slack):
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> help", "channel": "C0OPSBOT",
             "ts": "1763721600.000100"}
    body, headers = slack_signing.event_callback(SIGNING_SECRET, event, event_id="Ev0REPLAY1")
    assert send(bot, "/slack/events", body, headers).status_code == 200
    retry_body, retry_headers = slack_signing.event_callback(SIGNING_SECRET, event, event_id="Ev0REPLAY1",
                                                             retry_num=1)
    assert send(bot, "/slack/events", retry_body, retry_headers).status_code == 200
    assert outcomes(bot, "/slack/events") == {"accepted": 1, "duplicate": 1, "unsigned": 0, "malformed": 0}
    fresh = slack_signing.event_callback(SIGNING_SECRET, {**event, "ts": "1763721600.000200"})
    assert send(bot, "/slack/events", *fresh).status_code == 200
    slack.wait_for(lambda emu: len(emu.calls_to("chat.postMessage")) >= 2)
    threads = sorted(call.args["thread_ts"] for call in slack.calls_to("chat.postMessage"))
    assert threads == ["1763721600.000100", "1763721600.000200"], "the resent event was answered once"
