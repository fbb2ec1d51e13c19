"""LIVE: the incident's controls (Resolve, Reopen, Change severity, Take command, status updates,
follow-ups, declare). One function per control, each one unit of work in the caller's
transaction, re-checked with the incident row locked, so a double click or two people at once
change it once and the second is told why not.

Who may use a control is the policy's answer (`bot.policy.roles.control_refusal`), checked
by the caller before calling here (the flows in `bot.incidents.control_flows`). Every change
is on the timeline with the person who made it, bumps the card, and queues a line for the
thread (`note_pending`, posted by the card worker: debounced, posted once). PagerDuty follows
through the incident's wanted status (`bot.incidents.pagerduty_sync`), as for Acknowledge.
Refusals raise `ActionRefused` with the sentence shown to the person; nothing is changed.
What people type (a resolution note, a status update, a follow-up) is redacted before it is
stored, so a pasted secret reaches no row, file or printout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.alerts.fingerprints import key_hash
from bot.alerts.pagerduty import SOURCE as PAGERDUTY_SOURCE
from bot.db.locks import ROW_LOCK
from bot.db.models import FollowUp, Incident
from bot.incidents import investigations, resolution, service
from bot.incidents.acknowledge import NOT_UPDATED_REASON, ActionRefused
from bot.incidents.flows import desired_pagerduty_status
from bot.redaction import redact
from bot.timeline import chain

SEVERITIES = ("critical", "high", "warning", "info")
MAX_NOTE = 2000
MAX_UPDATE = 2000
MAX_TITLE = 300
DECLARED_SOURCE = "slack"


@dataclass(frozen=True)
class Person:
    """Who acts: a Slack user id and the name shown on the card and in the thread."""

    user: str
    name: str

    @property
    def ref(self) -> str:
        return f"slack:{self.user or 'unknown'}"


def _locked(session: Session, incident_id: int) -> Incident:
    incident = session.execute(select(Incident).where(Incident.id == incident_id)
                               .with_for_update(**ROW_LOCK)).scalar_one_or_none()
    if incident is None:
        raise ActionRefused(f"INC-{incident_id} does not exist")
    if incident.status == "merged":
        raise ActionRefused(f"{incident.reference} was merged into INC-{incident.merged_into_id}: use that one")
    if incident.status == "closed":
        raise ActionRefused(f"{incident.reference} is closed (a later incident follows it): nothing was changed")
    return incident


def _changed(session: Session, incident: Incident, kind: str, person: Person, payload: dict, now: datetime,
             note: dict | None = None) -> None:
    chain.append(session, incident.id, kind, person.ref, {"by": person.name, **payload}, now, locked=incident)
    if note:
        incident.note_pending = {**(incident.note_pending or {}), **note}
    incident.updated_at = now
    incident.card_version += 1


def _follow_pagerduty(session: Session, incident: Incident, wanted: str, writable: bool, now: datetime) -> str:
    """Bring PagerDuty along (as `acknowledge` does); the note to add when it cannot be."""
    if incident.source == PAGERDUTY_SOURCE:
        if wanted == "triggered":  # reopening: PagerDuty's API cannot reopen a resolved incident
            chain.append(session, incident.id, "pagerduty.not_updated", "opsbot",
                         {"reason": "PagerDuty cannot reopen a resolved incident through its API"}, now,
                         locked=incident)
            return " (still resolved in PagerDuty: its API cannot reopen an incident)"
        if writable:
            incident.pagerduty_status_wanted = wanted
            return ""
        chain.append(session, incident.id, "pagerduty.not_updated", "opsbot", {"reason": NOT_UPDATED_REASON}, now,
                     locked=incident)
        return " (PagerDuty not updated: no REST API access configured)"
    if incident.pagerduty_status_wanted:
        incident.pagerduty_status_wanted = desired_pagerduty_status(incident)
    return ""


def resolve(session: Session, incident_id: int, person: Person, now: datetime, note: str = "",
            grace: timedelta = timedelta(seconds=15), pagerduty_writable: bool = False) -> Incident:
    """Resolved by a person, firing alerts or not (their repeats do not reopen it; a new firing
    does). Its postmortem follows after `grace`."""
    incident = _locked(session, incident_id)
    if incident.status == "resolved":
        raise ActionRefused(f"{incident.reference} is already resolved"
                            + (f" (by {incident.resolved_by})" if incident.resolved_by else ""))
    note = redact(note.strip())[:MAX_NOTE]
    resolution.mark_resolved(session, incident, person.name, person.ref, now, grace, "resolved by a person",
                             note or None)
    shown = person.name + _follow_pagerduty(session, incident, "resolved", pagerduty_writable, now)
    incident.note_pending = {**(incident.note_pending or {}), "resolved_here": shown,
                             **({"resolution_note": note} if note else {})}
    incident.updated_at = now
    incident.card_version += 1
    return incident


def reopen(session: Session, incident_id: int, person: Person, now: datetime,
           pagerduty_writable: bool = False) -> Incident:
    incident = _locked(session, incident_id)
    if incident.status != "resolved":
        raise ActionRefused(f"{incident.reference} is {incident.status}: only a resolved incident can be reopened")
    resolution.mark_reopened(session, incident, person.name, person.ref, now, "reopened by a person")
    shown = person.name + _follow_pagerduty(session, incident, "triggered", pagerduty_writable, now)
    incident.note_pending = {**(incident.note_pending or {}), "reopened_here": shown}
    incident.updated_at = now
    incident.card_version += 1
    return incident


def set_severity(session: Session, incident_id: int, severity: str, person: Person, now: datetime) -> Incident:
    """A person's grade wins over the alerts' from now on (`flows.refresh` keeps it)."""
    wanted = service.normalise_severity(severity)
    if wanted not in SEVERITIES:
        raise ActionRefused(f"{severity!r} is not a severity: use one of {', '.join(SEVERITIES)}")
    incident = _locked(session, incident_id)
    if incident.severity == wanted and incident.severity_by:
        raise ActionRefused(f"{incident.reference} is already {wanted}")
    before = incident.severity
    incident.severity, incident.severity_by = wanted, person.ref
    _changed(session, incident, "incident.severity_changed", person, {"from": before, "to": wanted}, now,
             {"severity_here": f"{wanted} by {person.name}"})
    return incident


def take_command(session: Session, incident_id: int, person: Person, now: datetime,
                 commander: Person | None = None) -> Incident:
    """`person` makes `commander` (default: themselves) the incident commander."""
    commander = commander or person
    incident = _locked(session, incident_id)
    if incident.commander == commander.name:
        raise ActionRefused(f"{commander.name} already leads {incident.reference}")
    before = incident.commander
    incident.commander = commander.name[:256]
    _changed(session, incident, "incident.commander", person,
             {"commander": commander.name, "commander_user": commander.user, "previous": before}, now,
             {"commander_here": commander.name})
    return incident


def post_update(session: Session, incident_id: int, text: str, person: Person, now: datetime) -> Incident:
    """A status update: shown on the card and posted in the thread (and the status channel) by
    the caller after this commits."""
    text = redact(text.strip())
    if not text:
        raise ActionRefused("a status update needs some text: `/ops update INC-N <what changed>`")
    incident = _locked(session, incident_id)
    incident.latest_update, incident.latest_update_by, incident.latest_update_at = \
        text[:MAX_UPDATE], person.name[:256], now
    _changed(session, incident, "incident.status_update", person, {"text": text[:MAX_UPDATE]}, now)
    return incident


def add_follow_up(session: Session, incident_id: int, text: str, owner: str | None, person: Person,
                  now: datetime) -> FollowUp:
    text = redact(text.strip())
    if not text:
        raise ActionRefused("a follow-up needs a text: `/ops followup INC-N <what to do> [@owner]`")
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise ActionRefused(f"INC-{incident_id} does not exist")
    item = FollowUp(incident_id=incident_id, text=text[:MAX_NOTE], owner=owner, created_by=person.ref,
                    created_at=now)
    session.add(item)
    session.flush()
    chain.append(session, incident_id, "followup.added", person.ref,
                 {"by": person.name, "followup": f"F-{item.id}", "text": item.text, "owner": owner}, now)
    incident.card_version += 1  # the catch-up lists it
    return item


def close_follow_up(session: Session, follow_up_id: int, person: Person, now: datetime) -> FollowUp:
    item = session.execute(select(FollowUp).where(FollowUp.id == follow_up_id)
                           .with_for_update(**ROW_LOCK)).scalar_one_or_none()
    if item is None:
        raise ActionRefused(f"F-{follow_up_id} does not exist")
    if item.closed_at is not None:
        raise ActionRefused(f"F-{follow_up_id} was already closed by {item.closed_by}")
    item.closed_by, item.closed_at = person.ref, now
    chain.append(session, item.incident_id, "followup.closed", person.ref,
                 {"by": person.name, "followup": f"F-{item.id}"}, now)
    incident = session.get(Incident, item.incident_id)
    incident.card_version += 1
    return item


def declare(session: Session, title: str, severity: str, person: Person, now: datetime,
            settle: timedelta = timedelta(0)) -> Incident:
    """An incident opened by hand: no alert behind it, the same card, thread and pipeline (its
    RCA says it had no alert to start from). Its group key is unique to it, so no alert ever
    joins it by accident."""
    title = " ".join(title.split())[:MAX_TITLE]
    if not title:
        raise ActionRefused("an incident needs a title: `/ops declare <title> [severity]`")
    grade = service.normalise_severity(severity) if severity else "warning"
    if grade not in SEVERITIES:
        raise ActionRefused(f"{severity!r} is not a severity: use one of {', '.join(SEVERITIES)}")
    group_key = f"declared:{person.user}:{now.isoformat()}:{title}"
    incident = Incident(group_key=group_key, group_key_hash=key_hash(group_key), is_open=True, status="open",
                        source=DECLARED_SOURCE, title=title, severity=grade, severity_by=person.ref, links={},
                        alert_count=0, firing_count=0, created_at=now, updated_at=now, card_version=1,
                        card_synced_version=0, card_attempts=0, category="other", note_pending={},
                        declared_by=person.name[:256], commander=person.name[:256])
    session.add(incident)
    session.flush()
    chain.append(session, incident.id, "incident.opened", person.ref,
                 {"declared_by": person.name, "title": title, "severity": grade, "source": DECLARED_SOURCE}, now)
    investigations.schedule(session, incident.id, now, settle)
    return incident
