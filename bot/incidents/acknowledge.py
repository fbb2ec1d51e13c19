"""Acknowledging an incident from Slack (the card's Acknowledge button).

Re-checked at click time with the incident locked: it must be open and not yet acknowledged.
The person is recorded on the card, the thread and the timeline. PagerDuty hears of it from
the PagerDuty stage (`bot.incidents.pagerduty_sync`), never from the click itself:
- an incident opsbot mirrors to PagerDuty: its wanted status follows the incident
  (`flows.desired_pagerduty_status`), acknowledged through the Events API;
- a PagerDuty-born incident: wanted becomes `acknowledged`, sent through the REST API, when
  opsbot can write there (`pagerduty_writable`: a routing key runs the stage, an API key and a
  From email allow REST writes). Otherwise the acknowledgement stays local: the timeline
  (`pagerduty.not_updated`) and the thread note say that PagerDuty was not updated, and
  nothing is queued, so nothing retries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.alerts.pagerduty import SOURCE as PAGERDUTY_SOURCE
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident
from bot.incidents.flows import desired_pagerduty_status
from bot.timeline import chain

NOT_UPDATED_NOTE = "PagerDuty not updated: no REST API access configured"
NOT_UPDATED_REASON = ("acknowledging a PagerDuty incident needs OPSBOT_PAGERDUTY_ROUTING_KEY, "
                      "OPSBOT_PAGERDUTY_API_KEY and OPSBOT_PAGERDUTY_FROM_EMAIL")


class ActionRefused(Exception):
    """The click cannot be honoured; the message is shown to the person who clicked."""


def parse_incident_value(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise ActionRefused("this button is malformed: nothing was changed")
    return int(value)


def acknowledge(session: Session, incident_id: int, who: str, actor: str, now: datetime,
                pagerduty_writable: bool = False) -> Incident:
    incident = session.execute(select(Incident).where(Incident.id == incident_id).with_for_update(**ROW_LOCK)).scalar_one_or_none()
    if incident is None:
        raise ActionRefused(f"INC-{incident_id} does not exist")
    if not incident.is_open or incident.status != "open":
        raise ActionRefused(f"{incident.reference} is {incident.status}: there is nothing to acknowledge")
    if incident.acknowledged_by:
        raise ActionRefused(f"{incident.reference} was already acknowledged by {incident.acknowledged_by}")
    incident.acknowledged_by = who[:256]
    incident.card_version += 1
    chain.append(session, incident.id, "incident.acknowledged", actor, {"by": who}, now)
    shown = who
    if incident.source == PAGERDUTY_SOURCE:
        if pagerduty_writable:
            incident.pagerduty_status_wanted = "acknowledged"
        else:
            shown = f"{who} ({NOT_UPDATED_NOTE})"
            chain.append(session, incident.id, "pagerduty.not_updated", "opsbot", {"reason": NOT_UPDATED_REASON},
                         now)
    elif incident.pagerduty_status_wanted:
        incident.pagerduty_status_wanted = desired_pagerduty_status(incident)
    incident.note_pending = {**(incident.note_pending or {}), "acknowledged_here": shown}
    return incident
