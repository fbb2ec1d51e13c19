"""Raw deliveries: stored before the webhook answers, then claimed by workers.

A claim is a conditional UPDATE from `pending` (or from `processing` whose lease lapsed) to
`processing`; only the worker whose UPDATE matched one row owns the delivery. On PostgreSQL
the candidate SELECT also uses FOR UPDATE SKIP LOCKED so replicas do not queue on each other.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from bot.db.models import RawDelivery

MAX_ATTEMPTS = 5
# Headers worth keeping for debugging; credentials are never stored.
KEPT_HEADERS = ("content-type", "user-agent", "content-length", "x-forwarded-for", "x-webhook-id",
                "x-opsbot-replay-of")


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def recent_duplicate(session: Session, source: str, sha256: str, since: datetime) -> int | None:
    """The id of an identical delivery received since `since` (a sender's retry), if any.

    On PostgreSQL a transaction-scoped advisory lock on the body's hash serialises identical
    bodies arriving at the same instant, so exactly one of them is stored; SQLite's writers
    are serialised already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(sha256[:15], 16)})
    return session.execute(
        select(RawDelivery.id)
        .where(RawDelivery.source == source, RawDelivery.body_sha256 == sha256, RawDelivery.received_at >= since)
        .order_by(RawDelivery.id)
        .limit(1)
    ).scalar_one_or_none()


def store(session: Session, source: str, body: bytes, headers: dict[str, str], now: datetime) -> RawDelivery:
    kept = {key.lower(): value for key, value in headers.items() if key.lower() in KEPT_HEADERS}
    delivery = RawDelivery(
        source=source, received_at=now, headers=kept, body=body,
        body_sha256=body_hash(body), status="pending", attempts=0,
    )
    session.add(delivery)
    session.flush()
    return delivery


def _claimable(now: datetime):
    return or_(
        RawDelivery.status == "pending",
        and_(RawDelivery.status == "processing", RawDelivery.claimed_until < now),
    )


def any_claimable(session: Session, now: datetime) -> bool:
    return session.execute(select(RawDelivery.id).where(_claimable(now)).limit(1)).first() is not None


class Claimed(NamedTuple):
    id: int
    source: str
    body: bytes


def claim(session: Session, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Claim up to `limit` deliveries, oldest first, with one UPDATE ... RETURNING; returns the
    deliveries this caller now owns, bodies included (so they are parsed before the write
    transaction that applies them)."""
    candidates = select(RawDelivery.id).where(_claimable(now)).order_by(RawDelivery.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # A MATERIALIZED CTE runs the LIMIT once: as a plain IN subquery, PostgreSQL may plan it
        # as a join that locks and claims more rows than asked while other workers claim too.
        chosen = candidates.with_for_update(skip_locked=True).cte("chosen").prefix_with("MATERIALIZED")
    else:
        chosen = candidates.cte("chosen")
    rows = session.execute(
        update(RawDelivery)
        .where(RawDelivery.id.in_(select(chosen.c.id)), _claimable(now))
        .values(status="processing", claimed_by=owner, claimed_until=now + lease, attempts=RawDelivery.attempts + 1)
        .returning(RawDelivery.id, RawDelivery.source, RawDelivery.body)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Claimed(row.id, row.source, row.body) for row in rows), key=lambda claimed: claimed.id)


_DELIVERIES = RawDelivery.__table__  # Core statements built once: the intake runs them per delivery
_LOCK_CLAIMED = (select(_DELIVERIES.c.claimed_by, _DELIVERIES.c.status)
                 .where(_DELIVERIES.c.id == bindparam("delivery_id")).with_for_update())
_FINISH = (update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("delivery_id"))
           .values(status="done", processed_at=bindparam("now"), claimed_until=None, error=None))


def lock_claimed(session: Session, delivery_id: int, owner: str) -> bool:
    """Lock the delivery for the rest of the transaction; True while `owner`'s claim holds
    (a worker that re-claims it after our lease lapsed waits for this lock, then finds it
    done). The body is not loaded again."""
    row = session.execute(_LOCK_CLAIMED, {"delivery_id": delivery_id}).first()
    return row is not None and row.claimed_by == owner and row.status == "processing"


def finish(session: Session, delivery_id: int, now: datetime) -> None:
    """Mark a delivery locked by `lock_claimed` done, in the transaction that applied it."""
    session.execute(_FINISH, {"delivery_id": delivery_id, "now": now})


def mark_failed(session: Session, delivery_id: int, owner: str, error: str, now: datetime,
                retry_in: timedelta, permanent: bool = False) -> str:
    """Record a failure; the delivery is retried after `retry_in` until MAX_ATTEMPTS, or
    never when `permanent` (a body that can never be processed)."""
    delivery = session.get(RawDelivery, delivery_id)
    if delivery is None or delivery.claimed_by != owner:
        return "lost"
    delivery.error = error[:2000]
    if permanent or delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
        delivery.claimed_until = None
    else:
        delivery.claimed_until = now + retry_in  # stays `processing` until the lease lapses
    return delivery.status


def pending_count(session: Session) -> int:
    return session.execute(
        select(func.count()).select_from(RawDelivery).where(RawDelivery.status.in_(("pending", "processing")))
    ).scalar_one()
