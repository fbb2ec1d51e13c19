"""REPORT: the postmortem, written into the incident's thread once per resolution.

`schedule` runs in the transaction that resolves the incident (`bot.incidents.resolution`): it
counts the resolution and makes the incident's `postmortems` row due after a grace period. The
stage then, for each due row of a still-resolved incident:
1. takes the incident's thread-write slot (`service.lease_thread_write`: a conditional UPDATE
   one worker wins across replicas; the same slot the card and the RCA use);
2. writes the incident's signature for later RCAs (`bot.postmortem.memory`), builds the facts
   from the database (`bot.postmortem.facts`), renders the Block Kit message and the Markdown
   (the team's template);
3. posts the message in the thread the first time (`slack_posts.post_once`: a crash or a lost
   answer adopts the earlier message instead of posting twice) with the Markdown as a file;
   for a later resolution (reopened, resolved again) it edits that message in place, saying it
   was updated, and attaches the new Markdown: never a second postmortem message;
4. records the resolution it wrote, releasing the slot.
An incident that reopens before its postmortem is due gets none for that resolution; the next
resolution's covers it. A Slack failure defers the row (Retry-After, else backoff) and is on
the timeline once per streak; a template that does not render is a timeline entry and the
message goes out without the file.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Postmortem
from bot.incidents import service
from bot.incidents.slack_posts import PostSpec, forget, post_once
from bot.logs import incident_context
from bot.postmortem.document import postmortem_document
from bot.postmortem.markdown import TemplateProblem, render_markdown
from bot.postmortem.memory import remember
from bot.slack.gateway import SlackError, SlackGateway, SlackRetryLater
from bot.slack.render.postmortem import render_postmortem
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
PURPOSE = "postmortem"
MAX_BACKOFF_SECONDS = 300
NOT_YET = timedelta(seconds=5)  # the thread does not exist yet: look again shortly


def schedule(session: Session, incident: Incident, now: datetime, grace: timedelta) -> None:
    """Count this resolution and make its postmortem due after `grace`. The caller holds the
    incident's row lock, so two resolutions never race on the row."""
    incident.resolutions = (incident.resolutions or 0) + 1
    row = session.get(Postmortem, incident.id)
    if row is None:
        session.add(Postmortem(incident_id=incident.id, resolution=incident.resolutions, posted_resolution=0,
                               due_at=now + grace, attempts=0))
    else:
        row.resolution, row.due_at, row.attempts, row.last_error = incident.resolutions, now + grace, 0, None


def due(session: Session, now: datetime, limit: int = 5) -> list[int]:
    return list(session.execute(
        select(Postmortem.incident_id).join(Incident, Incident.id == Postmortem.incident_id)
        .where(Postmortem.resolution > Postmortem.posted_resolution, Postmortem.due_at <= now,
               Incident.status == "resolved")
        .order_by(Postmortem.due_at).limit(limit)).scalars())


@dataclass(frozen=True)
class _Draft:
    resolution: int
    channel: str
    thread_ts: str
    earlier_ts: str | None  # the message of an earlier resolution, edited in place
    rendered: dict
    markdown: str | None
    template_problem: str | None


