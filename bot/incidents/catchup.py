"""The catch-up: where an incident stands, in one message a late joiner can read.

`catchup_view` reads it from the database (queries only): status, commander, severity, the
cause in a line (the latest RCA's first hypothesis, or "unknown"), the steps run with their
outcome, the latest status update, and the open follow-ups. `wanted` says whether the thread
should carry one: from the first thing a person did beyond acknowledging (a commander, a status
update, a follow-up, a severity they set, a resolution). The card worker keeps that one
message up to date in place (`bot.incidents.thread`); `/ops catchup INC-N` shows the same view
to one person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import FollowUp, Incident, Investigation, Proposal

MAX_STEPS = 5
MAX_FOLLOW_UPS = 5


@dataclass(frozen=True)
class CatchUpView:
    reference: str
    title: str
    status: str
    severity: str
    commander: str | None
    acknowledged_by: str | None
    cause: str
    steps: list[str] = field(default_factory=list)
    latest_update: str | None = None
    latest_update_by: str | None = None
    latest_update_at: datetime | None = None
    follow_ups: list[tuple[str, str | None]] = field(default_factory=list)  # (F-N text, owner's Slack id)
    open_follow_ups: int = 0
    resolved_by: str | None = None


def _cause(session: Session, incident_id: int) -> str:
    investigation = session.execute(select(Investigation).where(Investigation.incident_id == incident_id)
                                    .order_by(Investigation.round.desc())).scalars().first()
    if investigation is None or investigation.status in ("pending", "running"):
        return "being investigated"
    report = investigation.result or {}
    hypotheses = report.get("hypotheses") or []
    if investigation.status != "done" or not hypotheses:
        return "unknown (no root cause analysis)" if investigation.status != "done" else "unknown"
    top = hypotheses[0]
    if top.get("category") == "unknown" or report.get("inconclusive"):
        return "unknown: " + str(top.get("summary") or "nothing explains the symptoms")
    return f"{top.get('category')} on {top.get('resource')}: {top.get('summary')}"


def _steps(session: Session, incident_id: int) -> list[str]:
    rows = session.execute(select(Proposal).where(Proposal.incident_id == incident_id)
                           .order_by(Proposal.id)).scalars().all()
    return [f"P-{p.id} {p.runbook_id} on {p.target}: {p.status.replace('_', ' ')}" for p in rows][-MAX_STEPS:]


def wanted(session: Session, incident: Incident) -> bool:
    if incident.commander or incident.latest_update or incident.severity_by or incident.resolutions:
        return True
    return session.execute(select(FollowUp.id).where(FollowUp.incident_id == incident.id).limit(1)).first() is not None


def catchup_view(session: Session, incident: Incident) -> CatchUpView:
    follow_ups = session.execute(select(FollowUp).where(FollowUp.incident_id == incident.id,
                                                        FollowUp.closed_at.is_(None))
                                 .order_by(FollowUp.id)).scalars().all()
    return CatchUpView(
        reference=incident.reference, title=incident.title, status=incident.status, severity=incident.severity,
        commander=incident.commander, acknowledged_by=incident.acknowledged_by,
        cause=_cause(session, incident.id), steps=_steps(session, incident.id),
        latest_update=incident.latest_update, latest_update_by=incident.latest_update_by,
        latest_update_at=incident.latest_update_at,
        follow_ups=[(f"F-{f.id} {f.text}", f.owner) for f in follow_ups[:MAX_FOLLOW_UPS]],
        open_follow_ups=len(follow_ups), resolved_by=incident.resolved_by,
    )
