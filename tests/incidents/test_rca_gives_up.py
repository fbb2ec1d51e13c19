"""An investigation that gives up says so in the incident's thread, through the running bot:
its RCA stage, card worker and the Slack emulator's thread, at a clock the test moves.
Prometheus is configured (and down), so the investigation runs instead of being skipped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.db.engine import unit_of_work
from bot.db.models import Alert, Incident, Investigation, TimelineEntry
from bot.incidents.investigations import MAX_ATTEMPTS
from tests.concurrency import eventually
from tests.conftest import RunningBot, make_settings, serve_on
from tests.handlers.test_intake_rules import roots
from tests.pagerduty.conftest import SteppedClock
from tests.payloads import am_alert, am_body

SETTLE_SECONDS = 600  # the investigation waits until the test moves the clock
NOTE = "No root cause analysis"


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def rca_bot(database_url, slack, engine, clock) -> Iterator[RunningBot]:  # noqa: F811 - engine migrates
    with ExitStack() as stack:
        settings = make_settings(database_url, slack, prometheus_url="http://127.0.0.1:9",
                                 investigation_settle_seconds=SETTLE_SECONDS)
        bot = serve_on(stack, settings, slack, clock=clock)
        stack.callback(bot.runtime.workers.stop)
        yield bot


def timeline(bot: RunningBot) -> list[TimelineEntry]:
    with unit_of_work(bot.runtime.factory) as session:
        entries = list(session.execute(select(TimelineEntry).order_by(TimelineEntry.seq)).scalars())
        session.expunge_all()
        return entries


def investigation(bot: RunningBot) -> Investigation:
    with unit_of_work(bot.runtime.factory) as session:
        row = session.execute(select(Investigation)).scalar_one()
        session.expunge(row)
        return row


def synced(bot: RunningBot) -> bool:
    """The card is as the incident is and no note is waiting."""
    with unit_of_work(bot.runtime.factory) as session:
        incident = session.get(Incident, 1)
        return incident.card_synced_version >= incident.card_version and not incident.note_pending


def thread(slack) -> list[str]:
    root = roots(slack)[0]
    return [message["text"] for message in slack.thread(root["channel"], root["ts"])[1:]]


def open_incident(bot: RunningBot, slack) -> None:
    assert bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="web-1")])).status_code == 202
    slack.wait_for(roots, timeout=15)


def test_an_investigation_that_fails_every_attempt_says_why_in_the_thread(rca_bot, slack, clock):
    open_incident(rca_bot, slack)
    # A row stored before alert times were checked at the door (the year-1 attack, on an older
    # version): the investigation's time arithmetic overflows on every attempt.
    with unit_of_work(rca_bot.runtime.factory) as session:
        session.execute(update(Alert).values(starts_at=datetime(1, 1, 1, 0, 1, tzinfo=UTC)))
    clock.advance(SETTLE_SECONDS)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        eventually(lambda n=attempt: [e.kind for e in timeline(rca_bot)].count("investigation.failed") == n,
                   timeout=20)
        clock.advance(31)  # past the retry delay
    (note,) = slack.wait_for(lambda emu: [text for text in thread(emu) if NOTE in text], timeout=15)
    assert f"gave up after {MAX_ATTEMPTS} attempts" in note and "OverflowError" in note
    (gave_up,) = [e for e in timeline(rca_bot) if e.kind == "investigation.gave_up"]
    assert "OverflowError" in gave_up.payload["reason"]
    row = investigation(rca_bot)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS) and row.posted_at is not None
    eventually(lambda: synced(rca_bot))
    assert [text for text in thread(slack) if NOTE in text] == [note], "told once"


def test_an_investigation_whose_worker_died_on_every_attempt_says_so(rca_bot, slack, clock):
    open_incident(rca_bot, slack)
    rca_bot.runtime.workers.stop()
    # what three crashes mid-investigation leave behind: running, its lease lapsed, no attempt left
    with unit_of_work(rca_bot.runtime.factory) as session:
        session.execute(update(Investigation).values(
            status="running", attempts=MAX_ATTEMPTS, lease_owner="replica-that-died:rca",
            lease_until=clock() - timedelta(seconds=1)))
    rca_bot.runtime.workers.start()
    (note,) = slack.wait_for(lambda emu: [text for text in thread(emu) if NOTE in text], timeout=15)
    assert "worker stopped or timed out" in note
    row = investigation(rca_bot)
    assert (row.status, row.lease_owner) == ("failed", None) and row.posted_at is not None
    assert "investigation.gave_up" in [e.kind for e in timeline(rca_bot)]


def test_a_failure_on_a_closed_incident_posts_nothing_into_its_old_thread(rca_bot, slack, clock):
    """What an upgrade finds: investigations that failed before the note existed, on incidents
    closed since. No note lands in a thread everyone has left."""
    open_incident(rca_bot, slack)
    rca_bot.runtime.workers.stop()
    with unit_of_work(rca_bot.runtime.factory) as session:
        session.execute(update(Investigation).values(status="failed", attempts=MAX_ATTEMPTS, error="OverflowError"))
        session.execute(update(Incident).values(is_open=None, status="closed"))
    rca_bot.runtime.workers.start()
    clock.advance(60)
    open_incident_again = am_body([am_alert(namespace="shop", pod="web-2")], group_key="another")
    assert rca_bot.post_webhook("alertmanager", open_incident_again).status_code == 202
    slack.wait_for(lambda emu: len(roots(emu)) == 2, timeout=15)  # the workers ran a full round since
    eventually(lambda: synced(rca_bot))
    assert [text for text in thread(slack) if NOTE in text] == []
    assert investigation_of(rca_bot, 1).posted_at is None


def investigation_of(bot: RunningBot, incident_id: int) -> Investigation:
    with unit_of_work(bot.runtime.factory) as session:
        row = session.execute(select(Investigation).where(Investigation.incident_id == incident_id)).scalar_one()
        session.expunge(row)
        return row
