"""The intake stage: one raw delivery becomes alerts in exactly one open incident per group key.

Each function here is one unit of work in the caller's transaction. `ingest` is safe to run
twice for the same delivery and concurrently for the same group key:
- a new group key's incident is inserted inside a SAVEPOINT; when a concurrent transaction
  wins the unique index (group_key, is_open), the savepoint rolls back and the winner's
  incident is used instead, so two simultaneous deliveries open one incident;
- the incident row is locked (FOR UPDATE) for the rest of the unit of work, so concurrent
  deliveries into one incident apply one after the other and no aggregate is lost;
- an alert is applied only when its delivery is newer than the one that last changed it, so
  an out-of-order (older) notification never flips a resolved alert back to firing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.alerts.model import AlertBatch, NormalizedAlert
from bot.db.models import Alert, Incident
from bot.incidents import service
from bot.incidents.summary import AlertFacts, IncidentSummary, summarise
from bot.timeline import chain

ACTOR = "opsbot"


@dataclass(frozen=True)
class IntakeResult:
    incident_id: int
    opened: bool
    new_alerts: int
    repeated_alerts: int
    changed_alerts: int
    card_changed: bool


def _facts(alert: Alert) -> AlertFacts:
    return AlertFacts(alert.name, alert.status, alert.labels, alert.annotations, alert.generator_url)


def _card_fields(incident: Incident) -> tuple:
    return (
        incident.title, incident.severity, incident.status, incident.cluster, incident.namespace,
        incident.service, incident.alert_count, incident.firing_count, tuple(sorted(incident.links.items())),
    )


def _open_or_create(session: Session, batch: AlertBatch, now: datetime) -> tuple[Incident, bool]:
    existing = service.open_incident(session, batch.group_key, lock=True)
    if existing is not None:
        return existing, False
    first = batch.alerts[0]
    incident = Incident(
        group_key=batch.group_key, is_open=True, status="open", source=batch.source,
        title=first.name, severity="unknown", links={}, alert_count=0, firing_count=0,
        created_at=now, updated_at=now, card_version=1, card_synced_version=0, card_attempts=0,
    )
    try:
        with session.begin_nested():
            session.add(incident)
    except IntegrityError:
        winner = service.open_incident(session, batch.group_key, lock=True)
        if winner is None:
            raise
        return winner, False
    return incident, True


def _apply_alert(session: Session, incident: Incident, alert: NormalizedAlert, delivery_id: int,
                 now: datetime) -> str:
    """Insert or update one alert; returns 'new', 'repeat' or 'changed' (or 'stale')."""
    stored = service.find_alert(session, incident.id, alert.source, alert.fingerprint)
    if stored is None:
        session.add(Alert(
            incident_id=incident.id, source=alert.source, fingerprint=alert.fingerprint, name=alert.name,
            status=alert.status, labels=alert.labels, annotations=alert.annotations,
            starts_at=alert.starts_at, ends_at=alert.ends_at, generator_url=alert.generator_url,
            first_seen_at=now, last_seen_at=now, notification_count=1, last_delivery_id=delivery_id,
        ))
        return "new"
    if stored.last_delivery_id is not None and stored.last_delivery_id > delivery_id:
        return "stale"
    changed = (stored.status, stored.labels, stored.annotations) != (alert.status, alert.labels, alert.annotations)
    stored.status, stored.labels, stored.annotations = alert.status, alert.labels, alert.annotations
    stored.starts_at, stored.ends_at = alert.starts_at or stored.starts_at, alert.ends_at
    stored.generator_url = alert.generator_url or stored.generator_url
    stored.last_seen_at = now
    stored.notification_count += 1
    stored.last_delivery_id = delivery_id
    return "changed" if changed else "repeat"


def _apply_summary(incident: Incident, summary: IncidentSummary, now: datetime) -> None:
    incident.title = summary.title
    incident.severity = summary.severity
    incident.cluster, incident.namespace, incident.service = summary.cluster, summary.namespace, summary.service
    incident.alert_count, incident.firing_count = summary.alert_count, summary.firing_count
    incident.links = summary.links
    if summary.firing_count == 0 and incident.status == "open":
        incident.status, incident.resolved_at = "resolved", now
    elif summary.firing_count > 0 and incident.status == "resolved":
        incident.status, incident.resolved_at = "open", None


def ingest(session: Session, batch: AlertBatch, delivery_id: int, now: datetime) -> IntakeResult:
    """Apply one alert batch to its incident (opening it when needed) and record it."""
    incident, opened = _open_or_create(session, batch, now)
    before = None if opened else _card_fields(incident)
    outcomes = [_apply_alert(session, incident, alert, delivery_id, now) for alert in batch.alerts]
    session.flush()
    _apply_summary(incident, summarise([_facts(a) for a in service.alerts_of(session, incident.id)],
                                       batch.external_url), now)
    incident.updated_at = now
    card_changed = before != _card_fields(incident)
    if card_changed and not opened:
        incident.card_version += 1
    counts = {kind: outcomes.count(kind) for kind in ("new", "repeat", "changed", "stale")}
    if opened:
        chain.append(session, incident.id, "incident.opened", ACTOR,
                     {"group_key": batch.group_key, "source": batch.source, "title": incident.title}, now)
    if counts["new"] or counts["changed"]:
        chain.append(session, incident.id, "alerts.received", ACTOR,
                     {"delivery": delivery_id, "status": batch.status, **counts,
                      "firing": incident.firing_count, "total": incident.alert_count}, now)
    if incident.status == "resolved" and before is not None and before[2] == "open":
        chain.append(session, incident.id, "incident.resolved_by_source", ACTOR, {"delivery": delivery_id}, now)
    return IntakeResult(incident.id, opened, counts["new"], counts["repeat"], counts["changed"], card_changed)
