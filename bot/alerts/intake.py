"""Webhook intake: validate a body, store it as a raw delivery. Nothing else happens here,
so the sender gets its 2xx quickly; workers do the rest (see `bot.workers`).

`parse_delivery` is the one parser per source, used here to refuse a malformed body before
anything is stored and by the workers to turn a claimed delivery into a batch: both read the
body the same way, and the workers import it from here (alerts never import the workers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.alerts import alertmanager, deliveries, grafana, pagerduty
from bot.alerts.model import AlertBatch, PayloadError
from bot.db import seen
from bot.db.engine import unit_of_work

PARSERS = {alertmanager.SOURCE: alertmanager.parse, grafana.SOURCE: grafana.parse,
           pagerduty.SOURCE: pagerduty.parse}


def parse_delivery(source: str, body: bytes) -> AlertBatch:
    parser = PARSERS.get(source)
    if parser is None:
        raise PayloadError(f"no parser for source '{source}'")
    return parser(body)


@dataclass(frozen=True)
class Accepted:
    delivery_id: int | None  # None: a replay of an event already applied, nothing stored
    duplicate: bool


def accept(factory: sessionmaker[Session], source: str, body: bytes, headers: dict[str, str],
           now: datetime, duplicate_window: timedelta, event_id: str | None = None) -> Accepted:
    """Store the delivery, or recognise a retry of one received within `duplicate_window`
    (identical body), which is then not stored again. Raises `PayloadError`, storing nothing,
    when the body is malformed or of the wrong shape.

    `event_id`: the sender's id of the event (PagerDuty's `event.id`). When the replay guard
    already holds it (`bot.db.seen`), the event was applied and this is a replay: nothing is
    stored. This is only the early answer; the flow's own check, in the transaction that
    applies the event, decides (a replay arriving before its original was processed is
    stored here and refused there)."""
    parse_delivery(source, body)  # refuse bad input before anything is written
    sha256 = deliveries.body_hash(body)
    with unit_of_work(factory, urgent=True) as session:
        if event_id is not None and seen.recorded(session, source, event_id):
            return Accepted(None, duplicate=True)
        earlier = deliveries.recent_duplicate(session, source, sha256, now - duplicate_window)
        if earlier is not None:
            return Accepted(earlier, duplicate=True)
        return Accepted(deliveries.store(session, source, body, headers, now).id, duplicate=False)
