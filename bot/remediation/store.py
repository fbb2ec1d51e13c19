"""Queries on proposals, approvals and kill switches. No Slack, no Kubernetes.

Every status change is `transition`: a conditional UPDATE from the statuses it may leave (and,
for a worker holding a lease, on its own lease), whose rowcount says whether this caller won. Lock order, to keep PostgreSQL free of deadlocks: a
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
# A write may be in flight (or about to be): the policy's concurrency gate counts these per target.
IN_FLIGHT = ("running", "verifying", "rollback_requested", "rolling_back")
ACTIVE = ("approved", *IN_FLIGHT)
# Applied, verification impossible (no data): waits for a person's Accept or Roll back. Nothing is
# in flight, so it neither blocks its target nor counts as active; it does count as a run.
UNVERIFIED = "unverified"
# Unverified, and nobody decided within the buttons' window: final, the change stays as it is.
UNVERIFIED_EXPIRED = "unverified_expired"
RAN = ("running", "verifying", "succeeded", "failed", "rolled_back", "rollback_failed", UNVERIFIED, "accepted",
       "rollback_requested", "rolling_back", UNVERIFIED_EXPIRED)
FINAL = ("succeeded", "failed", "rolled_back", "rollback_failed", "rejected", "expired", "denied", "described",
         "accepted", UNVERIFIED_EXPIRED)
# Statuses whose worker holds a lease while it writes to the cluster: a lapsed lease means the
# worker died mid-step, and `bot.remediation.recovery` takes the step over (never re-applying it).
RECOVERABLE = ("running", "rolling_back")
# The result key that marks a rollback nobody asked for (after a failed verification, `on_failure:
# rollback`): it goes through `rolling_back` like a person's, without their buttons to come back to.
AUTO_ROLLBACK = "auto_rollback"


def transition(session: Session, proposal_id: int, from_statuses: tuple[str, ...], to_status: str, now: datetime,
               owner: str | None = None, **values: Any) -> bool:
    """Move one proposal on, only from one of `from_statuses` (and, with `owner`, only while that
    worker still holds the lease: a worker whose step was recovered by another loses); True for
    the one winner."""
    conditions = [Proposal.id == proposal_id, Proposal.status.in_(from_statuses)]
    if owner is not None:
        conditions.append(Proposal.lease_owner == owner)
    result = session.execute(
        update(Proposal).where(*conditions)
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
    query = select(func.count()).where(Proposal.target == target, Proposal.status.in_(IN_FLIGHT))
    if excluding is not None:
        query = query.where(Proposal.id != excluding)
    return session.execute(query).scalar_one()


def _claim(session: Session, waiting: str, to_status: str, now: datetime, owner: str, lease: timedelta, limit: int,
           **values: Any) -> list[int]:
    ids = list(session.execute(select(Proposal.id).where(Proposal.status == waiting).order_by(Proposal.id)
                               .limit(limit)).scalars())
    return [proposal_id for proposal_id in ids
            if transition(session, proposal_id, (waiting,), to_status, now, lease_owner=owner, lease_until=now + lease,
                          **values)]


def claim_executable(session: Session, now: datetime, owner: str, lease: timedelta, limit: int = 5) -> list[int]:
    """Approved proposals, claimed for running (a running one whose lease lapsed is never claimed
    again here: `recovery` decides what became of it)."""
    return _claim(session, "approved", "running", now, owner, lease, limit, started_at=now,
                  attempts=Proposal.attempts + 1)


def _waiting(session: Session, status: str) -> bool:
    return session.execute(select(Proposal.id).where(Proposal.status == status).limit(1)).first() is not None


def has_executable(session: Session) -> bool:
    """Whether any step waits to be claimed for running (checked before taking a write lock)."""
    return _waiting(session, "approved")


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


def lapsed(session: Session, now: datetime, limit: int = 10) -> list[int]:
    """Steps whose worker's lease lapsed while it was writing (it died or hung): to recover."""
    return list(session.execute(
        select(Proposal.id).where(Proposal.status.in_(RECOVERABLE), Proposal.lease_until < now)
        .order_by(Proposal.id).limit(limit)).scalars())


def claim_lapsed(session: Session, proposal_id: int, owner: str, now: datetime, until: datetime) -> str | None:
    """Take over a step whose lease lapsed: one conditional UPDATE on its status and the lapsed
    lease, so exactly one worker of all replicas recovers it. Its status when won, else None."""
    status = session.execute(select(Proposal.status).where(Proposal.id == proposal_id)).scalar_one_or_none()
    if status not in RECOVERABLE:
        return None
    result = session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status == status, Proposal.lease_until < now)
        .values(lease_owner=owner, lease_until=until).execution_options(synchronize_session=False))
    return status if result.rowcount == 1 else None


def renew(session: Session, proposal_id: int, status: str, owner: str, until: datetime, **values: Any) -> bool:
    """Extend `owner`'s lease (and write `values`, e.g. the intent of the write about to be sent)
    only while it still holds it: False when another worker recovered the step meanwhile, and
    then the caller must not write to the cluster."""
    result = session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status == status, Proposal.lease_owner == owner)
        .values(lease_until=until, **values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def undecided_past_window(session: Session, now: datetime, limit: int = 10) -> list[int]:
    """Unverified steps whose decision window ended (`next_check_at`, set to the end of the
    window when the step became unverified): to expire."""
    return list(session.execute(
        select(Proposal.id).where(Proposal.status == UNVERIFIED, Proposal.next_check_at <= now)
        .order_by(Proposal.next_check_at).limit(limit)).scalars())


def claim_rollbacks(session: Session, now: datetime, owner: str, lease: timedelta, limit: int = 5) -> list[int]:
    """Rollbacks a person asked for (`rollback_requested`), claimed for applying."""
    return _claim(session, "rollback_requested", "rolling_back", now, owner, lease, limit)


def has_rollbacks(session: Session) -> bool:
    return _waiting(session, "rollback_requested")


def ran_on_since(session: Session, target: str, since: datetime, excluding: int) -> int:
    """Steps started on `target` after `since` (other than `excluding`): a later change that a
    rollback of an earlier step would overwrite."""
    return session.execute(select(func.count()).where(
        Proposal.target == target, Proposal.id != excluding, Proposal.started_at.is_not(None),
        Proposal.started_at > since, Proposal.status.in_(RAN))).scalar_one()
