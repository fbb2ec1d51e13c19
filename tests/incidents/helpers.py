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


def store_rca(factory, incident_id: int, report: dict, at) -> None:
    """The incident's RCA stored as the RCA stage stores it (claimed, then finished)."""
    from datetime import timedelta

    from bot.db.models import Investigation
    from bot.incidents import investigations

    with unit_of_work(factory) as session:
        investigation = session.execute(select(Investigation).where(
            Investigation.incident_id == incident_id)).scalar_one()
        assert investigations.claim(session, investigation.id, "test", at, timedelta(minutes=1))
        assert investigations.finish(session, investigation.id, "test", report, at)


def incidents(factory):
    with unit_of_work(factory) as session:
        return list(session.execute(select(Incident).order_by(Incident.id)).scalars())


__all__ = ["ingest", "ingest_body", "incidents", "make_session_factory", "store_rca", "NOW"]
