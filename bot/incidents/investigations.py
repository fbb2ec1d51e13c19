"""Queries on the investigations table: schedule, claim, finish, lease the post. No Slack, no I/O.

Every state change is a conditional UPDATE whose rowcount says whether this worker won, so two
workers or two replicas never run or post the same investigation twice:
- claim: `pending`, or `running` with a lapsed lease (its worker died), becomes `running`;
- finish / fail: only while the lease is still ours;
- post lease: a `done`, unposted investigation whose post lease is free or lapsed;
- give up: a `running` one whose lease lapsed after its last attempt (its worker died or hung
  each time) becomes `failed`, as `fail` makes one that raised on its last attempt;
- tell: a `failed` or `skipped` one, once its incident's card is in Slack, queues a thread
  note saying the RCA could not be made and why (`posted_at` then means "the thread was told").
  Every give-up and every skip (alerts that name no Kubernetes object, nothing configured to
  read) is told exactly once, so the thread is never silent about an RCA that will not come.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from bot.db.locks import ROW_LOCK
from bot.db.models import Alert, Incident, Investigation, SlackMessage
from bot.redaction import redact, redact_data
from bot.timeline import chain

MAX_ATTEMPTS = 3
ACTOR = "opsbot"
NOTE_FLAG = "rca_failed"  # the thread note's key in `incident.note_pending` (bot.slack.render.notes)
INTERRUPTED = "its worker stopped or timed out before finishing"
MAX_REASON_CHARS = 300


def schedule(session: Session, incident_id: int, now: datetime, settle: timedelta = timedelta(0)) -> None:
    """Create the incident's first investigation (in the intake transaction that opened it)."""
    session.add(Investigation(incident_id=incident_id, round=1, status="pending", not_before=now + settle,
                              attempts=0, created_at=now, post_attempts=0))


def _claimable(now: datetime):
    return and_(Investigation.not_before <= now, Investigation.attempts < MAX_ATTEMPTS, or_(
        Investigation.status == "pending",
        and_(Investigation.status == "running", Investigation.lease_until < now)))


def due(session: Session, now: datetime, limit: int = 10) -> list[int]:
    return list(session.execute(
        select(Investigation.id).where(_claimable(now)).order_by(Investigation.not_before, Investigation.id).limit(limit)
    ).scalars())


def claim(session: Session, investigation_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    result = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, _claimable(now))
        .values(status="running", lease_owner=owner, lease_until=now + lease, attempts=Investigation.attempts + 1,
                started_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def finish(session: Session, investigation_id: int, owner: str, result: dict, now: datetime,
           status: str = "done") -> bool:
    """Store the result (`done`, or `skipped`: nothing to investigate, nothing to post),
    redacted here whatever the caller did: no secret is ever written to the row."""
    done = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, Investigation.lease_owner == owner,
                                    Investigation.status == "running")
        .values(status=status, result=redact_data(result), finished_at=now, lease_owner=None, lease_until=None, error=None)
        .execution_options(synchronize_session=False))
    return done.rowcount == 1


def fail(session: Session, investigation_id: int, owner: str, error: str, now: datetime, retry_in: timedelta) -> str:
    """Back to pending with a delay, or `failed` after MAX_ATTEMPTS; returns the new status.
    The error (an exception's message can quote a secret) is stored redacted."""
    row = session.get(Investigation, investigation_id)
    status = "failed" if row is not None and row.attempts >= MAX_ATTEMPTS else "pending"
    session.execute(
        update(Investigation).where(Investigation.id == investigation_id, Investigation.lease_owner == owner)
        .values(status=status, error=redact(error)[:2000], lease_owner=None, lease_until=None, not_before=now + retry_in,
                finished_at=now if status == "failed" else None)
        .execution_options(synchronize_session=False))
    return status


def _abandoned(now: datetime):
    return and_(Investigation.status == "running", Investigation.lease_until < now,
                Investigation.attempts >= MAX_ATTEMPTS)


def abandoned(session: Session, now: datetime, limit: int = 10) -> list[int]:
    """Investigations whose last attempt never ended (no claim will take them again)."""
    return list(session.execute(select(Investigation.id).where(_abandoned(now)).order_by(Investigation.id)
                                .limit(limit)).scalars())