class PostmortemStage:
    def __init__(self, factory: sessionmaker[Session], gateway: SlackGateway, clock: Clock, owner: str,
                 template: Path | None = None, lease: timedelta = timedelta(seconds=120),
                 min_interval: timedelta = timedelta(0)):
        self._factory, self._gateway, self._clock = factory, gateway, clock
        self._owner_prefix, self._template, self._lease, self._interval = owner, template, lease, min_interval

    def round(self) -> bool:
        with reading(self._factory) as session:
            incident_ids = due(session, self._clock())
        return any(self.write(incident_id) == "posted" for incident_id in incident_ids)

    def write(self, incident_id: int) -> str:
        """'posted', 'waiting' (the slot is taken, or the thread does not exist yet), 'nothing'
        (no longer due) or 'deferred'."""
        owner = f"{self._owner_prefix}:{uuid.uuid4().hex[:12]}"
        now = self._clock()
        with unit_of_work(self._factory) as session:
            if not service.lease_thread_write(session, incident_id, owner, now, now + self._lease, self._interval):
                return "waiting"
        with incident_context(incident_id):
            self._remember(incident_id)
            try:
                draft = self._draft(incident_id)
            except Exception:
                self._release(incident_id, owner, wrote=False)
                raise
            if draft is None:
                self._release(incident_id, owner, wrote=False, retry_in=NOT_YET)
                return "waiting"
            if draft == "nothing":
                self._release(incident_id, owner, wrote=False)
                return "nothing"
            try:
                ts, adopted = self._send(incident_id, draft)
            except SlackError as exc:
                return self._defer(incident_id, owner, exc)
            self._record(incident_id, owner, draft, ts, adopted)
            return "posted"

    def _remember(self, incident_id: int) -> None:
        """The incident's signature for later RCAs (`bot.postmortem.memory`), rewritten at each
        resolution; its own transaction, so a failure there never holds the postmortem back."""
        try:
            with unit_of_work(self._factory) as session:
                remember(session, incident_id, self._clock())
        except Exception:  # noqa: BLE001 - logged; the postmortem goes on without it
            log.exception("the signature of INC-%s was not written", incident_id)

    def _draft(self, incident_id: int) -> _Draft | str | None:
        with reading(self._factory) as session:
            incident = session.get(Incident, incident_id)
            row = session.get(Postmortem, incident_id)
            if incident is None or row is None or incident.status != "resolved" \
                    or row.resolution <= row.posted_resolution:
                return "nothing"
            card = service.card_message(session, incident_id)
            if card is None:
                return None
            facts = postmortem_document(session, incident_id)
            resolution, earlier_ts = row.resolution, row.ts
            channel, card_ts = row.channel or card.channel, card.ts
        problem, markdown = None, None
        try:
            markdown = render_markdown(facts, self._template)
        except TemplateProblem as exc:
            problem = str(exc)
        return _Draft(resolution, channel, card_ts, earlier_ts, render_postmortem(facts, updated=resolution > 1),
                      markdown, problem)

    def _send(self, incident_id: int, draft: _Draft) -> tuple[str, bool]:
        """Edit the earlier message, or post the first one; then attach the Markdown."""
        text, blocks = draft.rendered["text"], draft.rendered["blocks"]
        ts, adopted = draft.earlier_ts, False
        if ts is not None:
            try:
                self._gateway.update_message(draft.channel, ts, text, blocks)
            except SlackError as exc:
                if exc.error not in {"message_not_found", "cant_update_message"}:
                    raise
                ts = None  # deleted by someone: post it again
        if ts is None:
            result = post_once(self._factory, self._gateway, self._clock,
                               PostSpec(incident_id, PURPOSE, draft.channel, draft.thread_ts), text, blocks)
            ts, adopted = result.message.ts, result.adopted
        if draft.markdown is not None and not adopted:
            reference = f"INC-{incident_id}"
            name = f"{reference}-postmortem" + (f"-{draft.resolution}" if draft.resolution > 1 else "") + ".md"
            try:
                self._gateway.upload_files(draft.channel, draft.thread_ts,
                                           [(name, draft.markdown.encode(), f"Postmortem of {reference} (Markdown)")])
            except SlackError as exc:  # the message is there; the file is on `opsbot postmortem` too
                log.warning("postmortem file not shared: %s", exc)
                with unit_of_work(self._factory) as session:
                    chain.append(session, incident_id, "slack.failed", ACTOR,
                                 {"method": exc.method, "error": exc.error, "files": [name]}, self._clock())
        return ts, adopted

    def _record(self, incident_id: int, owner: str, draft: _Draft, ts: str, adopted: bool) -> None:
        now = self._clock()
        with unit_of_work(self._factory) as session:
            row = session.get(Postmortem, incident_id)
            updated = draft.earlier_ts is not None and ts == draft.earlier_ts
            row.posted_resolution = max(row.posted_resolution, draft.resolution)
            row.channel, row.ts, row.posted_at, row.attempts, row.last_error = draft.channel, ts, now, 0, None
            forget(session, incident_id, PURPOSE)
            chain.append(session, incident_id, "postmortem.updated" if updated else "postmortem.posted", ACTOR,
                         {"resolution": draft.resolution, "channel": draft.channel, "ts": ts,
                          **({"adopted": True} if adopted else {}),
                          **({"template_problem": draft.template_problem} if draft.template_problem else {})}, now)
            service.release_thread_write(session, incident_id, owner, now)

    def _release(self, incident_id: int, owner: str, wrote: bool, retry_in: timedelta | None = None) -> None:
        with unit_of_work(self._factory) as session:
            if retry_in is not None and (row := session.get(Postmortem, incident_id)) is not None:
                row.due_at = self._clock() + retry_in
            service.release_thread_write(session, incident_id, owner, self._clock() if wrote else None)

    def _defer(self, incident_id: int, owner: str, exc: SlackError) -> str:
        now = self._clock()
        with unit_of_work(self._factory) as session:
            row = session.get(Postmortem, incident_id)
            delay = exc.retry_after if isinstance(exc, SlackRetryLater) and exc.retry_after else \
                float(min(MAX_BACKOFF_SECONDS, 2 ** min(row.attempts, 9)))
            if row.attempts == 0:
                chain.append(session, incident_id, "slack.failed", ACTOR,
                             {"method": exc.method, "error": exc.error, "postmortem": True,
                              "retry_in_seconds": delay}, now)
            row.attempts, row.last_error, row.due_at = row.attempts + 1, str(exc)[:2000], now + timedelta(seconds=delay)
            service.release_thread_write(session, incident_id, owner, None)
        log.warning("postmortem deferred %.0fs: %s", delay, exc)
        return "deferred"
