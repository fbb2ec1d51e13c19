"""The incident controls as flows the Slack handlers call: policy first, then one unit of work,
then what Slack should hear. Handlers only parse and ack; everything else is here.

Each flow answers a `Reply` for the person (shown ephemerally): what was done, or why not. A
refusal (the policy, or the incident's state re-checked under its row lock) changes nothing
and is on the incident's timeline (`click.refused`) when the incident is known. The policy
fails closed: with no policy loaded, the managed controls are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident
from bot.incidents import catchup, controls, refused_clicks, service
from bot.incidents.acknowledge import ActionRefused, acknowledge
from bot.incidents.controls import Person
from bot.policy import roles
from bot.slack.gateway import SlackError
from bot.slack.render.catchup import render_catchup
from bot.slack.render.text import untrusted
from bot.timeline import chain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who asks, from where: `button` for the card's buttons and modals (the policy's channels
    apply), False for `/ops` typed anywhere."""

    user: str
    name: str
    channel: str | None
    button: bool
    message_ts: str | None = None  # the clicked message: a refusal goes to its thread's timeline

    @property
    def person(self) -> Person:
        return Person(self.user, self.name or self.user or "someone")


@dataclass(frozen=True)
class Reply:
    ok: bool
    text: str
    blocks: list[dict[str, Any]] | None = None
    incident_id: int | None = None


