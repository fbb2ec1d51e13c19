"""Webhook intake: validate a body, store it as a raw delivery. Nothing else happens here,
so the sender gets its 2xx quickly; workers do the rest (see `bot.workers`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.alerts import deliveries
from bot.db.engine import unit_of_work
from bot.workers import parse_delivery


def accept(factory: sessionmaker[Session], source: str, body: bytes, headers: dict[str, str],
           now: datetime) -> int:
    """Store the delivery and return its id; raise `PayloadError` (storing nothing) when the
    body is malformed or of the wrong shape."""
    batch = parse_delivery(source, body)
    del batch  # parsed only to refuse bad input before anything is written
    with unit_of_work(factory) as session:
        return deliveries.store(session, source, body, headers, now).id
