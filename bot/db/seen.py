"""The replay guard: request ids already acted on, each kept for as long as a replay matters.

`first_time` inserts (source, request_id) in the caller's transaction and says whether this
process is the first to see it. The primary key decides: two replicas receiving the same replay
at once cannot both get True (the loser's INSERT does nothing), and a request retried after a
crash before the commit is seen as new, because the row went with the rolled-back transaction.
Rows are pruned once `keep_until` has passed (`prune`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import SeenRequest

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def first_time(session: Session, source: str, request_id: str, now: datetime, keep: timedelta) -> bool:
    """True when (source, request_id) was not seen before; it is recorded either way."""
    insert = _INSERTS[session.get_bind().dialect.name]
    statement = (insert(SeenRequest).values(source=source, request_id=request_id[:200], seen_at=now,
                                             keep_until=now + keep)
                 .on_conflict_do_nothing(index_elements=["source", "request_id"])
                 .returning(SeenRequest.request_id))
    # a row comes back only when inserted (psycopg reports no rowcount for this ORM insert: -1)
    return session.execute(statement).first() is not None


def recorded(session: Session, source: str, request_id: str) -> bool:
    """Whether (source, request_id) is on record; records nothing. For an early answer to a
    replay only: `first_time`, in the transaction that acts on the request, decides."""
    return session.execute(select(SeenRequest.request_id).where(
        SeenRequest.source == source, SeenRequest.request_id == request_id[:200])).first() is not None


def prune(session: Session, now: datetime) -> int:
    """Forget ids whose replay no longer matters; the number forgotten."""
    return session.execute(delete(SeenRequest).where(SeenRequest.keep_until < now)).rowcount