class IncidentControls:
    """Bound to a runtime (`bot.runtime.Runtime`): its database, clock, policy, Slack and settings."""

    def __init__(self, runtime):
        self._runtime = runtime

    # -- the checks every control shares -------------------------------------------------

    def _refusal(self, control: str, caller: Caller) -> str | None:
        kit = self._runtime.remediation
        if kit is None:
            return "no policy is loaded"
        groups = kit.groups.groups_of(caller.user) if caller.user else frozenset()
        return roles.control_refusal(kit.policy, control, caller.user, groups, caller.channel, button=caller.button)

    def _refuse(self, control: str, caller: Caller, incident_id: int | None, reason: str) -> Reply:
        with unit_of_work(self._runtime.factory) as session:
            refused_clicks.record(session, incident_id, user=caller.user, action=control, reason=reason,
                                  channel=caller.channel, message_ts=caller.message_ts, now=self._runtime.clock())
        return Reply(False, reason, incident_id=incident_id)

    def refusal_text(self, control: str, caller: Caller) -> str | None:
        """The policy's reason to refuse `control` to `caller` (None: allowed), recording nothing."""
        return self._refusal(control, caller)

    def refuse_malformed(self, control: str, caller: Caller, reason: str) -> Reply:
        """A button or form whose value is not ours: nothing changes; recorded in the thread it
        was clicked in, when that is one of ours."""
        return self._refuse(control, caller, None, reason)

    def refusal_reply(self, control: str, caller: Caller, incident_id: int) -> Reply | None:
        """The policy's answer before a form opens (checked again when it is submitted)."""
        refusal = self._refusal(control, caller)
        return self._refuse(control, caller, incident_id, f"Not done: {refusal}.") if refusal else None

    def _run(self, control: str, caller: Caller, incident_id: int | None,
             work: Callable[[Session, Person, datetime], str]) -> Reply:
        refusal = self._refusal(control, caller)
        if refusal:
            return self._refuse(control, caller, incident_id, f"Not done: {refusal}.")
        try:
            with unit_of_work(self._runtime.factory) as session:
                text = work(session, caller.person, self._runtime.clock())
        except ActionRefused as exc:
            return self._refuse(control, caller, incident_id, str(exc))
        self._runtime.workers.wake_stages()
        return Reply(True, text, incident_id=incident_id)

    @property
    def _settings(self):
        return self._runtime.settings

    # -- the controls ---------------------------------------------------------------------

    def acknowledge(self, caller: Caller, incident_id: int) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            incident = acknowledge(session, incident_id, person.name, person.ref, now,
                                   pagerduty_writable=self._settings.pagerduty_rest_writable)
            return f"{incident.reference} acknowledged."
        return self._run("acknowledge", caller, incident_id, work)

    def resolve(self, caller: Caller, incident_id: int, note: str = "") -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            incident = controls.resolve(session, incident_id, person, now, note, self._grace,
                                        self._settings.pagerduty_rest_writable)
            return f"{incident.reference} resolved. Its postmortem follows in the thread."
        return self._run("resolve", caller, incident_id, work)

    def reopen(self, caller: Caller, incident_id: int) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            incident = controls.reopen(session, incident_id, person, now, self._settings.pagerduty_rest_writable)
            return f"{incident.reference} reopened."
        return self._run("reopen", caller, incident_id, work)

    def severity(self, caller: Caller, incident_id: int, severity: str) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            incident = controls.set_severity(session, incident_id, severity, person, now)
            return f"{incident.reference} is now {incident.severity}."
        return self._run("severity", caller, incident_id, work)

    def command(self, caller: Caller, incident_id: int, commander: Person | None = None) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            incident = controls.take_command(session, incident_id, person, now, commander)
            return f"{incident.commander} is the commander of {incident.reference}."
        return self._run("commander", caller, incident_id, work)

    def followup(self, caller: Caller, incident_id: int, text: str, owner: str | None) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            item = controls.add_follow_up(session, incident_id, text, owner, person, now)
            return f"Follow-up F-{item.id} recorded on INC-{incident_id}" + (f" for {owner}." if owner else ".")
        return self._run("followup", caller, incident_id, work)

    def close_followup(self, caller: Caller, follow_up_id: int) -> Reply:
        def work(session: Session, person: Person, now: datetime) -> str:
            item = controls.close_follow_up(session, follow_up_id, person, now)
            return f"F-{item.id} closed."
        return self._run("followup", caller, None, work)

    def declare(self, caller: Caller, title: str, severity: str = "") -> Reply:
        created: list[int] = []

        def work(session: Session, person: Person, now: datetime) -> str:
            incident = controls.declare(session, title, severity, person, now)
            created.append(incident.id)
            return f"{incident.reference} declared: its card and thread follow in the incident channel."
        reply = self._run("declare", caller, None, work)
        return Reply(reply.ok, reply.text, incident_id=created[0] if created else None)

    def update(self, caller: Caller, incident_id: int, text: str) -> Reply:
        """Record the update, then post it in the thread and, when configured, the status channel
        (linking back). A Slack failure is on the timeline and in the reply; the update stays
        recorded (it is on the card)."""
        def work(session: Session, person: Person, now: datetime) -> str:
            controls.post_update(session, incident_id, text, person, now)
            return "Update posted."
        reply = self._run("update", caller, incident_id, work)
        if not reply.ok:
            return reply
        problems = self._announce_update(incident_id, caller.person, text.strip())
        return Reply(True, reply.text + (" " + problems if problems else ""), incident_id=incident_id)

    def catchup(self, caller: Caller, incident_id: int) -> Reply:
        """Read-only: anyone the actors allow may ask."""
        refusal = self._refusal("catchup", caller)
        if refusal:
            return Reply(False, f"Not shown: {refusal}.")
        with reading(self._runtime.factory) as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                return Reply(False, f"INC-{incident_id} does not exist")
            rendered = render_catchup(catchup.catchup_view(session, incident))
        return Reply(True, rendered["text"], rendered["blocks"], incident_id)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _grace(self) -> timedelta:
        return timedelta(seconds=self._settings.postmortem_grace_seconds)

    def _announce_update(self, incident_id: int, person: Person, text: str) -> str:
        gateway = self._runtime.gateway
        with reading(self._runtime.factory) as session:
            incident = session.get(Incident, incident_id)
            card = service.card_message(session, incident_id)
            thread = (card.channel, card.ts) if card is not None else None
            reference, title = incident.reference, incident.title
        line = f":loudspeaker: *Status update* by {untrusted(person.name, 100)}: {untrusted(text, 2500)}"
        failures: list[str] = []
        link = None
        if thread is not None:
            try:
                gateway.post_message(thread[0], line, thread_ts=thread[1])
                link = gateway.permalink(*thread)
            except SlackError as exc:
                failures.append(self._failed(incident_id, exc, "thread"))
        status_channel = self._settings.status_channel
        if status_channel:
            back = f" <{link}|Thread>" if link else ""
            summary = (f":loudspeaker: *{reference}* · {untrusted(title, 200)} — {untrusted(text, 1500)} "
                       f"_({untrusted(person.name, 100)})_{back}")
            try:
                gateway.post_message(status_channel, summary)
            except SlackError as exc:
                failures.append(self._failed(incident_id, exc, "status channel"))
        return " ".join(failures)

    def _failed(self, incident_id: int, exc: SlackError, where: str) -> str:
        log.warning("status update not posted to the %s: %s", where, exc)
        with unit_of_work(self._runtime.factory) as session:
            chain.append(session, incident_id, "slack.failed", "opsbot",
                         {"method": exc.method, "error": exc.error, "status_update_to": where},
                         self._runtime.clock())
        return f"(Not posted to the {where}: {exc.error}.)"
