"""`alert_rows`: the intake's bulk reads and writes store exactly what SQLAlchemy would."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, select, text

from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Alert
from bot.incidents import alert_rows
from bot.incidents.alert_rows import NewAlert
from tests.incidents.helpers import NOW, incidents, ingest, ingest_body
from tests.payloads import am_alert, am_body

COLUMNS = [column.name for column in Alert.__table__.columns if column.name not in ("id", "fingerprint")]


def new_alert(incident_id: int, fingerprint: str, **changes) -> NewAlert:
    values = dict(
        incident_id=incident_id, source="alertmanager", fingerprint=fingerprint, name="KubePodCrashLooping",
        status="firing", category="availability", severity="warning", cluster="prod", namespace="shop",
        service="checkout", target="checkout-7d9f8b6c5d-x2x4q",
        labels={"alertname": "KubePodCrashLooping", "pod": "checkout-7d9f8b6c5d-x2x4q", "note": "naïve \"quoted\""},
        annotations={"summary": "Pod is crash looping.", "runbook_url": "https://runbooks.example/crash"},
        starts_at=datetime(2026, 11, 21, 9, 59, 58, 123456, tzinfo=UTC), ends_at=None,
        generator_url="http://prometheus:9090/graph?g0.expr=up", first_seen_at=NOW, last_seen_at=NOW,
        notification_count=1, last_delivery_id=None,
    )
    return NewAlert(**{**values, **changes})


def stored_as_the_database_holds_it(session, fingerprint: str) -> tuple:
    """The row as raw SQL returns it (strings as stored, no result processing)."""
    return tuple(session.execute(text(f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE fingerprint = :fingerprint"),
                                 {"fingerprint": fingerprint}).one())


def test_the_lean_insert_stores_what_sqlalchemy_stores(engine):
    factory = make_session_factory(engine)
    ingest(factory, [am_alert(pod="seed")])  # an incident to attach the rows to
    (incident,) = incidents(factory)
    later = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
    cases = {"plain": {}, "resolved": {"status": "resolved", "ends_at": later},
             "other-zone": {"starts_at": later.astimezone(timezone(timedelta(hours=2)))},
             "no-scope": {"cluster": None, "namespace": None, "service": None, "generator_url": None}}
    with unit_of_work(factory) as session:
        for name, changes in cases.items():
            alert_rows.write(session, [], [new_alert(incident.id, f"lean-{name}", **changes)], 1, NOW)
            session.execute(insert(Alert.__table__), [vars(new_alert(incident.id, f"orm-{name}", **changes))])
    with unit_of_work(factory) as session:
        for name in cases:
            assert stored_as_the_database_holds_it(session, f"lean-{name}") == \
                stored_as_the_database_holds_it(session, f"orm-{name}"), name
        loaded = session.execute(select(Alert).where(Alert.fingerprint == "lean-resolved")).scalar_one()
        assert loaded.ends_at == later and loaded.labels["note"] == 'naïve "quoted"'


def test_repeats_and_changes_are_written_in_bulk_and_counted_once_per_batch(engine):
    factory = make_session_factory(engine)
    first = [am_alert(pod=f"p{index}") for index in range(4)]
    ingest(factory, first)
    repeat_and_resolve = [*first[:2], am_alert(pod="p2", status="resolved", ends_at="2026-11-21T10:04:00Z"), am_alert(pod="p3")]
    later = NOW + timedelta(minutes=5)
    ingest_body(factory, am_body(repeat_and_resolve), later)
    with unit_of_work(factory) as session:
        rows = {alert.labels["pod"]: alert for alert in session.execute(select(Alert)).scalars()}
    assert {pod: (row.status, row.notification_count, row.last_seen_at) for pod, row in rows.items()} == {
        "p0": ("firing", 2, later), "p1": ("firing", 2, later), "p2": ("resolved", 2, later),
        "p3": ("firing", 2, later)}
    assert rows["p2"].ends_at is not None and rows["p0"].first_seen_at == NOW


def test_loading_reads_only_the_named_alerts_of_the_incident(engine):
    factory = make_session_factory(engine)
    ingest(factory, [am_alert(pod=f"p{index}") for index in range(3)])
    (incident,) = incidents(factory)
    with unit_of_work(factory) as session:
        fingerprints = {alert.fingerprint for alert in session.execute(select(Alert)).scalars()}
        wanted = set(sorted(fingerprints)[:2]) | {"not-stored"}
        loaded = alert_rows.load(session, incident.id, wanted)
        assert {alert.fingerprint for alert in loaded} == wanted - {"not-stored"}
        assert alert_rows.load(session, incident.id + 1, wanted) == []
