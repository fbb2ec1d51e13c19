"""The THREAD stage: bring an incident's card in Slack up to date.

Protocol, in three steps so that no database transaction is held open across a Slack call:
1. lease the card with a conditional UPDATE (one worker across all replicas wins), then read
   what to render from a snapshot;
2. post the card (first time) or update it in place (`chat.update`);
3. record the message and the synced version, only while still holding the lease.
A 429 or 5xx from Slack defers the card by Retry-After (the lease doubles as "not before"),
so the card is delayed, never lost. The first failure of a streak is written to the timeline.
A crash between steps 2 and 3 (or an answer lost after Slack applied the post) does not post
the root message twice: the first post records an intent and marks the message
(`bot.incidents.slack_posts`), and the retry adopts the message it finds in the channel, then
brings it up to date with `chat.update` at the next interval. A thread note is posted once the
same way; an adopted note settles the counts it was posted with, the rest follow. The catch-up
message (`bot.incidents.catchup`) takes the same slot after the card and the notes: posted once
in the thread when it is first wanted, then edited in place whenever the card changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import reading, unit_of_work
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident, SlackMessage
from bot.incidents import catchup, service
from bot.incidents.card import card_view
from bot.incidents.slack_posts import PostSpec, forget, post_once
from bot.logs import incident_context
from bot.slack.gateway import SlackError, SlackGateway, SlackRetryLater
from bot.slack.render.card import render_card
from bot.slack.render.catchup import render_catchup
from bot.slack.render.notes import note_is_loud, render_note, subtract_note
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
MAX_BACKOFF_SECONDS = 300
# Errors a retry cannot fix until someone changes the Slack app or the configuration.
NEEDS_A_HUMAN = {
    "channel_not_found": "the channel does not exist or the bot cannot see it: check OPSBOT_SLACK_CHANNEL",
    "not_in_channel": "invite the bot to the channel",
    "is_archived": "the channel is archived: unarchive it or change OPSBOT_SLACK_CHANNEL",
    "invalid_auth": "the bot token is invalid: check OPSBOT_SLACK_BOT_TOKEN",
    "token_revoked": "the bot token was revoked: reinstall the app",
    "account_inactive": "the bot token was revoked: reinstall the app",
    "missing_scope": "the app lacks a scope: reinstall it from deploy/slack-app-manifest.yaml",
}


@dataclass(frozen=True)
class CardTarget:
    channel: str
    ts: str | None


def _backoff_seconds(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 2 ** min(attempts, 9)))


def _release(session: Session, incident_id: int, owner: str, **values: object) -> bool:
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident_id, Incident.card_lease_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


NOTE_DUE = "_due"
NOTE_PURPOSE = "note"  # the intent of the thread note in flight (one at a time, under the card lease)
CATCHUP_PURPOSE = "catchup"  # the catch-up message (`bot.incidents.catchup`), edited in place


def card_digest(rendered: dict) -> str:
    return hashlib.sha256(json.dumps(rendered, sort_keys=True).encode()).hexdigest()


def _choose_write(target: CardTarget, card_changed: bool, note_text: str | None, note: dict,
                  catchup_changed: bool = False) -> str:
    """At most one Slack write per sync, so the debounce interval bounds writes per incident:
    the first post; a note already due (it waited one interval behind a card update); a changed
    card; otherwise a pending note; then the catch-up message; or nothing."""
    if target.ts is None:
        return "card"
    if note_text and note.get(NOTE_DUE):
        return "note"
    if card_changed:
        return "card"
    if note_text:
        return "note"
    return "catchup" if catchup_changed else "none"


@dataclass(frozen=True)
class _CatchUp:
    rendered: dict | None
    digest: str | None
    ts: str | None  # the message to edit, once posted

    def changed(self, stored_hash: str | None) -> bool:
        return self.digest is not None and self.digest != stored_hash


def _catchup(session: Session, incident: Incident) -> _CatchUp:
    if not catchup.wanted(session, incident):
        return _CatchUp(None, None, None)
    rendered = render_catchup(catchup.catchup_view(session, incident))
    message = service.thread_message(session, incident.id, CATCHUP_PURPOSE)
    return _CatchUp(rendered, card_digest(rendered), message.ts if message else None)


class CardSync:
    """Posts and updates incident cards; one instance per worker pool."""

    def __init__(self, factory: sessionmaker[Session], gateway: SlackGateway, channel: str, clock: Clock,
                 owner: str, lease: timedelta = timedelta(seconds=120), min_interval: timedelta = timedelta(0)):
        """`min_interval` debounces: after a sync, the next one for that incident waits at least
        this long, so a storm into one incident costs a bounded number of Slack writes."""
        self._factory, self._gateway, self._channel = factory, gateway, channel
        self._clock, self._owner_prefix, self._lease = clock, owner, lease
        self._min_interval = min_interval

    def pending(self, limit: int = 20) -> list[int]:
        with reading(self._factory) as session:
            return service.incidents_needing_card(session, self._clock(), limit, self._min_interval)

    def sync(self, incident_id: int) -> str:
        """Sync one card; returns 'posted', 'adopted', 'updated', 'skipped', 'deferred' or 'failed'."""
        owner = f"{self._owner_prefix}:{uuid.uuid4().hex[:12]}"  # unique to this attempt
        with incident_context(incident_id):
            now = self._clock()
            with unit_of_work(self._factory) as session:
                if not service.lease_card(session, incident_id, owner, now, now + self._lease, self._min_interval):
                    return "skipped"
            # Rendered from a snapshot once the lease is ours, not inside the write transaction:
            # on SQLite that would hold the one writer lock (and a webhook) for the rendering.
            # Should rendering fail, the lease is given back (as the rolled-back lease was).
            with self._lease_returned_on_error(incident_id, owner), reading(self._factory) as session:
                incident = session.get(Incident, incident_id)
                message = service.card_message(session, incident_id)
                version, attempts = incident.card_version, incident.card_attempts
                rendered = render_card(card_view(incident))
                digest = card_digest(rendered)
                note = dict(incident.note_pending or {})
                note_text = render_note(note, incident.firing_count, incident.alert_count)
                target = CardTarget(message.channel, message.ts) if message else CardTarget(self._channel, None)
                card_changed = digest != incident.card_hash
                summary = _catchup(session, incident)
                catchup_changed = summary.changed(incident.catchup_hash)
                write = _choose_write(target, card_changed, note_text, note, catchup_changed)
            adopted, catchup_ts = False, None
            try:
                if write == "note":
                    result = post_once(self._factory, self._gateway, self._clock,
                                       PostSpec(incident_id, NOTE_PURPOSE, target.channel, target.ts), note_text,
                                       reply_broadcast=note_is_loud(note), payload=note)
                    outcome, posted, adopted = "noted", target, result.adopted
                    note = result.payload or {}  # an adopted note settles what it was posted with
                elif write == "card":
                    outcome, posted = self._send(incident_id, target, rendered)
                elif write == "catchup":
                    catchup_ts = self._send_catchup(incident_id, target, summary)
                    outcome, posted = "caught_up", target
                else:
                    outcome, posted = "unchanged", target
            except SlackError as exc:
                retry_after = exc.retry_after if isinstance(exc, SlackRetryLater) else None
                return self._defer(incident_id, owner, attempts, exc, retry_after or _backoff_seconds(attempts))
            absorbed = note if (write == "note" or target.ts is None) else {}
            note_left = bool(note_text) and not absorbed
            # adopted: an earlier render (updated at the next interval), or an earlier note (the
            # counts that arrived since follow at the next interval)
            adopted = adopted or outcome == "adopted"
            card_left = (card_changed and write != "card") or adopted or (catchup_changed and write != "catchup")
            self._record(incident_id, owner, version, attempts, target, posted, absorbed,
                         digest if write == "card" and not adopted else None, note_left, card_left, adopted,
                         wrote_note=write == "note", catchup=summary if write == "catchup" else None,
                         catchup_ts=catchup_ts if write == "catchup" else None)
            log.info("incident card %s", outcome, extra={"channel": posted.channel, "ts": posted.ts})
            return outcome

    @contextmanager
    def _lease_returned_on_error(self, incident_id: int, owner: str) -> Iterator[None]:
        try:
            yield
        except Exception:
            with unit_of_work(self._factory) as session:
                _release(session, incident_id, owner, card_lease_owner=None, card_lease_until=None)
            raise

    def _send(self, incident_id: int, target: CardTarget, rendered: dict) -> tuple[str, CardTarget]:
        """Update the card in place, or post it ('posted'), or adopt the one an earlier attempt
        posted ('adopted')."""
        if target.ts is not None:
            try:
                self._gateway.update_message(target.channel, target.ts, rendered["text"], rendered["blocks"])
                return "updated", target
            except SlackError as exc:
                if exc.error not in {"message_not_found", "channel_not_found", "cant_update_message"}:
                    raise
                log.warning("card message gone (%s): posting a new one", exc.error)
        result = post_once(self._factory, self._gateway, self._clock, PostSpec(incident_id, "card", self._channel),
                           rendered["text"], rendered["blocks"])
        return "adopted" if result.adopted else "posted", CardTarget(result.message.channel, result.message.ts)

    def _send_catchup(self, incident_id: int, target: CardTarget, summary: _CatchUp) -> str:
        """Edit the catch-up in place, or post it in the thread the first time (once, across
        crashes); returns its ts."""
        text, blocks = summary.rendered["text"], summary.rendered["blocks"]
        if summary.ts is not None:
            try:
                self._gateway.update_message(target.channel, summary.ts, text, blocks)
                return summary.ts
            except SlackError as exc:
                if exc.error not in {"message_not_found", "cant_update_message"}:
                    raise
                log.warning("catch-up message gone (%s): posting it again", exc.error)
        result = post_once(self._factory, self._gateway, self._clock,
                           PostSpec(incident_id, CATCHUP_PURPOSE, target.channel, target.ts), text, blocks)
        return result.message.ts

    def _record(self, incident_id: int, owner: str, version: int, attempts: int, target_before: CardTarget,
                posted: CardTarget, note_posted: dict, digest: str | None, note_left: bool,
                card_left: bool, adopted: bool = False, wrote_note: bool = False,
                catchup: _CatchUp | None = None, catchup_ts: str | None = None) -> None:
        """Store the message and the synced version. The message is recorded even when the lease
        was lost meanwhile (it exists in Slack); the version only while the lease is ours."""
        now = self._clock()
        with unit_of_work(self._factory) as session:
            session.execute(select(Incident.id).where(Incident.id == incident_id).with_for_update(**ROW_LOCK))
            if posted != target_before:
                message = service.card_message(session, incident_id)
                if message is None:
                    session.add(SlackMessage(incident_id=incident_id, purpose="card", channel=posted.channel,
                                             ts=posted.ts, created_at=now, updated_at=now))
                else:
                    message.channel, message.ts, message.updated_at = posted.channel, posted.ts, now
                forget(session, incident_id, "card")
                chain.append(session, incident_id, "slack.card_posted", ACTOR,
                             {"channel": posted.channel, "ts": posted.ts, **({"adopted": True} if adopted else {})},
                             now)
            elif (message := service.card_message(session, incident_id)) is not None:
                message.updated_at = now
            if wrote_note:
                forget(session, incident_id, NOTE_PURPOSE)
            if catchup is not None and catchup_ts:
                self._record_catchup(session, incident_id, posted.channel, catchup, catchup_ts, now)
            if attempts:
                chain.append(session, incident_id, "slack.recovered", ACTOR, {"after_attempts": attempts}, now)
            incident = session.get(Incident, incident_id)
            remaining = subtract_note(incident.note_pending or {}, note_posted) if note_posted else None
            if note_left:  # the card went first; the note is due at the next interval
                remaining = {**(incident.note_pending or {}), NOTE_DUE: True}
            # Something still to send: stay behind, so the next interval picks the incident up.
            values: dict = {"card_synced_version": version - 1 if (note_left or card_left) else version}
            if digest is not None:
                values["card_hash"] = digest
            if remaining is not None:
                values["note_pending"] = remaining
            if not _release(session, incident_id, owner, card_lease_owner=None, card_lease_until=None,
                            card_attempts=0, card_last_error=None, card_synced_at=now, **values):
                log.warning("card lease lapsed during the Slack call; another worker will re-sync the card")

    @staticmethod
    def _record_catchup(session: Session, incident_id: int, channel: str, summary: _CatchUp, ts: str,
                        now) -> None:
        message = service.thread_message(session, incident_id, CATCHUP_PURPOSE)
        if message is None:
            session.add(SlackMessage(incident_id=incident_id, purpose=CATCHUP_PURPOSE, channel=channel, ts=ts,
                                     created_at=now, updated_at=now))
            forget(session, incident_id, CATCHUP_PURPOSE)
        else:
            message.ts, message.updated_at = ts, now
        session.execute(update(Incident).where(Incident.id == incident_id).values(catchup_hash=summary.digest)
                        .execution_options(synchronize_session=False))

    def _defer(self, incident_id: int, owner: str, attempts: int, exc: SlackError, delay_seconds: float) -> str:
        now = self._clock()
        hint = NEEDS_A_HUMAN.get(exc.error)
        if hint:
            log.error("incident card cannot be posted (%s): %s; retrying in %.0fs", exc.error, hint, delay_seconds)
        else:
            log.warning("card deferred %.0fs: %s", delay_seconds, exc)
        with unit_of_work(self._factory) as session:
            if attempts == 0:
                chain.append(session, incident_id, "slack.failed", ACTOR,
                             {"method": exc.method, "error": exc.error, "retry_in_seconds": delay_seconds,
                              **({"hint": hint} if hint else {})}, now)
            _release(session, incident_id, owner, card_lease_until=now + timedelta(seconds=delay_seconds),
                     card_attempts=attempts + 1, card_last_error=str(exc)[:2000])
        return "deferred" if isinstance(exc, SlackRetryLater) else "failed"
