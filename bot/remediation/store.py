"""Queries on proposals, approvals and kill switches. No Slack, no Kubernetes.

Every status change is `transition`: a conditional UPDATE from the statuses it may leave, whose
rowcount says whether this caller won. Lock order, to keep PostgreSQL free of deadlocks: a
transaction touches the proposal row before the incident row (which `chain.append` locks). Two clicks, two replicas or a retried request racing on
one proposal: exactly one moves it, the others see 0 rows and report that it already moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db.models import KillSwitch, Proposal, ProposalApproval

OPEN = ("proposed",)
ACTIVE = ("approved", "running", "verifying")
RAN = ("running", "verifying", "succeeded", "failed", "rolled_back", "rollback_failed")
FINAL = ("succeeded", "failed", "rolled_back", "rollback_failed", "rejected", "expired", "denied", "described")


def transition(session: Session, proposal_id: int, from_statuses: tuple[str, ...], to_status: str, now: datetime,
               **values: Any) -> bool:
    """Move one proposal on, only from one of `from_statuses`; True for the one winner."""
    result = session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status.in_(from_statuses))
        .values(status=to_status, updated_at=now, message_version=Proposal.message_version + 1, **values)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def add_approval(session: Session, proposal_id: int, user: str, now: datetime) -> bool:
    """Record one person's approval; False when they already approved (unique key)."""
    try:
        with session.begin_nested():
            session.add(ProposalApproval(proposal_id=proposal_id, user_id=user, at=now))
        return True
    except IntegrityError:
        return False


def approvals(session: Session, proposal_id: int) -> list[ProposalApproval]:
    return list(session.execute(select(ProposalApproval).where(ProposalApproval.proposal_id == proposal_id)
                                .order_by(ProposalApproval.at)).scalars())


def of_incident(session: Session, incident_id: int) -> list[Proposal]:
    return list(session.execute(select(Proposal).where(Proposal.incident_id == incident_id)
                                .order_by(Proposal.id)).scalars())


def kill_switches(session: Session) -> frozenset[str]:
    return frozenset(session.execute(select(KillSwitch.scope)).scalars())


def set_kill_switch(session: Session, scope: str, reason: str, who: str, now: datetime) -> bool:
    """Turn a kill switch on; False when it already was."""
    if session.get(KillSwitch, scope) is not None:
        return False
    session.add(KillSwitch(scope=scope, reason=reason, set_by=who, set_at=now))
    return True


def clear_kill_switch(session: Session, scope: str) -> bool:
    return session.execute(delete(KillSwitch).where(KillSwitch.scope == scope)).rowcount == 1


def recent_runs(session: Session, since: datetime) -> tuple[tuple[str, str, str, datetime], ...]:
    rows = session.execute(select(Proposal.runbook_id, Proposal.target, Proposal.namespace, Proposal.started_at)
                           .where(Proposal.started_at.is_not(None), Proposal.started_at >= since,
                                  Proposal.status.in_(RAN)))
    return tuple((r.runbook_id, r.target, r.namespace or "", r.started_at) for r in rows)


def running_on(session: Session, target: str, excluding: int | None = None) -> int:
    query = select(func.count()).where(Proposal.target == target, Proposal.status.in_(("running", "verifying")))
    if excluding is not None:
        query = query.where(Proposal.id != excluding)
    return session.execute(query).scalar_one()


def claim_executable(session: Session, now: datetime, owner: str, lease: timedelta, limit: int = 5) -> list[int]:
    """Approved proposals (and running ones whose worker's lease lapsed), claimed for running."""
    ids = list(session.execute(select(Proposal.id).where(Proposal.status == "approved").order_by(Proposal.id)
                               .limit(limit)).scalars())
    won = []
    for proposal_id in ids:
        if transition(session, proposal_id, ("approved",), "running", now, lease_owner=owner, lease_until=now + lease,
                      started_at=now, attempts=Proposal.attempts + 1):
            won.append(proposal_id)
    return won


def has_executable(session: Session) -> bool:
    """Whether any step waits to be claimed for running (checked before taking a write lock)."""
    return session.execute(select(Proposal.id).where(Proposal.status == "approved").limit(1)).first() is not None


def due_verifications(session: Session, now: datetime, limit: int = 10) -> list[int]:
    return list(session.execute(
        select(Proposal.id).where(Proposal.status == "verifying", Proposal.next_check_at <= now,
                                  or_(Proposal.lease_until.is_(None), Proposal.lease_until < now))
        .order_by(Proposal.next_check_at).limit(limit)).scalars())


def lease(session: Session, proposal_id: int, status: str, owner: str, now: datetime, until: datetime) -> bool:
    result = session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status == status,
                               or_(Proposal.lease_until.is_(None), Proposal.lease_until < now))
        .values(lease_owner=owner, lease_until=until).execution_options(synchronize_session=False))
    return result.rowcount == 1


def expired(session: Session, now: datetime, limit: int = 20) -> list[int]:
    return list(session.execute(select(Proposal.id).where(Proposal.status == "proposed", Proposal.expires_at < now)
                                .limit(limit)).scalars())


def messages_due(session: Session, now: datetime, limit: int = 20) -> list[int]:
    return list(session.execute(
        select(Proposal.id).where(Proposal.message_synced_version < Proposal.message_version,
                                  Proposal.status != "observed",
                                  or_(Proposal.message_retry_at.is_(None), Proposal.message_retry_at <= now))
        .order_by(Proposal.id).limit(limit)).scalars())


def mark_message_synced(session: Session, proposal_id: int, version: int) -> None:
    session.execute(update(Proposal).where(Proposal.id == proposal_id, Proposal.message_synced_version < version)
                    .values(message_synced_version=version, message_retry_at=None)
                    .execution_options(synchronize_session=False))


def defer_message(session: Session, proposal_id: int, until: datetime) -> None:
    session.execute(update(Proposal).where(Proposal.id == proposal_id).values(message_retry_at=until)
                    .execution_options(synchronize_session=False))


def unfinished_of_incident(session: Session, incident_id: int) -> bool:
    return session.execute(select(func.count()).where(
        and_(Proposal.incident_id == incident_id, Proposal.status.in_(OPEN + ACTIVE)))).scalar_one() > 0
