"""Merging one incident into another, when a person clicks Merge on a "possibly related" card.

Re-checked at click time, in one transaction with both incidents locked in id order (so two
opposite merges clicked at once cannot deadlock or cross): both must still be open and
distinct. The source's alerts move to the target (an alert both hold stays with the target),
the source closes as `merged` with a pointer to the target, and both timelines record who
merged what. Who may click Merge is the policy's (`bot.policy.roles.merge_refusal`). Later
alerts for the source's group key follow the pointer (see lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.locks import ROW_LOCK
from bot.db.models import Incident
from bot.incidents import flows, service
from bot.timeline import chain


class MergeRefused(Exception):
    """The merge cannot happen; the message is shown to the person who clicked."""


@dataclass(frozen=True)
class MergeResult:
    source_id: int
    target_id: int
    moved_alerts: int


def merge(session: Session, source_id: int, target_id: int, actor: str, now: datetime,
          as_suggested: bool = False) -> MergeResult:
    """Fold `source_id` into `target_id`. With `as_suggested` (a click on the card's Merge
    button), only into the incident the source's card suggests now: a stale button whose
    suggestion has changed merges nothing."""
    if source_id == target_id:
        raise MergeRefused("an incident cannot be merged into itself")
    locked = {
        incident.id: incident
        for incident in session.execute(
            select(Incident).where(Incident.id.in_(sorted({source_id, target_id}))).order_by(Incident.id)
            .with_for_update(**ROW_LOCK)
        ).scalars()
    }
    source, target = locked.get(source_id), locked.get(target_id)
    if source is None or target is None:
        raise MergeRefused(f"INC-{source_id if source is None else target_id} does not exist")
    for incident in (source, target):
        if not incident.is_open:
            raise MergeRefused(f"{incident.reference} is already {incident.status}: nothing was merged")
    if as_suggested and source.related_incident_id != target.id:
        raise MergeRefused(f"{source.reference} does not suggest merging into {target.reference}: nothing was merged")
    target_alerts = {(alert.source, alert.fingerprint): alert for alert in service.alerts_of(session, target.id)}
    moved = 0
    for alert in service.alerts_of(session, source.id):
        held = target_alerts.get((alert.source, alert.fingerprint))
        if held is None:
            alert.incident_id = target.id
            moved += 1
        elif (alert.last_delivery_id or 0) > (held.last_delivery_id or 0):
            session.delete(held)  # both track it: keep the newer state
            session.flush()
            alert.incident_id = target.id
            moved += 1
        else:
            session.delete(alert)
    session.flush()
    flows.refresh(session, target, target.links.get("alertmanager"), now,
                  reopen_reason=f"{source.reference} was merged into it and its alerts fire")
    target.updated_at = now
    target.note_pending = {**(target.note_pending or {}), "merged": source.reference}
    target.card_version += 1
    source.is_open, source.status, source.merged_into_id = None, "merged", target.id
    source.firing_count = 0
    source.card_version += 1
    if source.pagerduty_status_wanted:
        source.pagerduty_status_wanted = "resolved"
    chain.append(session, source.id, "incident.merged_into", actor, {"into": target.reference, "alerts": moved}, now)
    chain.append(session, target.id, "incident.merged_from", actor, {"from": source.reference, "alerts": moved},
                 now)
    return MergeResult(source.id, target.id, moved)


def parse_merge_value(value: str) -> tuple[int, int]:
    """The button's `source:target` ids; MergeRefused for anything else."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(part.isdigit() and len(part) <= 18 for part in parts):
        raise MergeRefused("this button is malformed: nothing was merged")
    return int(parts[0]), int(parts[1])
