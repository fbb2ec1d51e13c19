"""Webhook intake: validate a body, store it as a raw delivery. Nothing else happens here,
so the sender gets its 2xx quickly; workers do the rest (see `bot.workers`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.alerts import deliveries
from bot.db.engine import unit_of_work
from bot.workers import parse_delivery


@dataclass(frozen=True)
class Accepted:
    delivery_id: int
    duplicate: bool


def accept(factory: sessionmaker[Session], source: str, body: bytes, headers: dict[str, str],
           now: datetime, duplicate_window: timedelta) -> Accepted:
    """Store the delivery, or recognise a retry of one received within `duplicate_window`
    (identical body), which is then not stored again. Raises `PayloadError`, storing nothing,
    when the body is malformed or of the wrong shape."""
    parse_delivery(source, body)  # refuse bad input before anything is written
    sha256 = deliveries.body_hash(body)
    with unit_of_work(factory, urgent=True) as session:
        earlier = deliveries.recent_duplicate(session, source, sha256, now - duplicate_window)
        if earlier is not None:
            return Accepted(earlier, duplicate=True)
        return Accepted(deliveries.store(session, source, body, headers, now).id, duplicate=False)
