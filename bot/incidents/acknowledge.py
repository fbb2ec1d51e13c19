"""Acknowledging an incident from Slack (the card's Acknowledge button).

Re-checked at click time with the incident locked: it must be open and not yet acknowledged.
The person is recorded on the card, the thread and the timeline; when the incident is
mirrored to PagerDuty, PagerDuty is acknowledged too (see `flows.desired_pagerduty_status`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Incident
from bot.incidents.flows import desired_pagerduty_status
from bot.timeline import chain


class ActionRefused(Exception):
    """The click cannot be honoured; the message is shown to the person who clicked."""


def parse_incident_value(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise ActionRefused("this button is malformed: nothing was changed")
    return int(value)


def acknowledge(session: Session, incident_id: int, who: str, actor: str, now: datetime) -> Incident:
    incident = session.execute(select(Incident).where(Incident.id == incident_id).with_for_update()).scalar_one_or_none()
    if incident is None:
        raise ActionRefused(f"INC-{incident_id} does not exist")
    if not incident.is_open or incident.status != "open":
        raise ActionRefused(f"{incident.reference} is {incident.status}: there is nothing to acknowledge")
    if incident.acknowledged_by:
        raise ActionRefused(f"{incident.reference} was already acknowledged by {incident.acknowledged_by}")
    incident.acknowledged_by = who[:256]
    incident.note_pending = {**(incident.note_pending or {}), "acknowledged_here": who}
    incident.card_version += 1
    if incident.pagerduty_status_wanted:
        incident.pagerduty_status_wanted = desired_pagerduty_status(incident)
    chain.append(session, incident.id, "incident.acknowledged", actor, {"by": who}, now)
    return incident
