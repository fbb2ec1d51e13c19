from datetime import UTC, datetime

from sqlalchemy import select

from bot.alerts import alertmanager, deliveries
from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Incident
from bot.incidents import flows
from tests.payloads import am_body

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def ingest_body(factory, body: bytes, now=NOW):
    """Store a delivery and run the intake flow on it, as a worker would."""
    with unit_of_work(factory) as session:
        delivery = deliveries.store(session, "alertmanager", body, {}, now)
        result = flows.ingest(session, alertmanager.parse(body), delivery.id, now)
        deliveries.finish(session, delivery.id, now)
    return result


def ingest(factory, alerts, now=NOW, **kwargs):
    return ingest_body(factory, am_body(alerts, **kwargs), now)


def incidents(factory):
    with unit_of_work(factory) as session:
        return list(session.execute(select(Incident).order_by(Incident.id)).scalars())


__all__ = ["ingest", "ingest_body", "incidents", "make_session_factory", "NOW"]
