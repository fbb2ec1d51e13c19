from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Alert, TimelineEntry
from bot.timeline.chain import verify_chain
from tests.concurrency import run_together
from tests.incidents.helpers import NOW, incidents, ingest
from tests.payloads import am_alert


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def timeline(factory, incident_id):
    with unit_of_work(factory) as session:
        return list(session.execute(
            select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq)
        ).scalars())


def test_first_delivery_opens_an_incident_with_what_it_is_about(factory):
    result = ingest(factory, [
        am_alert(namespace="shop", pod="checkout-1", severity="warning", service="checkout", cluster="prod-eu-1"),
        am_alert(namespace="shop", pod="checkout-2", severity="critical", service="checkout", cluster="prod-eu-1"),
    ])
    assert result.opened and result.new_alerts == 2
    (incident,) = incidents(factory)
    assert incident.title == "KubePodCrashLooping: Pod is crash looping."
    assert (incident.severity, incident.namespace, incident.service, incident.cluster) == (
        "critical", "shop", "checkout", "prod-eu-1")
    assert (incident.alert_count, incident.firing_count, incident.status) == (2, 2, "open")
    assert incident.links["alertmanager"].startswith("http://alertmanager.example")
    assert [entry.kind for entry in timeline(factory, incident.id)] == ["incident.opened", "alerts.received"]


def test_same_group_updates_the_incident_and_repeats_change_nothing_visible(factory):
    first = ingest(factory, [am_alert(pod="a")])
    second = ingest(factory, [am_alert(pod="a"), am_alert(pod="b")], now=NOW + timedelta(minutes=1))
    repeat = ingest(factory, [am_alert(pod="a"), am_alert(pod="b")], now=NOW + timedelta(minutes=5))
    assert first.incident_id == second.incident_id == repeat.incident_id
    assert (second.opened, second.new_alerts, second.card_changed) == (False, 1, True)
    assert (repeat.repeated_alerts, repeat.card_changed) == (2, False)
    (incident,) = incidents(factory)
    assert incident.card_version == 2, "one visible change after the first post"
    with unit_of_work(factory) as session:
        alert_a = session.execute(select(Alert).where(Alert.labels["pod"].as_string() == "a")).scalar_one()
        assert alert_a.notification_count == 3
        assert alert_a.last_seen_at == NOW + timedelta(minutes=5)
    assert len(timeline(factory, incident.id)) == 3, "a pure repeat writes no timeline entry"


def test_all_alerts_resolved_moves_the_incident_to_resolved_by_source(factory):
    ingest(factory, [am_alert(pod="a")])
    ingest(factory, [am_alert(pod="a", status="resolved", ends_at="2026-11-21T10:05:00Z")])
    (incident,) = incidents(factory)
    assert (incident.status, incident.firing_count, incident.is_open) == ("resolved", 0, True)
    resolved = [e for e in timeline(factory, incident.id) if e.kind == "incident.resolved"]
    assert [e.payload["by"] for e in resolved] == ["source"] and incident.resolved_by == "source"
    assert incident.resolutions == 1, "each resolution is counted (its postmortem is scheduled)"
    ingest(factory, [am_alert(pod="a", starts_at="2026-11-21T10:06:00Z")])
    (incident,) = incidents(factory)
    assert incident.status == "open" and incident.resolved_at is None


def test_an_older_delivery_processed_late_does_not_undo_a_newer_one(factory):
    from bot.alerts import alertmanager, deliveries
    from bot.incidents import flows
    from tests.payloads import am_body

    firing, resolved = am_body([am_alert(pod="a")]), am_body([am_alert(pod="a", status="resolved")])
    with unit_of_work(factory) as session:
        old = deliveries.store(session, "alertmanager", firing, {}, NOW)
        new = deliveries.store(session, "alertmanager", resolved, {}, NOW)
    with unit_of_work(factory) as session:
        flows.ingest(session, alertmanager.parse(firing), old.id, NOW)
        flows.ingest(session, alertmanager.parse(resolved), new.id, NOW)
    with unit_of_work(factory) as session:
        assert flows.ingest(session, alertmanager.parse(firing), old.id, NOW).changed_alerts == 0
    assert incidents(factory)[0].status == "resolved"


def test_the_timeline_is_a_valid_hash_chain_and_tampering_is_detected(factory):
    result = ingest(factory, [am_alert(pod="a")])
    ingest(factory, [am_alert(pod="a"), am_alert(pod="b")])
    entries = timeline(factory, result.incident_id)
    assert verify_chain(entries) == []
    entries[1].payload = {**entries[1].payload, "new": 99}
    assert "content does not match" in verify_chain(entries)[0]
    assert any("missing" in problem for problem in verify_chain([entries[0], entries[2]]))


def test_secrets_in_annotations_never_reach_the_timeline(factory):
    alert = am_alert(pod="a", annotations={"summary": "failed with password=hunter2"})
    result = ingest(factory, [alert], group_key="secret-group")
    entries = timeline(factory, result.incident_id)
    assert "hunter2" not in str([entry.payload for entry in entries])


def test_concurrent_deliveries_for_a_new_group_open_one_incident(factory):
    """Six deliveries for one new group key at the same instant: one incident, no lost alert
    (on PostgreSQL a true race; SQLite serialises writers, and must give the same answer)."""
    errors = run_together(lambda index: ingest(factory, [am_alert(pod=f"p{index}")], group_key="storm"), 6)
    assert errors == []
    (incident,) = incidents(factory)
    assert (incident.alert_count, incident.firing_count) == (6, 6)