def give_up(session: Session, investigation_id: int, now: datetime) -> bool:
    """Mark an abandoned investigation `failed` (conditional: one worker wins)."""
    result = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, _abandoned(now))
        .values(status="failed", error=INTERRUPTED, lease_owner=None, lease_until=None, finished_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _untold():
    """Failed, the thread not told yet, its card in Slack (a note queued before the card is
    posted would be absorbed by the card's first post, and never said) and its incident still
    open (failures from before this note existed, or of closed incidents, stay quiet: no note
    lands in a thread everyone has left)."""
    card = select(SlackMessage.id).where(SlackMessage.incident_id == Investigation.incident_id,
                                         SlackMessage.purpose == "card").exists()
    still_open = select(Incident.id).where(Incident.id == Investigation.incident_id, Incident.is_open.is_(True)).exists()
    return and_(Investigation.status.in_(("failed", "skipped")), Investigation.posted_at.is_(None), card,
                still_open)


def untold_failures(session: Session, limit: int = 10) -> list[int]:
    """Failed investigations whose thread was not told yet (see `_untold`)."""
    return list(session.execute(select(Investigation.id).where(_untold()).order_by(Investigation.id)
                                .limit(limit)).scalars())


def tell_failure(session: Session, investigation_id: int, now: datetime) -> bool:
    """Queue the thread note saying the RCA could not be made, and why (redacted, in plain
    words), and record it on the timeline; in one transaction, once (conditional UPDATE)."""
    told = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, _untold()).values(posted_at=now)
        .execution_options(synchronize_session=False))
    if told.rowcount != 1:
        return False
    row = session.get(Investigation, investigation_id)
    earlier = session.execute(select(Investigation.id).where(
        Investigation.incident_id == row.incident_id, Investigation.id != row.id, Investigation.status == "done",
        Investigation.posted_at.is_not(None)).limit(1)).first()
    if row.status == "skipped":
        reason = _skip_reason(session, row)
    else:
        reason = (f"{'a new investigation' if earlier else 'the investigation'} gave up after {row.attempts} "
                  f"attempt{'s' if row.attempts != 1 else ''} "
                  f"({redact(row.error or 'no error recorded')[:MAX_REASON_CHARS]})")
    reason += "; the analysis posted earlier in this thread still stands" if earlier else ""
    incident = session.execute(select(Incident).where(Incident.id == row.incident_id)
                               .with_for_update(**ROW_LOCK)).scalar_one()
    incident.note_pending = {**(incident.note_pending or {}), NOTE_FLAG: reason}
    incident.card_version += 1
    chain.append(session, incident.id, "investigation.gave_up" if row.status == "failed" else "investigation.told",
                 ACTOR, {"reason": reason, "note": "queued"}, now, locked=incident)
    return True


def _skip_reason(session: Session, row: Investigation) -> str:
    """Why nothing was investigated, and what the alerts do carry (label names only: values are
    untrusted and may be long), so a person sees what the bot had to go on."""
    why = str((row.result or {}).get("skipped") or "nothing could be investigated")
    names = sorted({name for labels in session.execute(select(Alert.labels).where(Alert.incident_id == row.incident_id))
                    .scalars() for name in (labels or {})})
    carried = f" (their labels: {', '.join(names[:12])}{', …' if len(names) > 12 else ''})" if names else ""
    return redact(f"{why}{carried}: nothing was checked, so no cause can be named")[:MAX_REASON_CHARS * 2]


def _postable(now: datetime):
    return and_(Investigation.status == "done", Investigation.posted_at.is_(None),
                or_(Investigation.post_retry_at.is_(None), Investigation.post_retry_at <= now),
                or_(Investigation.lease_until.is_(None), Investigation.lease_until < now))


def postable(session: Session, now: datetime, limit: int = 10) -> list[int]:
    """Done, unposted investigations whose incident already has its card in Slack."""
    card = select(SlackMessage.id).where(SlackMessage.incident_id == Investigation.incident_id,
                                         SlackMessage.purpose == "card").exists()
    return list(session.execute(
        select(Investigation.id).where(_postable(now), card).order_by(Investigation.id).limit(limit)).scalars())


def lease_post(session: Session, investigation_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    result = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, _postable(now))
        .values(lease_owner=owner, lease_until=now + lease)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def posted(session: Session, investigation_id: int, owner: str, ts: str, now: datetime) -> bool:
    result = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, Investigation.lease_owner == owner)
        .values(posted_at=now, post_ts=ts, lease_owner=None, lease_until=None, post_retry_at=None)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def defer_post(session: Session, investigation_id: int, owner: str, now: datetime, delay: timedelta) -> int:
    """Release the post lease and retry after `delay`; returns the attempts so far."""
    row = session.get(Investigation, investigation_id)
    attempts = (row.post_attempts if row else 0) + 1
    session.execute(
        update(Investigation).where(Investigation.id == investigation_id, Investigation.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, post_retry_at=now + delay, post_attempts=attempts)
        .execution_options(synchronize_session=False))
    return attempts


def _files_due(now: datetime):
    return and_(Investigation.status == "done", Investigation.posted_at.is_not(None),
                Investigation.files_posted_at.is_(None),
                or_(Investigation.post_retry_at.is_(None), Investigation.post_retry_at <= now),
                or_(Investigation.lease_until.is_(None), Investigation.lease_until < now))


def files_due(session: Session, now: datetime, limit: int = 10) -> list[int]:
    return list(session.execute(select(Investigation.id).where(_files_due(now)).order_by(Investigation.id)
                                .limit(limit)).scalars())


def lease_files(session: Session, investigation_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    result = session.execute(
        update(Investigation).where(Investigation.id == investigation_id, _files_due(now))
        .values(lease_owner=owner, lease_until=now + lease)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def files_posted(session: Session, investigation_id: int, owner: str | None, now: datetime) -> None:
    """Files shared (or none to share: `owner` None, right after the message was recorded)."""
    condition = Investigation.lease_owner.is_(None) if owner is None else Investigation.lease_owner == owner
    session.execute(update(Investigation).where(Investigation.id == investigation_id, condition)
                    .values(files_posted_at=now, lease_owner=None, lease_until=None, post_retry_at=None)
                    .execution_options(synchronize_session=False))


def release(session: Session, investigation_id: int, owner: str) -> None:
    """Give the lease back without changing anything else (the incident's write slot was busy)."""
    session.execute(update(Investigation).where(Investigation.id == investigation_id, Investigation.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))


def latest_for(session: Session, incident_id: int) -> Investigation | None:
    return session.execute(select(Investigation).where(Investigation.incident_id == incident_id)
                           .order_by(Investigation.round.desc()).limit(1)).scalar_one_or_none()
