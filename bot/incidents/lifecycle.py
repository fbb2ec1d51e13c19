"""Which incident a batch belongs to: open, reopen, close after quiet, follow a merge, relate.

Invariants (all in the caller's transaction):
- the incident returned is locked (FOR UPDATE) until the transaction ends;
- a new group key's incident is inserted inside a SAVEPOINT: when a concurrent transaction
  wins the unique index (group_key_hash, is_open), the savepoint rolls back and the winner's
  incident is used, so simultaneous deliveries open one incident;
- an incident is closed (is_open NULL) only here or by a merge, never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.alerts.fingerprints import key_hash
from bot.alerts.model import AlertBatch
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident
from bot.incidents import service, storm
from bot.timeline import chain

ACTOR = "opsbot"
MAX_MERGE_HOPS = 10


@dataclass(frozen=True)
class Windows:
    """reopen: a resolved incident firing again within it reopens; later, a new one opens.
    quiet: an open incident that heard nothing for this long is closed when a batch arrives,
    and the batch opens a new, linked incident. related: incidents opened this close together
    in one cluster and service or namespace are shown as possibly related. settle: a new
    incident is investigated this long after it opens (more of its alerts may be on the way).
    postmortem_grace: the postmortem is posted this long after the incident resolves.
    storm_incidents, storm: a new alert group is folded into its cluster's storm incident when
    this many incidents opened in that cluster within this window are open (see
    `bot.incidents.storm`; 0 incidents turns folding off)."""

    reopen: timedelta = timedelta(hours=1)
    quiet: timedelta = timedelta(hours=6)
    related: timedelta = timedelta(minutes=15)
    settle: timedelta = timedelta(0)
    postmortem_grace: timedelta = timedelta(seconds=15)
    storm_incidents: int = 5
    storm: timedelta = timedelta(minutes=3)


@dataclass(frozen=True)
class Placement:
    incident: Incident
    opened: bool
    previous_id: int | None = None


def _firing(batch: AlertBatch) -> bool:
    return any(alert.status == "firing" for alert in batch.alerts)


def _stale_reason(incident: Incident, now: datetime, windows: Windows) -> str | None:
    if incident.status == "resolved" and incident.resolved_at and now - incident.resolved_at >= windows.reopen:
        return "resolved and quiet"
    if incident.status == "open" and now - incident.updated_at >= windows.quiet:
        return "no notification for the quiet window"
    return None


def close(session: Session, incident: Incident, status: str, reason: str, now: datetime, **details) -> None:
    incident.is_open, incident.status = None, status
    incident.card_version += 1
    if incident.pagerduty_status_wanted:
        incident.pagerduty_status_wanted = "resolved"
    chain.append(session, incident.id, f"incident.{status}", ACTOR, {"reason": reason, **details}, now)
    session.flush()


def _follow_merges(session: Session, incident: Incident) -> Incident | None:
    """The open incident a merged one was folded into (through chains of merges)."""
    for _ in range(MAX_MERGE_HOPS):
        if incident.merged_into_id is None:
            return None
        target = session.execute(
            select(Incident).where(Incident.id == incident.merged_into_id).with_for_update(**ROW_LOCK)
        ).scalar_one_or_none()
        if target is None:
            return None
        if target.is_open:
            return target
        incident = target
    return None


def _insert(session: Session, batch: AlertBatch, now: datetime, previous_id: int | None) -> Placement:
    incident = Incident(
        group_key=batch.group_key, group_key_hash=key_hash(batch.group_key), is_open=True, status="open",
        source=batch.source, title=batch.alerts[0].name[:300], severity="unknown", links={}, alert_count=0,
        firing_count=0, created_at=now, updated_at=now, card_version=1, card_synced_version=0,
        card_attempts=0, category="other", note_pending={}, previous_incident_id=previous_id,
    )
    try:
        with session.begin_nested():
            session.add(incident)
    except IntegrityError:
        winner = service.open_incident(session, batch.group_key, lock=True)
        if winner is None:
            raise
        return Placement(winner, opened=False)
    return Placement(incident, opened=True, previous_id=previous_id)


def _continue_or_succeed(session: Session, incident: Incident, batch: AlertBatch, now: datetime,
                         windows: Windows) -> Placement:
    """The open `incident` takes the batch, unless the batch fires after the incident went
    stale: then it is closed and a successor naming it opens."""
    reason = _stale_reason(incident, now, windows) if _firing(batch) else None
    if reason is None:
        return Placement(incident, opened=False)
    close(session, incident, "closed", reason, now)
    return _insert(session, batch, now, previous_id=incident.id)


def place(session: Session, batch: AlertBatch, now: datetime, windows: Windows) -> Placement:
    """The incident this batch belongs to, opening (or reopening) one when needed."""
    batch = storm.sender_key(batch)
    existing = service.open_incident(session, batch.group_key, lock=True)
    if existing is not None:
        return _continue_or_succeed(session, existing, batch, now, windows)
    latest = service.latest_closed_incident(session, batch.group_key, lock=True)
    if latest is not None:
        target = _follow_merges(session, latest)
        if target is not None:
            return _continue_or_succeed(session, target, batch, now, windows)
        if not _firing(batch):
            return Placement(latest, opened=False)  # a late resolve belongs to what it resolves
    cluster = storm.batch_cluster(batch)
    if (_firing(batch) and batch.source in storm.FOLDED_SOURCES
            and storm.in_storm(session, cluster, now, windows.storm, windows.storm_incidents)):
        return _fold_into_storm(session, batch, now, cluster, windows)
    return _insert(session, batch, now, previous_id=latest.id if latest is not None else None)


def _fold_into_storm(session: Session, batch: AlertBatch, now: datetime, cluster: str | None,
                     windows: Windows) -> Placement:
    """A new group during its cluster's storm: its alerts go to the storm incident (opened now
    on the first fold), and the group gets a merged row pointing there."""
    storm_batch = replace(batch, group_key=storm.storm_key(cluster))
    existing = service.open_incident(session, storm_batch.group_key, lock=True)
    if existing is not None:
        placement = _continue_or_succeed(session, existing, storm_batch, now, windows)
    else:
        placement = _insert(session, storm_batch, now, previous_id=None)
    storm.fold_member(session, batch, placement.incident, cluster, now)
    return placement


def find_related(session: Session, incident: Incident, now: datetime, windows: Windows) -> Incident | None:
    """Another open incident in the same cluster sharing the service or namespace, opened
    within the related window: a suggestion for people (with a Merge button), never a merge."""
    if not incident.namespace and not incident.service:
        return None  # a shared cluster alone is too broad to suggest anything
    scope = []
    if incident.service:
        scope.append(Incident.service == incident.service)
    if incident.namespace:
        scope.append(Incident.namespace == incident.namespace)
    query = (
        select(Incident)
        .where(
            Incident.id != incident.id,
            Incident.status == "open",
            Incident.created_at >= now - windows.related,
            Incident.cluster.is_(None) if incident.cluster is None else Incident.cluster == incident.cluster,
        )
        .where(scope[0] if len(scope) == 1 else (scope[0] | scope[1]))
        .order_by(Incident.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()
