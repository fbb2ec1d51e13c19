"""Requests signed exactly as Slack signs them, for driving Bolt's HTTP endpoints in tests.

Slack's v0 scheme: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing_secret, "v0:{timestamp}:{raw body}")>`
with `X-Slack-Request-Timestamp: {timestamp}` (Unix seconds). The receiver recomputes the
HMAC over the *raw* bytes and rejects timestamps more than five minutes off, so the builders
here return the exact body bytes that were signed: send them unchanged.

Every function is pure apart from reading the clock (when `timestamp` is None) and drawing
random ids (`trigger_id`, `event_id`) when none is given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

DEFAULT_TEAM_ID = "T0EMULATOR"
DEFAULT_TEAM_DOMAIN = "opsbot-emulator"
DEFAULT_APP_ID = "A0OPSBOT"
DEFAULT_CHANNEL_ID = "C0OPSBOT"
DEFAULT_USER_ID = "U0ALICE"
DEFAULT_BOT_USER_ID = "U0OPSBOT"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

Signed = tuple[bytes, dict[str, str]]


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the signing secret."""
    base = b"v0:" + str(int(timestamp)).encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None,
         content_type: str = FORM_CONTENT_TYPE) -> dict[str, str]:
    """The headers Slack sends with `body`: timestamp, signature, content type, user agent."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(secret, body, ts),
        "User-Agent": SLACK_USER_AGENT,
    }


def new_trigger_id() -> str:
    """A trigger id shaped like Slack's (`<digits>.<digits>.<hex>`)."""
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def slash_command(secret: str, command: str = "/ops", text: str = "", user_id: str = DEFAULT_USER_ID,
                  channel_id: str = DEFAULT_CHANNEL_ID, team_id: str = DEFAULT_TEAM_ID,
                  response_url: str | None = None, trigger_id: str | None = None,
                  timestamp: int | None = None, *, user_name: str = "alice", channel_name: str = "incidents",
                  team_domain: str = DEFAULT_TEAM_DOMAIN, api_app_id: str = DEFAULT_APP_ID) -> Signed:
    """A slash command invocation, form-encoded with the fields Slack sends (in its order)."""
    fields = {
        "token": "verification-token-unused",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/1/{secrets.token_hex(12)}",
        "trigger_id": trigger_id or new_trigger_id(),
    }
    body = urlencode(fields).encode("utf-8")
    return body, sign(secret, body, timestamp, FORM_CONTENT_TYPE)


def interaction(secret: str, payload: Mapping[str, Any], timestamp: int | None = None) -> Signed:
    """An interactivity request (button click, view submission, ...): form field
    `payload=<json>`, as Slack posts it."""
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")
    return body, sign(secret, body, timestamp, FORM_CONTENT_TYPE)


def event_callback(secret: str, event: Mapping[str, Any], timestamp: int | None = None, *,
                   team_id: str = DEFAULT_TEAM_ID, api_app_id: str = DEFAULT_APP_ID,
                   event_id: str | None = None, bot_user_id: str = DEFAULT_BOT_USER_ID,
                   retry_num: int | None = None, retry_reason: str = "http_timeout") -> Signed:
    """An Events API delivery: the JSON `event_callback` envelope around `event`.

    With `retry_num`, the `X-Slack-Retry-Num` / `X-Slack-Retry-Reason` headers Slack adds to
    redeliveries are set too (the body, and so the `event_id`, stay the same on a retry).
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    envelope = {
        "token": "verification-token-unused",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
        "event_time": ts,
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": f"4-{secrets.token_hex(16)}",
    }
    body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
    headers = sign(secret, body, ts, JSON_CONTENT_TYPE)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return body, headers


def url_verification(secret: str, challenge: str, timestamp: int | None = None) -> Signed:
    """The handshake Slack sends when the Events request URL is saved."""
    body = json.dumps({"token": "verification-token-unused", "challenge": challenge,
                       "type": "url_verification"}, separators=(",", ":")).encode("utf-8")
    return body, sign(secret, body, timestamp, JSON_CONTENT_TYPE)
