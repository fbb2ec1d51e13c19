"""Alert storms: past the threshold, new groups in one cluster join one storm thread."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.alerts import alertmanager, deliveries
from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Incident, Investigation
from bot.incidents import flows
from bot.incidents.lifecycle import Windows
from bot.incidents.storm import STORM_KEY_PREFIX
from tests.incidents.helpers import NOW, incidents
from tests.payloads import am_alert, am_body

WINDOWS = Windows(storm_incidents=3, storm=timedelta(minutes=3))


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def fire(factory, service: str, cluster: str | None = "prod", now=NOW, status="firing", windows=WINDOWS):
    labels = {"service": service, **({"cluster": cluster} if cluster else {})}
    alert = am_alert(alertname="HighErrorRate", status=status, pod=f"{service}-0",
                     ends_at="2026-11-21T10:01:00Z" if status == "resolved" else "0001-01-01T00:00:00Z", **labels)
    body = am_body([alert], group_key=f'{{}}:{{cluster="{cluster}", service="{service}"}}')
    with unit_of_work(factory) as session:
        delivery = deliveries.store(session, "alertmanager", body, {}, now)
        result = flows.ingest(session, alertmanager.parse(body), delivery.id, now, windows)
        deliveries.finish(session, delivery.id, now)
    return result


def carded(factory) -> list[Incident]:
    """The incidents that will get a card of their own in the channel."""
    return [i for i in incidents(factory) if i.card_version > 0]


def test_below_the_threshold_every_group_opens_its_own_incident(factory):
    results = [fire(factory, f"svc-{n}") for n in range(3)]
    assert all(r.opened for r in results)
    assert len({r.incident_id for r in results}) == 3
    assert not any(i.group_key.startswith(STORM_KEY_PREFIX) for i in incidents(factory))


def test_past_the_threshold_new_groups_share_one_storm_thread_that_is_not_root_caused(factory):
    own = [fire(factory, f"svc-{n}", now=NOW + timedelta(seconds=n)) for n in range(3)]
    folded = [fire(factory, f"svc-{n}", now=NOW + timedelta(seconds=n)) for n in range(3, 9)]
    storm_ids = {r.incident_id for r in folded}
    assert len(storm_ids) == 1 and folded[0].opened and not any(r.opened for r in folded[1:])
    (storm_id,) = storm_ids
    assert storm_id not in {r.incident_id for r in own}
    with unit_of_work(factory) as session:
        storm = session.get(Incident, storm_id)
        assert storm.group_key == f"{STORM_KEY_PREFIX}prod"
        assert storm.title.startswith("Alert storm in prod")
        assert (storm.alert_count, storm.firing_count) == (6, 6)
        members = session.execute(select(Incident).where(Incident.merged_into_id == storm_id)).scalars().all()
        assert len(members) == 6
        assert all((m.status, m.is_open, m.card_version) == ("merged", None, 0) for m in members)
        investigated = {row.incident_id for row in session.execute(select(Investigation)).scalars()}
    assert investigated == {r.incident_id for r in own} | {storm_id}, "members are never investigated on their own"
    assert len(carded(factory)) == 4, "three own cards and one storm card, not nine"


def test_a_folded_group_keeps_following_the_storm_after_the_window(factory):
    for n in range(3):
        fire(factory, f"svc-{n}")
    folded = fire(factory, "svc-late")
    much_later = NOW + timedelta(minutes=30)
    again = fire(factory, "svc-late", status="resolved", now=much_later)
    assert again.incident_id == folded.incident_id
    refire = fire(factory, "svc-late", now=much_later + timedelta(minutes=1))
    assert refire.incident_id == folded.incident_id and not refire.opened


def test_storms_are_per_cluster_and_another_cluster_is_untouched(factory):
    for n in range(3):
        fire(factory, f"svc-{n}", cluster="prod")
    elsewhere = fire(factory, "billing", cluster="staging")
    assert elsewhere.opened
    with unit_of_work(factory) as session:
        assert not session.get(Incident, elsewhere.incident_id).group_key.startswith(STORM_KEY_PREFIX)


def test_incidents_opened_before_the_window_do_not_make_a_storm(factory):
    for n in range(3):
        fire(factory, f"svc-{n}")
    later = fire(factory, "svc-new", now=NOW + timedelta(minutes=4))
    assert later.opened
    with unit_of_work(factory) as session:
        assert not session.get(Incident, later.incident_id).group_key.startswith(STORM_KEY_PREFIX)


def test_a_threshold_of_zero_turns_folding_off(factory):
    off = Windows(storm_incidents=0)
    results = [fire(factory, f"svc-{n}", windows=off) for n in range(8)]
    assert all(r.opened for r in results) and len(carded(factory)) == 8


def test_alerts_without_a_cluster_label_share_one_scope(factory):
    for n in range(3):
        fire(factory, f"svc-{n}", cluster=None)
    folded = fire(factory, "svc-x", cluster=None)
    with unit_of_work(factory) as session:
        assert session.get(Incident, folded.incident_id).group_key == f"{STORM_KEY_PREFIX}-"


def test_the_default_rule_is_five_open_incidents_within_three_minutes():
    assert (Windows().storm_incidents, Windows().storm) == (5, timedelta(minutes=3))


def test_a_repeat_of_an_own_incident_is_never_folded(factory):
    own = [fire(factory, f"svc-{n}") for n in range(3)]
    fire(factory, "svc-x")  # the storm begins
    repeat = fire(factory, "svc-0", now=NOW + timedelta(seconds=30))
    assert repeat.incident_id == own[0].incident_id



def test_a_storm_thread_gets_no_counting_notes_its_card_counts(factory):
    for n in range(3):
        fire(factory, f"svc-{n}")
    folded = [fire(factory, f"svc-x{n}", now=NOW + timedelta(seconds=n)) for n in range(4)]
    fire(factory, "svc-x0", status="resolved", now=NOW + timedelta(seconds=10))
    with unit_of_work(factory) as session:
        storm = session.get(Incident, folded[0].incident_id)
        assert (storm.alert_count, storm.firing_count) == (4, 3)
        assert not {"new_firing", "resolved"} & set(storm.note_pending or {})
        own = session.get(Incident, 1)
    fire(factory, "svc-0", now=NOW + timedelta(seconds=20), status="resolved")
    with unit_of_work(factory) as session:
        assert "resolved" in (session.get(Incident, own.id).note_pending or {}), "other threads still count"


def test_a_pagerduty_incident_is_never_folded_it_was_triaged_there(factory):
    from dataclasses import replace

    for n in range(3):
        fire(factory, f"svc-{n}")
    body = am_body([am_alert(alertname="PagerDutyIncident", cluster="prod", service="pd")], group_key="pd-incident")
    batch = replace(alertmanager.parse(body), source="pagerduty")
    with unit_of_work(factory) as session:
        delivery = deliveries.store(session, "alertmanager", body, {}, NOW)
        result = flows.ingest(session, batch, delivery.id, NOW, WINDOWS)
        assert not session.get(Incident, result.incident_id).group_key.startswith(STORM_KEY_PREFIX)
    assert result.opened


def test_a_sender_key_that_looks_like_a_storms_never_passes_for_one(factory):
    """A groupKey (or a key template filled from labels) is outside data: one that starts like
    a storm key opens an ordinary incident, and does not collect other groups."""
    body = am_body([am_alert(alertname="HighErrorRate", cluster="prod", service="x")],
                   group_key="opsbot-storm/prod")
    with unit_of_work(factory) as session:
        delivery = deliveries.store(session, "alertmanager", body, {}, NOW)
        disguised = flows.ingest(session, alertmanager.parse(body), delivery.id, NOW, WINDOWS)
        assert not session.get(Incident, disguised.incident_id).group_key.startswith(STORM_KEY_PREFIX)
    for n in range(2):
        fire(factory, f"svc-{n}")
    folded = fire(factory, "svc-late")
    assert folded.incident_id != disguised.incident_id, "the real storm is an incident of its own"


def test_a_cluster_label_longer_than_the_column_is_cut_as_stored_and_still_folds(factory):
    long_cluster = "c" * 300
    for n in range(3):
        fire(factory, f"svc-{n}", cluster=long_cluster)
    folded = fire(factory, "svc-late", cluster=long_cluster)
    with unit_of_work(factory) as session:
        storm = session.get(Incident, folded.incident_id)
        assert storm.group_key.startswith(STORM_KEY_PREFIX) and len(storm.cluster) == 128
