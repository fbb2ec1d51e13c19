"""Incident lifecycle across resolution: reopen, close after a quiet window, late resolves."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Alert, Incident, TimelineEntry
from bot.timeline import chain
from tests.concurrency import run_together
from tests.incidents.helpers import NOW, incidents, ingest
from tests.payloads import am_alert


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def kinds(factory, incident_id):
    with unit_of_work(factory) as session:
        return [entry.kind for entry in session.execute(
            select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq)
        ).scalars()]


def resolved(pod="a", ends_at="2026-11-21T10:01:00Z"):
    return am_alert(pod=pod, status="resolved", ends_at=ends_at)


def test_a_refire_within_the_window_reopens_the_same_incident(factory):
    first = ingest(factory, [am_alert(pod="a")])
    ingest(factory, [resolved()], now=NOW + timedelta(minutes=1))
    again = ingest(factory, [am_alert(pod="a", starts_at="2026-11-21T10:20:00Z")], now=NOW + timedelta(minutes=20))
    assert again.incident_id == first.incident_id
    (incident,) = incidents(factory)
    assert incident.status == "open"
    assert kinds(factory, incident.id)[-2:] == ["incident.reopened", "alerts.received"]


def test_a_refire_after_the_quiet_window_opens_a_new_incident_and_closes_the_old(factory):
    first = ingest(factory, [am_alert(pod="a")])
    ingest(factory, [resolved()], now=NOW + timedelta(minutes=1))
    later = NOW + timedelta(days=30)
    second = ingest(factory, [am_alert(pod="a", starts_at="2026-12-21T10:00:00Z")], now=later)
    assert second.opened and second.incident_id != first.incident_id
    old, new = incidents(factory)
    assert (old.status, old.is_open, new.status, new.is_open) == ("closed", None, "open", True)
    assert old.card_version > old.card_synced_version, "the old card will show it closed"
    assert kinds(factory, old.id)[-1] == "incident.closed"
    with unit_of_work(factory) as session:
        opened = session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == new.id)).scalars().first()
    assert opened.payload["follows"] == f"INC-{old.id}"


def test_a_resolve_arriving_after_the_close_attaches_to_the_closed_incident(factory):
    ingest(factory, [am_alert(pod="a"), am_alert(pod="b")])
    ingest(factory, [resolved("a"), am_alert(pod="b")], now=NOW + timedelta(minutes=1))
    ingest(factory, [resolved("a"), resolved("b")], now=NOW + timedelta(minutes=2))
    ingest(factory, [am_alert(pod="c", starts_at="2026-11-23T10:00:00Z")], now=NOW + timedelta(days=2))
    late = ingest(factory, [resolved("c", ends_at="2026-11-23T10:05:00Z")], now=NOW + timedelta(days=2, minutes=5))
    assert len(incidents(factory)) == 2
    assert late.incident_id == incidents(factory)[1].id
    only_resolved = ingest(factory, [resolved("z")], now=NOW + timedelta(days=3), group_key="other")
    assert only_resolved.incident_id not in {incident.id for incident in incidents(factory)[:2]}


def test_an_older_firing_state_from_another_alertmanager_replica_is_ignored(factory):
    ingest(factory, [am_alert(pod="a", starts_at="2026-11-21T09:55:00Z")])
    ingest(factory, [resolved(ends_at="2026-11-21T10:01:00Z")], now=NOW + timedelta(minutes=2))
    replica = ingest(factory, [am_alert(pod="a", starts_at="2026-11-21T09:55:00Z")], now=NOW + timedelta(minutes=3))
    assert replica.changed_alerts == 0
    (incident,) = incidents(factory)
    assert incident.status == "resolved"


def test_values_longer_than_columns_and_nul_characters_are_stored(factory):
    long_key = "{}/{}:" + "{" + ",".join(f'label{i}="{"v" * 40}"' for i in range(100)) + "}"
    alert = am_alert("A" * 300, pod="p", service="s" * 300, namespace="n" * 200,
                     annotations={"summary": "bad\x00byte", "description": "x" * 100_000})
    result = ingest(factory, [alert], group_key=long_key)
    (incident,) = incidents(factory)
    assert incident.id == result.incident_id and incident.group_key == long_key
    assert len(incident.service) == 256 and len(incident.namespace) == 128
    with unit_of_work(factory) as session:
        stored = session.execute(select(Alert)).scalar_one()
    assert len(stored.name) == 256 and stored.annotations["summary"] == "badbyte"
    assert ingest(factory, [alert], group_key=long_key).incident_id == incident.id


def test_concurrent_appends_to_one_incident_all_land_in_one_chain(factory):
    first = ingest(factory, [am_alert(pod="a")])
    def append(index):
        with unit_of_work(factory) as session:
            chain.append(session, first.incident_id, "test.concurrent", "test", {"i": index}, NOW)
            time.sleep(0.1)  # hold the transaction open while the others try

    assert run_together(append, 4) == []
    with unit_of_work(factory) as session:
        entries = list(session.execute(select(TimelineEntry).where(
            TimelineEntry.incident_id == first.incident_id).order_by(TimelineEntry.seq)).scalars())
    assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
    assert chain.verify_chain(entries) == []


def test_a_merged_group_firing_long_after_opens_a_new_incident(factory):
    from bot.incidents.merge import merge

    a = ingest(factory, [am_alert(pod="a")], group_key="ga")
    b = ingest(factory, [am_alert(pod="b")], group_key="gb")
    with unit_of_work(factory) as session:
        merge(session, b.incident_id, a.incident_id, "test", NOW)
    ingest(factory, [resolved("a"), resolved("b")], group_key="ga", now=NOW + timedelta(minutes=1))
    later = ingest(factory, [am_alert(pod="b", starts_at="2026-11-24T10:00:00Z")], group_key="gb",
                   now=NOW + timedelta(days=3))
    assert later.opened and later.incident_id not in (a.incident_id, b.incident_id)


def test_a_merge_keeps_the_newer_state_of_an_alert_both_hold(factory):
    from bot.incidents.merge import merge

    a = ingest(factory, [am_alert(pod="x")], group_key="ga")
    ingest(factory, [resolved("x")], group_key="ga", now=NOW + timedelta(minutes=1))
    b = ingest(factory, [am_alert(pod="x", starts_at="2026-11-21T10:05:00Z")], group_key="gb",
               now=NOW + timedelta(minutes=5))
    with unit_of_work(factory) as session:
        merge(session, b.incident_id, a.incident_id, "test", NOW + timedelta(minutes=6))
    target = next(i for i in incidents(factory) if i.id == a.incident_id)
    assert (target.firing_count, target.status) == (1, "open")
    assert kinds(factory, a.incident_id)[-2:] == ["incident.reopened", "incident.merged_from"]
    ingest(factory, [am_alert(pod="y")], group_key="ga", now=NOW + timedelta(minutes=7))  # intake appends again
    with unit_of_work(factory) as session:  # intake (head on the locked row) and merge (by id) appends chain up
        for incident in session.execute(select(Incident)).scalars():
            assert chain.verify_incident(session, incident) == []
