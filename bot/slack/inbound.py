"""Slack's HTTP requests, checked before Bolt sees them: signature first, shape second, replays last.

Order matters (issue 12, items 9 and 11):
1. **Signature.** Nothing from the body is read before Slack's v0 signature over the raw bytes
   is verified and its timestamp is a number within five minutes of now. Unsigned, stale or
   garbled headers are a 401, whatever the body holds.
2. **Shape.** A correctly signed body that is not what the endpoint takes (not JSON, not a
   form, no `payload`, no `command`) is a 400 naming the problem; Bolt never parses it.
3. **Replays.** A signed request may be re-sent within its five minutes: a slash command or
   a click (same `trigger_id`) or an Events API delivery (same `event_id`, also what Slack
   itself re-sends with `X-Slack-Retry-Num`) is acted on once. The id is recorded in `seen_requests`
   (`bot.db.seen`) before the request reaches its listener; a repeat is answered 200 and does
   nothing. Ids are kept for `REPLAY_KEEP`, longer than a signature stays fresh, so no replay
   can outlive its record. Limit: a request whose id was recorded and whose process then died
   before acting on it is not acted on when re-sent (a slash command is typed again, a button
   clicked again). A replayed click is recorded on the timeline of the thread it was made in,
   like any refused click (`bot.incidents.refused_clicks`).

Refusals are logged as one WARNING line without a traceback, at most once per
`WARNING_INTERVAL_SECONDS` per endpoint (with the count since the last line), so a flood of
garbage cannot flood the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 5 * 60  # Slack's own freshness window for signed requests
REPLAY_KEEP = timedelta(minutes=10)
WARNING_INTERVAL_SECONDS = 60.0
COMMANDS, EVENTS, INTERACTIONS = "/slack/commands", "/slack/events", "/slack/interactions"
# (endpoint → replay source): the seen_requests source under which each endpoint's ids are kept
REPLAY_SOURCES = {COMMANDS: "slack.command", EVENTS: "slack.event", INTERACTIONS: "slack.interaction"}


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str


@dataclass(frozen=True)
class Checked:
    """A signed, well-shaped request; `replay_key` is (source, id) when it must be acted on once;
    `payload` is an interaction's payload (a refused replay of a click is recorded from it)."""

    replay_key: tuple[str, str] | None
    payload: dict | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) else None


def signature_refusal(secret: str, headers: Mapping[str, str], body: bytes, now_seconds: float) -> Refusal | None:
    """None when `body` carries Slack's valid, fresh v0 signature; otherwise the 401 to answer."""
    timestamp = _header(headers, "X-Slack-Request-Timestamp")
    signature = _header(headers, "X-Slack-Signature")
    if not timestamp or not signature:
        return Refusal(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return Refusal(401, "X-Slack-Request-Timestamp is not a Unix time")
    if abs(now_seconds - int(timestamp)) > MAX_AGE_SECONDS:
        return Refusal(401, "stale request: X-Slack-Request-Timestamp is more than five minutes away")
    # over the raw bytes (slack_sdk's verifier decodes the body first and fails on non-UTF-8)
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return Refusal(401, "invalid X-Slack-Signature")
    return None


def _form(text: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}


def _json_object(text: str, what: str) -> dict | Refusal:
    try:
        value = json.loads(text)
    except ValueError:
        return Refusal(400, f"{what} is not valid JSON")
    if not isinstance(value, dict):
        return Refusal(400, f"{what} is not a JSON object")
    return value


def shape(path: str, body: bytes) -> Checked | Refusal:
    """What a signed body holds, for `path`: the replay key to record, or the 400 to answer."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal(400, "the body is not UTF-8")
    if path == EVENTS:
        envelope = _json_object(text, "the body")
        if isinstance(envelope, Refusal):
            return envelope
        if not isinstance(envelope.get("type"), str):
            return Refusal(400, "the event envelope has no type")
        event_id = envelope.get("event_id")
        return Checked((REPLAY_SOURCES[EVENTS], event_id) if isinstance(event_id, str) and event_id else None)
    form = _form(text)
    if form.get("ssl_check") == "1":  # Slack's certificate check: Bolt answers it
        return Checked(None)
    if path == INTERACTIONS:
        if "payload" not in form:
            return Refusal(400, "the interaction has no payload field")
        payload = _json_object(form["payload"], "the interaction payload")
        if isinstance(payload, Refusal):
            return payload
        if not isinstance(payload.get("type"), str):
            return Refusal(400, "the interaction payload has no type")
        trigger = payload.get("trigger_id")
        return Checked((REPLAY_SOURCES[INTERACTIONS], trigger) if isinstance(trigger, str) and trigger else None,
                       payload)
    if not form.get("command"):
        return Refusal(400, "the slash command has no command field")
    trigger = form.get("trigger_id")
    return Checked((REPLAY_SOURCES[COMMANDS], trigger) if trigger else None)


class RefusalLog:
    """One WARNING line per endpoint per interval, counting the refusals it stands for."""

    def __init__(self, interval_seconds: float = WARNING_INTERVAL_SECONDS):
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def refused(self, path: str, refusal: Refusal, remote: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(path, -self._interval) < self._interval:
                self._suppressed[path] = self._suppressed.get(path, 0) + 1
                return
            self._last[path] = now
            more = self._suppressed.pop(path, 0)
        log.warning("refused %s from %s: %d %s%s", path, remote or "?", refusal.status, refusal.error,
                    f" (and {more} more refused since the last line)" if more else "")


def field(body: Mapping, *path: str) -> str | None:
    """A string at `path` in a payload (a digit indexes a list), or None when any level is
    missing or of another type."""
    value: object = body
    for key in path:
        if isinstance(value, list) and key.isdigit():
            value = value[int(key)] if int(key) < len(value) else None
        elif isinstance(value, Mapping):
            value = value.get(key)
        else:
            return None
    return value if isinstance(value, str) and value else None


def user_id(body: Mapping) -> str:
    return field(body, "user", "id") or ""


def channel_id(body: Mapping) -> str | None:
    """The channel of an interaction: None when the payload has none (then no channel allows it)."""
    return field(body, "channel", "id")


def message_ts(body: Mapping) -> str | None:
    return field(body, "container", "message_ts") or field(body, "message", "ts")
