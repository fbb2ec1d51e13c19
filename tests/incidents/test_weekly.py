"""The week's numbers (`bot.incidents.weekly`) and their `/metrics` gauges, on SQLite and
PostgreSQL: incidents, alerts, RCAs, steps, approvals and timeline entries stored with known
times, and every figure checked against what those times give by hand."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString
from sqlalchemy import event, select

from bot.alerts.fingerprints import key_hash
from bot.db.engine import make_session_factory, reading, unit_of_work
from bot.db.models import Alert, Incident, Investigation, Proposal, ProposalApproval
from bot.incidents.weekly import MAX_WEEKS, _Timed, _timed, week_label, week_start, weekly_numbers
from bot.metrics import Metrics
from bot.postmortem.facts import postmortem_facts
from bot.runtime import build_runtime
from bot.timeline import chain
from bot.web import HttpServer, create_web_app
from tests.conftest import make_settings

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47
NOW = MONDAY + timedelta(days=3, hours=12)  # Thursday noon: the week so far


def at(days: float, hours: float = 0, minutes: float = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hours, minutes=minutes)


def add_incident(session, created: datetime, *, status: str = "open", resolved: datetime | None = None,
                 merged_into: int | None = None) -> int:
    incident = Incident(
        group_key=f"g{created.isoformat()}", group_key_hash=key_hash(f"g{created.isoformat()}"),
        is_open=True if status in ("open", "resolved") else None, status=status, source="alertmanager",
        title="KubePodCrashLooping", created_at=created, updated_at=created, resolved_at=resolved,
        merged_into_id=merged_into, links={}, note_pending={}, card_version=1, card_synced_version=1)
    session.add(incident)
    session.flush()
    return incident.id


def add_alert(session, incident_id: int, fingerprint: str, first_seen: datetime,
              starts: datetime | None = None) -> None:
    session.add(Alert(incident_id=incident_id, source="alertmanager", fingerprint=fingerprint, name="Alert",
                      status="firing", labels={}, annotations={}, starts_at=starts, first_seen_at=first_seen,
                      last_seen_at=first_seen))


def add_rca(session, incident_id: int, status: str, finished: datetime) -> None:
    result = {"hypotheses": [{"category": "bad_deploy", "resource": "Deployment/shop/api"}]} if status == "done" \
        else None
    session.add(Investigation(incident_id=incident_id, status=status, not_before=finished, created_at=finished,
                              started_at=finished, finished_at=finished, result=result))


def add_step(session, incident_id: int, created: datetime, status: str, *, by: str = "opsbot",
             autonomy: str = "approve", approvers: tuple[str, ...] = (), started: datetime | None = None,
             finished: datetime | None = None) -> None:
    step = Proposal(incident_id=incident_id, runbook_id="rollback-deployment", step_id="rollback",
                    title="Roll back", params={}, target="Deployment/shop/api", risk="medium", autonomy=autonomy,
                    requested_by=by, status=status, decision={"decision": "needs_approval"}, plan={},
                    expires_at=created + timedelta(hours=1), created_at=created, updated_at=finished or created,
                    started_at=started, finished_at=finished)
    session.add(step)
    session.flush()
    for user in approvers:
        session.add(ProposalApproval(proposal_id=step.id, user_id=user, at=started or created))


def acknowledge(session, incident_id: int, when: datetime) -> None:
    chain.append(session, incident_id, "incident.acknowledged", "slack:U1", {"by": "alice"}, when)


def build_week(factory) -> dict[str, int]:
    """Six incidents around 2026-W47 (times in the comments are from Monday 00:00 UTC)."""
    with unit_of_work(factory) as session:
        # E: opened the week before, a bot step succeeded then, resolved on the stroke of Monday:
        # resolved this week, bot-mitigated.
        e = add_incident(session, at(-2), status="resolved", resolved=MONDAY)
        add_alert(session, e, "e1", at(-2), starts=at(-2))
        add_step(session, e, at(-2, 1), "succeeded", approvers=("U1",), started=at(-2, 1), finished=at(-2, 1, 5))
        # A: first alert Tue 09:58, RCA 10:01, acknowledged 10:03, a bot step approved and succeeded
        # at 10:08, resolved 10:20: bot-mitigated. F, opened 11:00, was merged into it.
        a = add_incident(session, at(1, 10), status="resolved", resolved=at(1, 10, 20))
        add_alert(session, a, "a1", at(1, 10), starts=at(1, 9, 58))
        f = add_incident(session, at(1, 11), status="merged", merged_into=a)
        add_alert(session, a, "f1", at(1, 11))  # moved from F when it merged
        add_rca(session, a, "done", at(1, 10, 1))
        acknowledge(session, a, at(1, 10, 3))
        add_step(session, a, at(1, 10, 2), "succeeded", approvers=("U1",), started=at(1, 10, 6),
                 finished=at(1, 10, 8))
        # B: first alert Wed 08:00, RCA 08:02, an auto-run step rolled back, acknowledged 08:10,
        # resolved 09:00 by people: bot-assisted.
        b = add_incident(session, at(2, 8), status="resolved", resolved=at(2, 9))
        add_alert(session, b, "b1", at(2, 8))
        add_rca(session, b, "done", at(2, 8, 2))
        add_step(session, b, at(2, 8, 2), "rolled_back", autonomy="auto", started=at(2, 8, 3),
                 finished=at(2, 8, 9))
        acknowledge(session, b, at(2, 8, 10))
        # C: declared Wed 12:00 (no alert), its RCA failed, nobody acknowledged, resolved 12:30.
        c = add_incident(session, at(2, 12), status="resolved", resolved=at(2, 12, 30))
        add_rca(session, c, "failed", at(2, 12, 5))
        # D: still open; first alert Thu 00:59, RCA 01:05, acknowledged 01:09, and every kind of step.
        d = add_incident(session, at(3, 1))
        add_alert(session, d, "d1", at(3, 1), starts=at(3, 0, 59))
        add_alert(session, d, "d2", at(3, 1, 2))
        add_rca(session, d, "done", at(3, 1, 5))
        acknowledge(session, d, at(3, 1, 9))
        step = at(3, 1, 6)
        add_step(session, d, step, "rejected", by="slack:U2")
        add_step(session, d, step, "proposed", approvers=("U1",))  # 1 approval of 2: not approved
        add_step(session, d, step, "observed", autonomy="observe")  # only written to the timeline
        add_step(session, d, step, "approved", autonomy="auto")  # allowed, waiting for a worker
        add_step(session, d, step, "denied", approvers=("U3",), started=step)  # approved, denied at execution
        add_step(session, d, step, "denied")  # denied when proposed
        add_step(session, d, step, "failed", by="slack:U2", approvers=("U1",), started=step, finished=step)
    return {"A": a, "B": b, "C": c, "D": d, "E": e, "F": f}


def test_every_figure_of_a_week_and_the_one_before(engine):
    factory = make_session_factory(engine)
    build_week(factory)
    with reading(factory) as session:
        before, week = weekly_numbers(session, NOW, weeks=2)
    assert (week.week, week.start, week.end, week.so_far) == ("2026-W47", MONDAY, MONDAY + timedelta(days=7), True)
    assert (week.opened, week.resolved) == (4, 4), "A B C D opened (F was merged into A); E A B C resolved"
    assert (week.alerts, week.noise_reduction) == (5, 1.25), "a1 f1 b1 d1 d2 for 4 incidents"
    assert (week.tta.count, week.tta.mean_seconds, week.tta.median_seconds) == (3, 500.0, 600.0)  # 300 600 600
    assert (week.ttd.count, week.ttd.mean_seconds, week.ttd.median_seconds) == (3, 220.0, 180.0)  # 180 120 360
    # 1320 (A), 3600 (B), 1800 (C), 172800 (E: two days from its first alert)
    assert (week.ttr.count, week.ttr.mean_seconds, week.ttr.median_seconds) == (4, 44880.0, 2700.0)
    assert week.steps == {"proposed": 8, "approved": 3, "auto_run": 2, "rejected": 1, "succeeded": 1,
                          "rolled_back": 1, "failed": 1}
    assert week.resolutions == {"bot-mitigated": 2, "bot-assisted": 1, "human-resolved": 1}, "E A, B, C"
    assert [week.share(kind) for kind in week.resolutions] == [0.5, 0.25, 0.25]

    assert (before.week, before.so_far, before.opened, before.resolved, before.alerts) == ("2026-W46", False, 1, 0, 1)
    assert (before.tta.count, before.tta.mean_seconds, before.ttr.count) == (0, None, 0)
    assert before.steps == {"proposed": 1, "approved": 1, "auto_run": 0, "rejected": 0, "succeeded": 1,
                            "rolled_back": 0, "failed": 0}
    assert before.share("bot-mitigated") is None and before.noise_reduction == 1.0


def test_each_incidents_times_and_kind_are_those_of_its_postmortem(engine):
    """The week reads its inputs in bulk; each incident's figures must still be its postmortem's."""
    factory = make_session_factory(engine)
    build_week(factory)
    with reading(factory) as session:
        incidents = list(session.execute(select(Incident)).scalars())
        timed = _timed(session, incidents, select(Incident.id))
        for incident in incidents:
            facts = postmortem_facts(session, incident.id)
            durations = facts["durations"]
            assert timed[incident.id] == _Timed(durations["tta"], durations["ttd"], durations["ttr"],
                                                facts["resolution"]), incident.id


def test_a_week_with_nothing_in_it_has_zeros_and_no_made_up_times(engine):
    with reading(make_session_factory(engine)) as session:
        (week,) = weekly_numbers(session, NOW)
    assert (week.opened, week.resolved, week.alerts, week.noise_reduction) == (0, 0, 0, None)
    assert week.ttr.mean_seconds is None and set(week.steps.values()) == {0}
    assert week.share("human-resolved") is None


def test_an_incident_resolved_then_closed_still_counts_as_resolved(engine):
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        add_incident(session, at(1), status="closed", resolved=at(1, 1))
    with reading(factory) as session:
        (week,) = weekly_numbers(session, NOW)
    assert week.resolved == 1 and week.ttr.count == 1 and week.share("human-resolved") == 1.0


def test_iso_weeks_in_utc_and_bad_arguments():
    assert week_start(MONDAY) == MONDAY
    assert week_start(MONDAY - timedelta(microseconds=1)) == MONDAY - timedelta(days=7)
    new_year = week_start(datetime(2027, 1, 1, 12, tzinfo=UTC))  # a Friday in 2026's 53rd week
    assert (new_year, week_label(new_year)) == (datetime(2026, 12, 28, tzinfo=UTC), "2026-W53")
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly_numbers(None, datetime(2026, 11, 19))
    for weeks in (0, MAX_WEEKS + 1, 1.5, True):
        with pytest.raises(ValueError, match="whole number"):
            weekly_numbers(None, NOW, weeks=weeks)


# -- /metrics ----------------------------------------------------------------------------------


def test_metrics_serves_the_current_weeks_numbers(database_url, engine, slack):
    with ExitStack() as stack:
        runtime = build_runtime(make_settings(database_url, slack), clock=lambda: NOW)
        stack.callback(runtime.close)
        build_week(runtime.factory)
        server = HttpServer(create_web_app(runtime, with_slack=False), "127.0.0.1", 0, threads=2)
        url = server.start()
        stack.callback(server.stop)
        text = requests.get(f"{url}/metrics", timeout=10).text
    for line in (f"opsbot_week_start_timestamp_seconds {floatToGoString(MONDAY.timestamp())}",
                 'opsbot_week_incidents{state="opened"} 4.0', 'opsbot_week_incidents{state="resolved"} 4.0',
                 "opsbot_week_alerts 5.0", "opsbot_week_alerts_per_incident 1.25",
                 "opsbot_week_mtta_seconds 500.0", "opsbot_week_tta_median_seconds 600.0",
                 "opsbot_week_mttd_seconds 220.0", "opsbot_week_mttr_seconds 44880.0",
                 "opsbot_week_ttr_median_seconds 2700.0", 'opsbot_week_timed_incidents{time="ttr"} 4.0',
                 'opsbot_week_steps{figure="proposed"} 8.0', 'opsbot_week_steps{figure="auto_run"} 2.0',
                 'opsbot_week_steps{figure="rolled_back"} 1.0',
                 'opsbot_week_resolutions{kind="bot-mitigated"} 2.0',
                 'opsbot_week_resolution_share{kind="bot-mitigated"} 0.5',
                 'opsbot_week_resolution_share{kind="human-resolved"} 0.25'):
        assert f"\n{line}\n" in text, line


def _statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def _storm(registry, scrapes: int = 8) -> None:
    threads = [threading.Thread(target=generate_latest, args=(registry,)) for _ in range(scrapes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_scrape_storm_costs_one_query_set_per_interval(engine):
    factory = make_session_factory(engine)
    build_week(factory)
    tick = [0.0]
    metrics = Metrics()
    metrics.watch_weeks(factory, lambda: NOW, ttl_seconds=60, monotonic=lambda: tick[0])
    assert metrics.watch_weeks(factory, lambda: NOW) is metrics.weeks, "registered once"
    seen = _statements(engine)
    assert b'opsbot_week_incidents{state="opened"} 4.0' in generate_latest(metrics.registry)
    assert seen, "the first scrape reads the database"
    with unit_of_work(factory) as session:
        add_incident(session, at(3, 2))
    seen.clear()
    tick[0] = 59.0
    _storm(metrics.registry)
    assert b'opsbot_week_incidents{state="opened"} 4.0' in generate_latest(metrics.registry)
    assert seen == [], "within the interval, scrapes are answered from the cache"
    tick[0] = 60.0
    _storm(metrics.registry)
    storm = len(seen)
    assert b'opsbot_week_incidents{state="opened"} 5.0' in generate_latest(metrics.registry)
    seen.clear()
    tick[0] = 120.0
    generate_latest(metrics.registry)
    assert storm == len(seen) > 0, "eight scrapes of a stale cache read the database as often as one"


def test_metrics_answer_without_the_weeks_numbers_when_the_database_cannot_give_them(database_url):
    from bot.db.engine import make_engine

    unmigrated = make_engine(database_url)  # no tables: every query fails
    try:
        metrics = Metrics()
        metrics.watch_weeks(make_session_factory(unmigrated), lambda: NOW)
        text = generate_latest(metrics.registry).decode()
    finally:
        unmigrated.dispose()
    assert "opsbot_pending_deliveries 0.0" in text
    assert "opsbot_week_incidents{" not in text and "opsbot_week_mtta_seconds " not in text
