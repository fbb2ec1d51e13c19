"""When a postmortem is due: once per resolution, after the grace period, never for an incident
that fired again before it was due (on SQLite and PostgreSQL)."""

from datetime import timedelta

import pytest

from bot.db.engine import make_session_factory, reading
from bot.db.models import Postmortem
from bot.postmortem.stage import due
from tests.incidents.helpers import NOW, incidents, ingest
from tests.payloads import am_alert

GRACE = timedelta(seconds=15)  # flows.DEFAULT_WINDOWS


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def firing(at: str):
    return am_alert(pod="a", starts_at=at)


def resolved(at: str):
    return am_alert(pod="a", status="resolved", starts_at="2026-11-21T10:00:00Z", ends_at=at)


def due_now(factory, now):
    with reading(factory) as session:
        return due(session, now)


def test_a_postmortem_is_due_after_the_grace_and_a_flap_within_it_waits_for_the_next_resolution(factory):
    ingest(factory, [firing("2026-11-21T10:00:00Z")])
    ingest(factory, [resolved("2026-11-21T10:05:00Z")], now=NOW + timedelta(minutes=5))
    (incident,) = incidents(factory)
    assert incident.resolutions == 1
    assert due_now(factory, NOW + timedelta(minutes=5)) == [], "not before the grace is over"
    # it fires again within the grace: no postmortem for a resolution that did not hold
    ingest(factory, [firing("2026-11-21T10:05:10Z")], now=NOW + timedelta(minutes=5, seconds=10))
    assert due_now(factory, NOW + timedelta(minutes=6)) == []
    ingest(factory, [resolved("2026-11-21T10:20:00Z")], now=NOW + timedelta(minutes=20))
    (incident,) = incidents(factory)
    assert incident.resolutions == 2
    assert due_now(factory, NOW + timedelta(minutes=20) + GRACE) == [incident.id]
    with reading(factory) as session:
        row = session.get(Postmortem, incident.id)
        assert (row.resolution, row.posted_resolution) == (2, 0), "one postmortem, describing the last resolution"


def test_repeats_of_alerts_still_firing_do_not_reopen_an_incident_a_person_resolved(factory):
    from bot.db.engine import unit_of_work
    from bot.incidents import controls

    ingest(factory, [firing("2026-11-21T10:00:00Z")])
    (incident,) = incidents(factory)
    with unit_of_work(factory) as session:
        controls.resolve(session, incident.id, controls.Person("U0ALICE", "alice"), NOW + timedelta(minutes=1),
                         "known: the batch job's load")
    ingest(factory, [firing("2026-11-21T10:00:00Z")], now=NOW + timedelta(minutes=5))  # Alertmanager repeats
    (incident,) = incidents(factory)
    assert (incident.status, incident.resolved_by, incident.firing_count) == ("resolved", "alice", 1)
    ingest(factory, [firing("2026-11-21T10:00:00Z"), am_alert(pod="b", starts_at="2026-11-21T10:06:00Z")],
           now=NOW + timedelta(minutes=6))  # something new fires: that reopens it
    (incident,) = incidents(factory)
    assert incident.status == "open" and incident.resolved_by is None


def test_what_people_type_is_redacted_before_it_is_stored(factory):
    from bot.db.engine import unit_of_work
    from bot.incidents import controls

    ingest(factory, [firing("2026-11-21T10:00:00Z")])
    (incident,) = incidents(factory)
    alice = controls.Person("U0ALICE", "alice")
    secret = "postgres://app:s3cret@db:5432/orders"
    with unit_of_work(factory) as session:
        controls.post_update(session, incident.id, f"DSN was {secret}", alice, NOW)
        item = controls.add_follow_up(session, incident.id, f"rotate {secret}", None, alice, NOW)
        controls.resolve(session, incident.id, alice, NOW, f"fixed {secret}")
        stored = (session.get(type(incident), incident.id).latest_update, item.text,
                  session.get(type(incident), incident.id).resolution_note)
    assert all("s3cret" not in text for text in stored), stored
