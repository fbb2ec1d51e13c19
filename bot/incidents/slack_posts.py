"""Post an incident's messages (its card and thread notes, the RCA, each proposal) to Slack at
most once, across crashes.

`chat.postMessage` has no idempotency key, and Slack may apply a post whose answer never
reaches the bot: the process is killed while the answer is in flight, or the connection drops.
Storing the ts only after the answer then loses it, and the retry posts a second message (a
second root card that never updates, a proposal whose stale buttons stay live). So:

1. before the call, an intent is recorded (`slack_post_intents`, one per incident and purpose)
   with a random marker and what the message accounts for (`payload`: a thread note's counts),
   in its own committed transaction;
2. the message carries the marker in Slack's message metadata
   (`{"event_type": "opsbot_post", "event_payload": {"marker": ..., "purpose": ...}}`);
3. the caller stores the ts and `forget`s the intent in one transaction.
The HTTP client never resends a post on its own (`SlackGateway` posts without the client's
retries): every second attempt comes through here and looks first.

A retry that finds the intent still there (an earlier attempt may have posted) first looks for
the marker: `conversations.history` for a root message, `conversations.replies` for a thread
reply, with `include_all_metadata`, from the intent's time (less `CLOCK_SKEW`) and at most
`SEARCH_MAX_PAGES` pages. Found: that message is adopted, no second post. The normal path
(no intent yet) costs no extra Slack call; only a retry after a failure searches.

Not found (or the search cannot be made: no history scope, the channel name not resolvable)
means post again, with the same marker. That is safe: a message that is not in the channel
or thread was either never applied or has been deleted, and posting is what the first
attempt meant to do. A duplicate remains possible only when the earlier message lies beyond
the searched pages (more than SEARCH_PAGE_LIMIT × SEARCH_MAX_PAGES messages since the intent)
or the search cannot be made: the behaviour before this guard, never a lost message. The caller
holds a lease on the write (the card lease, the incident's write slot), so two attempts never
search and post at the same time.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import unit_of_work
from bot.db.models import SlackPostIntent
from bot.slack.gateway import PostedMessage, SlackError, SlackGateway, SlackRetryLater

log = logging.getLogger(__name__)
MARKER_EVENT_TYPE = "opsbot_post"
SEARCH_PAGE_LIMIT = 200
SEARCH_MAX_PAGES = 5
# Slack's clock and ours may disagree: search from a little before the intent was recorded.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class PostSpec:
    """One message to post once: the incident, its purpose (`card`, `rca:<investigation>`,
    `proposal:<id>`, as in `SlackMessage.purpose`), the channel, and the thread it replies in."""

    incident_id: int
    purpose: str
    channel: str
    thread_ts: str | None = None


@dataclass(frozen=True)
class PostResult:
    message: PostedMessage
    adopted: bool  # found in Slack from an earlier attempt, not posted now
    payload: dict[str, Any] | None = None  # what the message accounts for (the adopted attempt's)


def marker_metadata(marker: str, purpose: str) -> dict[str, Any]:
    return {"event_type": MARKER_EVENT_TYPE, "event_payload": {"marker": marker, "purpose": purpose}}


@dataclass(frozen=True)
class _Intent:
    marker: str
    earlier_at: datetime | None  # when an earlier attempt recorded it; None: this is the first
    earlier_payload: dict[str, Any] | None


def _select(spec: PostSpec):
    return select(SlackPostIntent).where(SlackPostIntent.incident_id == spec.incident_id,
                                         SlackPostIntent.purpose == spec.purpose)


def _intend(factory: sessionmaker[Session], spec: PostSpec, now: datetime, payload: dict[str, Any] | None) -> _Intent:
    with unit_of_work(factory) as session:
        intent = session.execute(_select(spec)).scalar_one_or_none()
        if intent is not None:
            return _Intent(intent.marker, intent.created_at, intent.payload)
        marker = uuid.uuid4().hex
        session.add(SlackPostIntent(incident_id=spec.incident_id, purpose=spec.purpose, marker=marker, created_at=now,
                                    payload=payload))
        return _Intent(marker, None, None)


def _restate(factory: sessionmaker[Session], spec: PostSpec, payload: dict[str, Any] | None) -> None:
    """The earlier attempt's message is not in Slack: this attempt's payload replaces its own."""
    with unit_of_work(factory) as session:
        intent = session.execute(_select(spec)).scalar_one()
        intent.payload = payload


def forget(session: Session, incident_id: int, purpose: str) -> None:
    """Drop the intent; call it in the transaction that stores the message's ts."""
    session.execute(delete(SlackPostIntent).where(SlackPostIntent.incident_id == incident_id,
                                                  SlackPostIntent.purpose == purpose))


def _carries(message: dict[str, Any], marker: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(message.get("bot_id")) and metadata.get("event_type") == MARKER_EVENT_TYPE \
        and payload.get("marker") == marker


def find_posted(gateway: SlackGateway, spec: PostSpec, marker: str, since: datetime) -> PostedMessage | None:
    """The bot's message carrying `marker`, posted after `since` (less CLOCK_SKEW), in the
    channel's history or the thread's replies, searching at most SEARCH_MAX_PAGES pages; None
    when it is not there or the search cannot be made (a retry-later error propagates)."""
    oldest = f"{max(0.0, (since - CLOCK_SKEW).timestamp()):.6f}"
    try:
        channel = gateway.channel_id(spec.channel)
        if channel is None:
            log.warning("cannot look for an earlier post: channel %s not found", spec.channel)
            return None
        cursor = None
        for _ in range(SEARCH_MAX_PAGES):
            messages, cursor = gateway.messages_page(channel, spec.thread_ts, oldest, SEARCH_PAGE_LIMIT, cursor)
            for message in messages:
                if _carries(message, marker):
                    return PostedMessage(channel=channel, ts=str(message["ts"]))
            if not cursor:
                return None
    except SlackRetryLater:
        raise
    except SlackError as exc:  # e.g. missing_scope: posting again is the old behaviour, never a loss
        log.warning("cannot look for an earlier post (%s): posting again", exc)
        return None
    log.warning("earlier post not found within %d pages: posting again", SEARCH_MAX_PAGES)
    return None


def post_once(factory: sessionmaker[Session], gateway: SlackGateway, clock: Clock, spec: PostSpec, text: str,
              blocks: list[dict[str, Any]] | None = None, reply_broadcast: bool = False,
              payload: dict[str, Any] | None = None) -> PostResult:
    """Post the message unless an earlier attempt already did (see the module docstring). The
    caller stores the returned ts and calls `forget` in the same transaction; Slack errors
    propagate (the intent stays, so the retry searches). When the search does not find the
    message it is posted again, with the same marker: not in the channel or thread means never
    applied (or deleted since), so posting is what the first attempt meant to do.

    `payload` is what this message accounts for (a note's counts); an adopted message returns
    the payload of the attempt that posted it, so the caller settles exactly that."""
    intent = _intend(factory, spec, clock(), payload)
    if intent.earlier_at is not None:
        found = find_posted(gateway, spec, intent.marker, intent.earlier_at)
        if found is not None:
            log.info("adopted the %s message an earlier attempt posted", spec.purpose, extra={"ts": found.ts})
            return PostResult(found, adopted=True, payload=intent.earlier_payload)
        if intent.earlier_payload != payload:
            _restate(factory, spec, payload)
    posted = gateway.post_message(spec.channel, text, blocks, thread_ts=spec.thread_ts,
                                  reply_broadcast=reply_broadcast, metadata=marker_metadata(intent.marker, spec.purpose))
    return PostResult(posted, adopted=False, payload=payload)
