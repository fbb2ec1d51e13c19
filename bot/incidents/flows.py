"""The intake stage: one alert batch becomes alerts in exactly one incident.

`ingest` is one unit of work in the caller's transaction. It is safe to run concurrently
for one group key (see `bot.incidents.lifecycle`: the incident row is locked for the rest of
the transaction, so deliveries into one incident apply one after the other and no aggregate
is lost) and safe against late or duplicated notifications:
- an alert is applied only when its delivery is newer than the one that last changed it;
- a firing state whose startsAt is not after the stored resolution is an older state (e.g.
  from another Alertmanager replica) and is ignored.
A batch loads only the alerts it names and writes them in at most three statements (see
`bot.incidents.alert_rows`); the card's fields come from SQL aggregates over columns derived
when each alert arrives (`summary.alert_scope`), so a batch costs a constant number of
statements, and no Python work grows with the incident's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.alerts.classify import AlertView, categorise_alert, combine_categories, escalated_severity
from bot.alerts.model import MAX_NAME, AlertBatch, NormalizedAlert
from bot.db.models import Incident
from bot.incidents import alert_rows, investigations, lifecycle, resolution, service, storm
from bot.incidents.alert_rows import NewAlert, StoredAlert
from bot.incidents.lifecycle import Windows
from bot.incidents.summary import AlertGroup, Lead, alert_scope, summarise_groups
from bot.timeline import chain

ACTOR = "opsbot"
DEFAULT_WINDOWS = Windows()  # frozen


@dataclass(frozen=True)
class IntakeResult:
    incident_id: int
    opened: bool
    new_alerts: int
    repeated_alerts: int
    changed_alerts: int
    card_changed: bool


def _card_fields(incident: Incident) -> tuple:
    return (
        incident.title, incident.severity, incident.category, incident.status, incident.cluster,
        incident.namespace, incident.service, incident.alert_count, incident.firing_count,
        tuple(sorted(incident.links.items())), incident.related_incident_id, incident.acknowledged_by,
    )


def _category(alert: NormalizedAlert) -> str:
    return categorise_alert(AlertView(alert.name, alert.status, alert.labels, alert.annotations))


def _apply_alert(stored: dict[tuple[str, str], StoredAlert | NewAlert], new: list[NewAlert], incident: Incident,
                 alert: NormalizedAlert, delivery_id: int, now: datetime) -> str:
    """Apply one alert to the rows in `stored` (written by `alert_rows.write` afterwards);
    returns 'new', 'repeat', 'changed' or 'stale'. Each alert's category and scope are computed
    when it arrives or changes, never again. A batch counts as one notification of each alert
    it names, even one it names twice (Alertmanager never does)."""
    current = stored.get((alert.source, alert.fingerprint))
    if current is None:
        record = NewAlert(
            incident_id=incident.id, source=alert.source, fingerprint=alert.fingerprint, name=alert.name[:MAX_NAME],
            status=alert.status, category=_category(alert), **vars(alert_scope(alert.labels, alert.fingerprint)),
            labels=alert.labels, annotations=alert.annotations,
            starts_at=alert.starts_at, ends_at=alert.ends_at, generator_url=alert.generator_url,
            first_seen_at=now, last_seen_at=now, notification_count=1, last_delivery_id=delivery_id,
        )
        new.append(record)
        stored[(alert.source, alert.fingerprint)] = record
        return "new"
    if isinstance(current, NewAlert):
        return "repeat"  # the same alert twice in one batch
    if current.last_delivery_id is not None and current.last_delivery_id > delivery_id:
        return "stale"
    if (alert.status == "firing" and current.status == "resolved" and current.ends_at and alert.starts_at
            and alert.starts_at <= current.ends_at):
        return "stale"
    current.touched = True
    if (current.status, current.labels, current.annotations) == (alert.status, alert.labels, alert.annotations):
        return "repeat"
    current.changed = True
    current.status, current.labels, current.annotations = alert.status, alert.labels, alert.annotations
    current.category = _category(alert)
    for field, value in vars(alert_scope(alert.labels, alert.fingerprint)).items():
        setattr(current, field, value)
    current.starts_at, current.ends_at = alert.starts_at or current.starts_at, alert.ends_at
    current.generator_url = alert.generator_url or current.generator_url
    return "changed"


def refresh(session: Session, incident: Incident, external_url: str | None, now: datetime,
            windows: Windows = DEFAULT_WINDOWS, newly_firing: bool = True,
            reopen_reason: str = "an alert fires again") -> None:
    """Recompute what the card shows from aggregates over all of the incident's alerts
    (flushed first, so this batch's changes count). Every alert resolved resolves the incident
    (by its source); a resolved incident reopens only when an alert starts firing
    (`newly_firing`), so the repeat notifications of alerts still firing when a person resolved
    it do not undo that. A severity a person set stays until a person changes it."""
    session.flush()
    facts = service.card_facts(session, incident.id)
    rows = facts.groups
    groups = [AlertGroup(row.name, row.status, row.severity, row.cluster, row.namespace, row.service, row.count)
              for row in rows]
    summary = summarise_groups(groups, Lead(facts.lead_annotations or {}, facts.lead_generator_url), external_url)
    firing = [row for row in rows if row.status == "firing"]
    targets = facts.firing_targets
    incident.title = summary.title
    if storm.is_storm(incident.group_key):
        incident.title = storm.title(summary.cluster, summary.title)
    incident.category = combine_categories(row.category or "other" for row in (firing or rows))
    if not incident.severity_by:
        incident.severity = escalated_severity(summary.severity, summary.firing_count, targets)
    incident.cluster, incident.namespace, incident.service = summary.cluster, summary.namespace, summary.service
    incident.alert_count, incident.firing_count = summary.alert_count, summary.firing_count
    incident.links = {**incident.links, **summary.links} if incident.source == "pagerduty" else summary.links
    if summary.firing_count == 0 and incident.status == "open":
        resolution.mark_resolved(session, incident, resolution.SOURCE, ACTOR, now, windows.postmortem_grace,
                                 "every alert resolved")
    elif summary.firing_count > 0 and incident.status == "resolved" and newly_firing:
        resolution.mark_reopened(session, incident, resolution.SOURCE, ACTOR, now, reopen_reason)


def _queue_note(incident: Incident, counts: dict[str, int], resolved_now: int, status_before: str | None,
                severity_before: str | None) -> bool:
    """Accumulate what the next thread note will say (the card worker posts it, debounced);
    True when there is something new to say. A storm thread gets no counting notes: its card
    counts, and every card edit it gives up to a note would leave newly folded groups unshown
    for another interval."""
    note = dict(incident.note_pending or {})
    counting = not storm.is_storm(incident.group_key)
    firing_new = counts["new_firing"] if counting else 0
    if firing_new:
        note["new_firing"] = note.get("new_firing", 0) + firing_new
    if resolved_now and counting:
        note["resolved"] = note.get("resolved", 0) + resolved_now
    if status_before == "resolved" and incident.status == "open":
        note["reopened"] = True
    if severity_before and incident.severity != severity_before and incident.severity in ("high", "critical"):
        note["escalated"] = incident.severity
    if note == (incident.note_pending or {}):
        return False
    incident.note_pending = note
    return True


def _record(session: Session, incident: Incident, batch: AlertBatch, delivery_id: int, now: datetime,
            placement: lifecycle.Placement, status_before: str | None, counts: dict[str, int]) -> None:
    """Timeline entries for what this batch changed (a pure repeat writes none). The incident
    is locked by `lifecycle.place` for this transaction, so its timeline head is current."""

    def note(kind: str, payload: dict) -> None:
        chain.append(session, incident.id, kind, ACTOR, payload, now, locked=incident)

    if placement.opened:
        follows = {"follows": f"INC-{placement.previous_id}"} if placement.previous_id else {}
        note("incident.opened", {"group_key": batch.group_key, "source": batch.source, "title": incident.title,
                                 "category": incident.category, **follows})
        if incident.related_incident_id:
            note("incident.possibly_related", {"related": f"INC-{incident.related_incident_id}"})
    if counts["new"] or counts["changed"]:
        note("alerts.received", {"delivery": delivery_id, "status": batch.status,
                                 **{key: counts[key] for key in ("new", "repeat", "changed", "stale")},
                                 "firing": incident.firing_count, "total": incident.alert_count})


def desired_pagerduty_status(incident: Incident) -> str | None:
    """What PagerDuty should show for an incident opsbot mirrors there (None: not mirrored)."""
    if incident.source == "pagerduty":
        return None  # it came from PagerDuty; never mirror it back
    if incident.is_open and incident.status == "open":
        return "acknowledged" if incident.acknowledged_by else "triggered"
    return "resolved" if incident.pagerduty_status_wanted else None


def ingest(session: Session, batch: AlertBatch, delivery_id: int, now: datetime,
           windows: Windows = DEFAULT_WINDOWS, mirror_pagerduty: bool = False) -> IntakeResult:
    """Apply one alert batch to its incident (opening it when needed) and record it.
    With `mirror_pagerduty`, the incident's wanted PagerDuty status follows it (the
    PagerDuty sync stage brings PagerDuty there)."""
    placement = lifecycle.place(session, batch, now, windows)
    incident = placement.incident
    before = None if placement.opened else _card_fields(incident)
    status_before = None if placement.opened else incident.status
    severity_before = None if placement.opened else incident.severity
    loaded = alert_rows.load(session, incident.id, {alert.fingerprint for alert in batch.alerts})
    stored: dict[tuple[str, str], StoredAlert | NewAlert] = {(alert.source, alert.fingerprint): alert
                                                             for alert in loaded}
    firing_before = {key for key, alert in stored.items() if alert.status == "firing"}
    new: list[NewAlert] = []
    outcomes = [_apply_alert(stored, new, incident, alert, delivery_id, now) for alert in batch.alerts]
    alert_rows.write(session, loaded, new, delivery_id, now)
    counts = {kind: outcomes.count(kind) for kind in ("new", "repeat", "changed", "stale")}
    firing_after = {key for key, alert in stored.items() if alert.status == "firing"}
    counts["new_firing"] = len(firing_after - firing_before)
    refresh(session, incident, batch.external_url, now, windows, newly_firing=counts["new_firing"] > 0)
    incident.updated_at = now
    note_changed = False
    if placement.opened:
        related = lifecycle.find_related(session, incident, now, windows)
        incident.related_incident_id = related.id if related is not None else None
        investigations.schedule(session, incident.id, now, windows.settle)  # same transaction: never lost
    else:
        note_changed = _queue_note(incident, counts, len(firing_before - firing_after), status_before,
                                   severity_before)
    card_changed = before != _card_fields(incident) or note_changed
    if card_changed and not placement.opened:
        incident.card_version += 1
    _record(session, incident, batch, delivery_id, now, placement, status_before, counts)
    if mirror_pagerduty and (placement.opened or status_before != incident.status):
        # only on a transition: a repeat must not undo a resolve a person made in PagerDuty
        incident.pagerduty_status_wanted = desired_pagerduty_status(incident)
    return IntakeResult(incident.id, placement.opened, counts["new"], counts["repeat"], counts["changed"],
                        card_changed)
