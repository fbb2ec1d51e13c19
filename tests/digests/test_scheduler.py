"""Digest scheduling: slots from cron and time zone, posted exactly once across replicas, a missed
slot caught up once, a dead run's post adopted instead of repeated, failures said in the digest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.engine import make_session_factory, reading
from bot.db.models import DigestFinding, JobClaim
from bot.digests.config import DigestsConfig, Schedule
from bot.digests.flows import DigestRunner, manual_slot
from bot.digests.model import DigestReport, Finding
from bot.digests.scheduler import DigestScheduler, latest_slot, slot_name
from bot.slack.gateway import SlackGateway, make_web_client

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # 10:30 in Berlin (CET, UTC+1)
BERLIN_NINE = Schedule(digest="drift", channel="C0PLATFORM", cron="0 10 * * *", timezone="Europe/Berlin")


class Counting:
    """A builder that says what it found and counts how often it was built."""

    def __init__(self, findings: tuple[Finding, ...] = (), problems: tuple[str, ...] = ()):
        self.calls = 0
        self.findings, self.problems = findings, problems
        self.lock = threading.Lock()

    def __call__(self, _config, context) -> DigestReport:
        with self.lock:
            self.calls += 1
        return DigestReport(name="drift", title="Drift", generated_at=context.now,
                            headline=f"{len(self.findings)} objects drifted" if self.findings else "No drift",
                            findings=self.findings, problems=self.problems, summary={"objects": 3})


@pytest.fixture(autouse=True)
def channels(slack):
    slack.add_channel("C0PLATFORM", "platform")
    slack.add_channel("C1", "platform-2")


def runner(engine, slack, builder, owner: str, now: datetime = NOW) -> DigestRunner:
    gateway = SlackGateway(make_web_client(slack.bot_token, slack.base_url))
    return DigestRunner(make_session_factory(engine), gateway, clusters=None, config=DigestsConfig(),
                        clock=lambda: now, owner=owner, builders={"drift": builder})


def test_the_slot_is_the_cron_time_in_its_time_zone():
    slot = latest_slot(BERLIN_NINE, NOW, timedelta(hours=12))
    assert slot_name(slot) == "2026-12-07T09:00:00Z"  # 10:00 Berlin = 09:00 UTC in December
    assert latest_slot(BERLIN_NINE, NOW, timedelta(minutes=20)) is None  # older than the catch-up window
    summer = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert slot_name(latest_slot(BERLIN_NINE, summer, timedelta(hours=1))) == "2026-07-01T08:00:00Z"  # CEST
    weekdays = Schedule(digest="cost", channel="C1", cron="0 9 * * 1-5", timezone="UTC")
    sunday = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert latest_slot(weekdays, sunday, timedelta(hours=30)) is None  # Saturday and Sunday have no slot


def test_two_replicas_post_each_digest_exactly_once(engine, slack):
    builder = Counting(findings=(Finding(key="drift/a", section="Missing", subject="Deployment shop/a",
                                         detail="declared, not in the cluster", severity="critical"),))
    schedulers = [DigestScheduler(runner(engine, slack, builder, f"replica-{index}"), [BERLIN_NINE],
                                  lambda: NOW, timedelta(hours=12)) for index in range(2)]
    results: list = []
    threads = [threading.Thread(target=lambda s=s: results.extend(s.catch_up())) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.outcome for r in results) == ["posted", "taken"]
    assert builder.calls == 1
    posted = [m for m in slack.messages("C0PLATFORM") if "Drift digest" in str(m.get("blocks"))]
    assert len(posted) == 1
    # a third replica starting later (or a restart) catches up nothing: the slot is done
    again = DigestScheduler(runner(engine, slack, builder, "replica-2"), [BERLIN_NINE], lambda: NOW)
    assert [r.outcome for r in again.catch_up()] == ["taken"]
    assert len([m for m in slack.messages("C0PLATFORM") if "Drift digest" in str(m.get("blocks"))]) == 1
    with reading(make_session_factory(engine)) as session:
        claim = session.scalars(select(JobClaim)).one()
        assert (claim.slot, claim.outcome, claim.summary) == ("2026-12-07T09:00:00Z", "posted", {"objects": 3.0})


def test_apscheduler_fires_the_catch_up_on_start(engine, slack):
    builder = Counting()
    scheduler = DigestScheduler(runner(engine, slack, builder, "replica-0"), [BERLIN_NINE], lambda: NOW)
    scheduler.start()
    try:
        slack.wait_for(lambda s: [m for m in s.messages("C0PLATFORM") if "No drift" in str(m.get("blocks"))],
                       timeout=15)
    finally:
        scheduler.stop()
    assert builder.calls == 1


def test_a_dead_runs_post_is_adopted_not_repeated(engine, slack):
    factory = make_session_factory(engine)
    slot = "2026-12-07T09:00:00Z"
    job = BERLIN_NINE.job
    with factory.begin() as session:  # a replica claimed the slot 20 minutes ago, posted, and died
        session.add(JobClaim(job=job, slot=slot, claimed_by="dead", claimed_at=NOW - timedelta(minutes=20),
                             summary={}))
    SlackGateway(make_web_client(slack.bot_token, slack.base_url)).post_message(
        "C0PLATFORM", "Drift digest", metadata={"event_type": "opsbot_digest",
                                                "event_payload": {"job": job, "slot": slot}})
    builder = Counting()
    result = runner(engine, slack, builder, "replica-1").run("drift", "C0PLATFORM", job, slot)
    assert result.outcome == "adopted" and builder.calls == 0
    assert len(slack.messages("C0PLATFORM")) == 1
    with reading(factory) as session:
        assert session.get(JobClaim, (job, slot)).outcome == "posted"


def test_a_claim_still_within_its_lease_is_not_taken_over(engine, slack):
    factory = make_session_factory(engine)
    with factory.begin() as session:
        session.add(JobClaim(job="digest:drift:C1", slot="s", claimed_by="alive", claimed_at=NOW - timedelta(minutes=1),
                             summary={}))
    assert runner(engine, slack, Counting(), "replica-1").run("drift", "C1", "digest:drift:C1", "s").outcome == "taken"


def test_findings_persist_and_a_fixed_one_is_reported_once(engine, slack):
    drifted = Finding(key="drift/x/replicas", section="Changed by hand", subject="Deployment shop/x",
                      detail="spec.replicas: declared 3, live 5")
    days = [NOW, NOW + timedelta(days=1), NOW + timedelta(days=2), NOW + timedelta(days=3)]
    plans = [(drifted,), (drifted,), (), ()]
    texts = []
    for day, findings in zip(days, plans, strict=True):
        result = runner(engine, slack, Counting(findings), "r", now=day).run("drift", "C1", "digest:drift:C1",
                                                                            manual_slot(day))
        assert result.outcome == "posted"
        texts.append(str(slack.messages("C1")[-1]["blocks"]))
    assert "still drifted since 07 Dec 2026" not in texts[0]
    assert "still drifted since 07 Dec 2026" in texts[1]
    assert "Fixed since the last digest" in texts[2] and "Deployment shop/x" in texts[2]
    assert "Fixed since the last digest" not in texts[3] and "No drift" in texts[3]
    with reading(make_session_factory(engine)) as session:
        assert session.get(DigestFinding, ("digest:drift:C1", "drift/x/replicas")).fixed_at == days[2]


def test_a_run_that_could_not_check_everything_marks_nothing_fixed(engine, slack):
    drifted = Finding(key="k", section="Missing", subject="Deployment shop/y", detail="missing")
    runner(engine, slack, Counting((drifted,)), "r").run("drift", "C1", "digest:drift:C1", "one")
    later = NOW + timedelta(days=1)
    result = runner(engine, slack, Counting(problems=("Kubernetes API unreachable",)), "r", now=later).run(
        "drift", "C1", "digest:drift:C1", "two")
    assert result.report.fixed == ()
    text = str(slack.messages("C1")[-1]["blocks"])
    assert "Could not check" in text and "Kubernetes API unreachable" in text and "Fixed since" not in text


def test_a_builder_that_raises_still_posts_a_digest_saying_so(engine, slack):
    def broken(_config, _context):
        raise RuntimeError("manifest reader crashed")

    result = runner(engine, slack, broken, "r").run("drift", "C1", "digest:drift:C1", "x")
    assert result.outcome == "posted"
    text = str(slack.messages("C1")[-1]["blocks"])
    assert "could not be built" in text and "manifest reader crashed" in text


def test_a_slack_failure_is_recorded_and_nothing_is_remembered(engine, slack):
    slack.inject("chat.postMessage", status=200, error="channel_not_found", retry_after=None)
    found = Finding(key="k", section="Missing", subject="Deployment shop/y", detail="missing")
    result = runner(engine, slack, Counting((found,)), "r").run("drift", "C404", "digest:drift:C404", "x")
    assert result.outcome == "failed" and "channel_not_found" in result.error
    with reading(make_session_factory(engine)) as session:
        claim = session.get(JobClaim, ("digest:drift:C404", "x"))
        assert claim.outcome == "failed" and "channel_not_found" in claim.error
        assert session.scalars(select(DigestFinding)).all() == []


def test_crontab_weekdays_count_from_sunday():
    from bot.digests.config import crontab_weekdays

    assert crontab_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_weekdays("0,6") == "sun,sat" and crontab_weekdays("7") == "sun"
    assert crontab_weekdays("*/2") == "sun,tue,thu,sat" and crontab_weekdays("mon-fri") == "mon-fri"


def test_a_finding_cut_from_a_top_n_section_is_not_reported_fixed(engine, slack):
    saving = Finding(key="cost/a", section="Oversized", subject="Deployment shop/a", detail="save $40/month")
    runner(engine, slack, Counting((saving,)), "r").run("drift", "C1", "digest:drift:C1", "one")

    def top_n_without_it(_config, context) -> DigestReport:
        return DigestReport(name="drift", title="Drift", generated_at=context.now, headline="top 10 savings",
                            partial_sections=("Oversized",))

    later = runner(engine, slack, top_n_without_it, "r", now=NOW + timedelta(days=1))
    assert later.run("drift", "C1", "digest:drift:C1", "two").report.fixed == ()
    with reading(make_session_factory(engine)) as session:
        assert session.get(DigestFinding, ("digest:drift:C1", "cost/a")).fixed_at is None
