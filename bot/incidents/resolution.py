"""The one place an incident's status moves between open and resolved, whoever moves it.

Resolved by its source (every alert resolved, `flows.refresh`), by a person (the Resolve button,
`/ops resolve`) or reopened by either: each writes the same timeline entry (`incident.resolved`,
`incident.reopened`) with who did it, and each resolution counts (`incident.resolutions`) and
schedules that resolution's postmortem (`bot.postmortem.stage.schedule`) in the same
transaction, so no resolution can be left without one. Callers hold the incident's row lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.db.models import Incident
from bot.postmortem.stage import schedule
from bot.timeline import chain

SOURCE = "source"  # `resolved_by` when every alert resolved


def mark_resolved(session: Session, incident: Incident, by: str, actor: str, now: datetime, grace: timedelta,
                  reason: str, note: str | None = None) -> None:
    """`by`: who or what resolved it (`source`, or the person's name); `actor`: the timeline's
    actor (`opsbot`, `slack:U…`)."""
    incident.status, incident.resolved_at = "resolved", now
    incident.resolved_by, incident.resolution_note = by[:256], (note or None)
    details = {"by": by, "reason": reason, **({"note": note} if note else {})}
    chain.append(session, incident.id, "incident.resolved", actor, details, now, locked=incident)
    schedule(session, incident, now, grace)


def mark_reopened(session: Session, incident: Incident, by: str, actor: str, now: datetime, reason: str) -> None:
    """Back to open: the resolution's postmortem, if not posted yet, waits for the next one."""
    incident.status, incident.resolved_at = "open", None
    incident.resolved_by = incident.resolution_note = None
    chain.append(session, incident.id, "incident.reopened", actor, {"by": by, "reason": reason}, now,
                 locked=incident)
