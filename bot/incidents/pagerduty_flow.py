"""PagerDuty webhooks in the incident flow.

Two kinds of PagerDuty incident arrive here:
- one opsbot opened itself (its dedup key is `opsbot-INC-N`, label `opsbot_incident`): the
  event is mirrored onto INC-N (acknowledged by, reassigned, notes, resolved in PagerDuty)
  and never becomes an alert, so nothing loops back and forth;
- any other: it is an alert source like Alertmanager (one PD incident, one alert, one opsbot
  incident), and acknowledgements, reassignments and notes are mirrored as above.
`incident.annotated` carries no state, so it is only mirrored, never ingested as an alert.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.alerts.model import AlertBatch
from bot.db.models import Incident
from bot.incidents import flows, service
from bot.incidents.lifecycle import Windows
from bot.timeline import chain

ACTOR = "pagerduty"
MIRRORED = {
    "incident.acknowledged": "acknowledged",
    "incident.unacknowledged": "unacknowledged",
    "incident.reassigned": "reassigned",
    "incident.annotated": "annotated",
    "incident.escalated": "escalated_in_pagerduty",
    "incident.priority_updated": "priority_updated",
}


ECHO_OF = {"incident.triggered": "triggered", "incident.acknowledged": "acknowledged",
           "incident.resolved": "resolved"}


def _linked(session: Session, labels: dict[str, str]) -> Incident | None:
    """The opsbot incident a PagerDuty incident mirrors: by the PagerDuty id recorded earlier,
    or by the `opsbot-INC-N` dedup key, but only when INC-N really is mirrored under that key
    (a foreign PagerDuty incident that merely uses such a key controls nothing)."""
    pd_id = labels.get("pagerduty_incident", "")[:64]
    if pd_id:
        known = session.execute(
            select(Incident).where(Incident.pagerduty_incident_id == pd_id, Incident.source != "pagerduty")
            .with_for_update()
        ).scalars().first()
        if known is not None:
            return known
    reference = labels.get("opsbot_incident", "")
    if not reference.startswith("INC-") or not reference[4:].isdigit() or len(reference) > 20:
        return None
    incident = session.execute(
        select(Incident).where(Incident.id == int(reference[4:])).with_for_update()
    ).scalar_one_or_none()
    if incident is None or incident.pagerduty_status_wanted is None:
        return None
    if incident.pagerduty_dedup_key not in (None, labels.get("pagerduty_dedup_key")):
        return None
    if incident.pagerduty_incident_id and pd_id and pd_id != incident.pagerduty_incident_id:
        return None  # another PagerDuty incident (another service or install) using our key
    return incident


def _mirror(session: Session, incident: Incident, event: str, annotations: dict[str, str], labels: dict[str, str],
            now: datetime, echo: bool = False) -> bool:
    """Reflect a PagerDuty-side change on the opsbot incident; True when the card changes.

    An `echo` (an integration acting on an incident opsbot mirrors: our own Events API call
    coming back) is recorded on the timeline only: it must not overwrite who acknowledged in
    Slack or tell the thread what it just did itself."""
    agent = annotations.get("agent") or "someone"
    detail = {"agent": agent, "pagerduty_incident": labels.get("pagerduty_incident")}
    link_changed = _remember_pagerduty(incident, annotations, labels)
    if echo:
        kind = MIRRORED.get(event, event.removeprefix("incident."))
        chain.append(session, incident.id, f"pagerduty.echo.{kind}", ACTOR, detail, now)
        if link_changed:
            incident.card_version += 1
        return link_changed
    note = dict(incident.note_pending or {})
    if event == "incident.acknowledged":
        incident.acknowledged_by = agent[:256]
        note["acknowledged"] = agent
    elif event == "incident.unacknowledged":
        incident.acknowledged_by = None
    elif event == "incident.reassigned":
        note["reassigned"] = annotations.get("assignees") or agent
        detail["assignees"] = annotations.get("assignees")
    elif event == "incident.annotated":
        note["annotated"] = agent
        detail["note"] = annotations.get("note", "")
    elif event == "incident.resolved":
        note["resolved_in_pagerduty"] = agent
        if incident.pagerduty_status_wanted:  # a person resolved it there: do not page again
            incident.pagerduty_status_synced = incident.pagerduty_status_wanted = "resolved"
    kind = MIRRORED.get(event, "resolved" if event == "incident.resolved" else event.removeprefix("incident."))
    chain.append(session, incident.id, f"pagerduty.{kind}", ACTOR, detail, now)
    incident.note_pending = note
    incident.updated_at = now
    incident.card_version += 1
    return True


def _remember_pagerduty(incident: Incident, annotations: dict[str, str], labels: dict[str, str]) -> bool:
    """Store the PagerDuty incident id and link (for later lookups and the card)."""
    before = (incident.pagerduty_incident_id, incident.links.get("pagerduty"))
    if annotations.get("html_url", "").startswith("https://"):
        incident.links = {**incident.links, "pagerduty": annotations["html_url"][:2000]}
    pd_id = labels.get("pagerduty_incident", "")[:64]
    incident.pagerduty_incident_id = pd_id or incident.pagerduty_incident_id
    return before != (incident.pagerduty_incident_id, incident.links.get("pagerduty"))


def _is_echo(incident: Incident, event: str, annotations: dict[str, str]) -> bool:
    """Our own Events API call coming back: an integration acted, and the new state is the
    one opsbot wants (set before the call: PagerDuty's webhook may arrive before the sync
    records what it sent). PagerDuty's own automation (ack timeouts, other integrations)
    does not match what we sent and is mirrored like a person's action."""
    sent = {incident.pagerduty_status_wanted, incident.pagerduty_status_synced} - {None}
    return annotations.get("agent_type") == "service_reference" and ECHO_OF.get(event) in sent


def apply(session: Session, batch: AlertBatch, delivery_id: int, now: datetime,
          windows: Windows) -> flows.IntakeResult | None:
    """Apply one PagerDuty webhook; None when it concerns no incident opsbot knows and
    carries no state (a note on a PagerDuty incident opsbot never saw)."""
    event = batch.common_annotations.get("pagerduty_event", "")
    (alert,) = batch.alerts
    linked = _linked(session, alert.labels)
    if linked is not None:
        changed = _mirror(session, linked, event, alert.annotations, alert.labels, now,
                          echo=_is_echo(linked, event, alert.annotations))
        return flows.IntakeResult(linked.id, False, 0, 0, 0, changed)
    if event == "incident.annotated" or event in MIRRORED and event != "incident.acknowledged":
        known = service.open_incident(session, batch.group_key, lock=True) or service.latest_closed_incident(
            session, batch.group_key, lock=True)
        if known is None:
            return None
        _mirror(session, known, event, alert.annotations, alert.labels, now)
        return flows.IntakeResult(known.id, False, 0, 0, 0, True)
    result = flows.ingest(session, batch, delivery_id, now, windows)
    if event == "incident.acknowledged":
        incident = session.get(Incident, result.incident_id)
        _mirror(session, incident, event, alert.annotations, alert.labels, now)
    return result
