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
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.alerts.fingerprints import key_hash
from bot.alerts.model import MAX_NAME, AlertBatch, NormalizedAlert
from bot.db.models import Alert, Incident
from bot.incidents import service
from bot.incidents.summary import AlertFacts, IncidentSummary, summarise
from bot.timeline import chain

ACTOR = "opsbot"
DEFAULT_REOPEN_WINDOW = timedelta(hours=1)


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


def _close_if_quiet(session: Session, incident: Incident, batch: AlertBatch, now: datetime,
                    reopen_window: timedelta) -> bool:
    """Close a resolved incident whose quiet period has passed and that this batch re-fires,
    so the new problem gets a thread of its own (with a notification) instead of an edit to
    an old message nobody is looking at."""
    if incident.status != "resolved" or incident.resolved_at is None or now - incident.resolved_at < reopen_window:
        return False
    if not any(alert.status == "firing" for alert in batch.alerts):
        return False
    incident.is_open, incident.status = None, "closed"
    incident.card_version += 1
    chain.append(session, incident.id, "incident.closed", ACTOR,
                 {"reason": "quiet after resolution", "quiet_seconds": int((now - incident.resolved_at).total_seconds())},
                 now)
    session.flush()
    return True


def _open_or_create(session: Session, batch: AlertBatch, now: datetime,
                    reopen_window: timedelta) -> tuple[Incident, bool, int | None]:
    """The incident for the batch (locked), whether it was just opened, and the id of the
    incident it replaces when a quiet resolved one was closed."""
    existing = service.open_incident(session, batch.group_key, lock=True)
    previous = None
    if existing is None and not any(alert.status == "firing" for alert in batch.alerts):
        closed = service.latest_closed_incident(session, batch.group_key, lock=True)
        if closed is not None:
            return closed, False, None  # a late resolve belongs to the incident it resolves
    if existing is not None:
        if not _close_if_quiet(session, existing, batch, now, reopen_window):
            return existing, False, None
        previous = existing.id
    first = batch.alerts[0]
    incident = Incident(
        group_key=batch.group_key, group_key_hash=key_hash(batch.group_key), is_open=True, status="open",
        source=batch.source,
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
        return winner, False, None
    return incident, True, previous


def _apply_alert(session: Session, incident: Incident, alert: NormalizedAlert, delivery_id: int,
                 now: datetime) -> str:
    """Insert or update one alert; returns 'new', 'repeat' or 'changed' (or 'stale')."""
    stored = service.find_alert(session, incident.id, alert.source, alert.fingerprint)
    if stored is None:
        session.add(Alert(
            incident_id=incident.id, source=alert.source, fingerprint=alert.fingerprint, name=alert.name[:MAX_NAME],
            status=alert.status, labels=alert.labels, annotations=alert.annotations,
            starts_at=alert.starts_at, ends_at=alert.ends_at, generator_url=alert.generator_url,
            first_seen_at=now, last_seen_at=now, notification_count=1, last_delivery_id=delivery_id,
        ))
        return "new"
    if stored.last_delivery_id is not None and stored.last_delivery_id > delivery_id:
        return "stale"
    if (alert.status == "firing" and stored.status == "resolved" and stored.ends_at and alert.starts_at
            and alert.starts_at <= stored.ends_at):
        return "stale"  # an older state of the same firing (e.g. from another Alertmanager replica)
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


def _record(session: Session, incident: Incident, batch: AlertBatch, delivery_id: int, now: datetime,
            opened: bool, previous: int | None, status_before: str | None, counts: dict[str, int]) -> None:
    """Timeline entries for what this batch changed (a pure repeat writes none)."""
    if opened:
        chain.append(session, incident.id, "incident.opened", ACTOR,
                     {"group_key": batch.group_key, "source": batch.source, "title": incident.title,
                      **({"follows": f"INC-{previous}"} if previous else {})}, now)
    if counts["new"] or counts["changed"]:
        chain.append(session, incident.id, "alerts.received", ACTOR,
                     {"delivery": delivery_id, "status": batch.status, **counts,
                      "firing": incident.firing_count, "total": incident.alert_count}, now)
    if status_before == "open" and incident.status == "resolved":
        chain.append(session, incident.id, "incident.resolved_by_source", ACTOR, {"delivery": delivery_id}, now)
    elif status_before == "resolved" and incident.status == "open":
        chain.append(session, incident.id, "incident.reopened", ACTOR, {"delivery": delivery_id}, now)


def ingest(session: Session, batch: AlertBatch, delivery_id: int, now: datetime,
           reopen_window: timedelta = DEFAULT_REOPEN_WINDOW) -> IntakeResult:
    """Apply one alert batch to its incident (opening it when needed) and record it.

    A resolved incident that fires again within `reopen_window` is reopened in place; after
    that window it is closed and the batch opens a new incident that names its predecessor.
    """
    incident, opened, previous = _open_or_create(session, batch, now, reopen_window)
    before = None if opened else _card_fields(incident)
    status_before = None if opened else incident.status
    outcomes = [_apply_alert(session, incident, alert, delivery_id, now) for alert in batch.alerts]
    session.flush()
    _apply_summary(incident, summarise([_facts(a) for a in service.alerts_of(session, incident.id)],
                                       batch.external_url), now)
    incident.updated_at = now
    card_changed = before != _card_fields(incident)
    if card_changed and not opened:
        incident.card_version += 1
    counts = {kind: outcomes.count(kind) for kind in ("new", "repeat", "changed", "stale")}
    _record(session, incident, batch, delivery_id, now, opened, previous, status_before, counts)
    return IntakeResult(incident.id, opened, counts["new"], counts["repeat"], counts["changed"], card_changed)
