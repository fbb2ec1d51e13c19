"""Replayed PagerDuty webhooks: a signed delivery re-posted byte for byte after the duplicate
window (the bot's clock moved past it), before its original was applied, or after its id was
forgotten, and a late state change older than the incident's state. Through the running bot,
the PagerDuty emulator (its webhook sender signs each delivery as PagerDuty does) and the
Slack emulator's thread."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery, SeenRequest
from bot.incidents.pagerduty_flow import REPLAY_KEEP
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from bot.sandbox.pagerduty_webhook_sender import WebhookDelivery
from bot.sandbox.pagerduty_webhooks import signed, user_reference, webhook_event
from tests.concurrency import eventually
from tests.conftest import RunningBot, make_settings, serve_on
from tests.handlers.test_intake_rules import card_json, roots
from tests.handlers.test_pagerduty_intake import SECRET, kinds, pd_bot
from tests.pagerduty.conftest import SteppedClock

NOTE = "Note added in PagerDuty"


@dataclass
class World:
    bot: RunningBot
    pd: PagerDutyEmulator
    clock: SteppedClock  # the bot's
    pd_clock: SteppedClock  # PagerDuty's: people act some time apart


@pytest.fixture
def world(database_url, slack, engine, tmp_path):  # noqa: F811 - engine migrates the database
    clock, pd_clock = SteppedClock(), SteppedClock()
    with ExitStack() as stack:
        pd = stack.enter_context(PagerDutyEmulator(clock=pd_clock))

        def start(**settings) -> RunningBot:
            bot = serve_on(stack, make_settings(database_url, slack, **settings), slack, clock=clock)
            stack.callback(bot.runtime.workers.stop)
            return bot
        yield World(pd_bot(start, pd, tmp_path), pd, clock, pd_clock)


def delivered(pd: PagerDutyEmulator, event_type: str) -> WebhookDelivery:
    """The last delivery of `event_type` the emulator's sender made (answered 2xx)."""
    pd.wait_for_webhooks()
    *_, last = [d for d in pd.deliveries if d.event_type == event_type]
    assert last.ok, last.error
    return last


def replay(bot: RunningBot, delivery: WebhookDelivery):
    """Re-post a captured delivery byte for byte, with its signature."""
    return bot.post_webhook("pagerduty", delivery.body, token=None, headers=delivery.headers)


def all_done(bot: RunningBot) -> bool:
    with unit_of_work(bot.runtime.factory) as session:
        return all(status == "done" for status in session.execute(select(RawDelivery.status)).scalars())


def incident(bot: RunningBot) -> Incident:
    with unit_of_work(bot.runtime.factory) as session:
        row = session.get(Incident, 1)
        session.expunge(row)
        return row


def thread(slack) -> list[str]:
    root = roots(slack)[0]
    return [message["text"] for message in slack.thread(root["channel"], root["ts"])[1:]]


def test_a_resolve_replayed_after_the_duplicate_window_does_not_undo_a_reopen(world, slack):
    bot, pd = world.bot, world.pd
    pd_id = pd.trigger_incident("Queue backlog growing", urgency="high")
    slack.wait_for(roots, timeout=15)
    world.pd_clock.advance(60)
    pd.resolve(pd_id, by="Bob")
    slack.wait_for(lambda emu: "Resolved by source" in card_json(emu), timeout=15)
    resolve = delivered(pd, "incident.resolved")
    world.pd_clock.advance(60)
    pd.reopen(pd_id, by="Carol")
    slack.wait_for(lambda emu: "Resolved by source" not in card_json(emu), timeout=15)
    eventually(lambda: all_done(bot) and incident(bot).status == "open")

    world.clock.advance(bot.runtime.settings.duplicate_window_seconds + 5)
    response = replay(bot, resolve)
    assert (response.status_code, response.json()["status"]) == (200, "duplicate")

    # the same resolve re-sent under a new id (as a second subscription would): older than the reopen
    late = webhook_event("incident.resolved", resolve.payload["event"]["data"], user_reference("PBOB", "Bob"),
                         occurred_at=resolve.payload["event"]["occurred_at"])
    body, headers = signed(late, [SECRET])
    assert bot.post_webhook("pagerduty", body, token=None, headers=headers).status_code == 202
    eventually(lambda: "pagerduty.ignored" in kinds(bot))
    assert all_done(bot) and incident(bot).status == "open"
    assert kinds(bot).count("incident.resolved") == 1
    assert "Resolved by source" not in card_json(slack)


def test_a_replay_stored_before_its_original_was_applied_adds_no_second_note(world, slack):
    bot, pd = world.bot, world.pd
    pd_id = pd.trigger_incident("Checkout latency p99 above 2s", urgency="high")
    slack.wait_for(roots, timeout=15)
    eventually(lambda: all_done(bot))
    bot.runtime.workers.stop()  # the original waits in the table while its replay arrives
    pd.annotate(pd_id, "rolled back to v41", by="Bob")
    note = delivered(pd, "incident.annotated")
    world.clock.advance(bot.runtime.settings.duplicate_window_seconds + 5)
    assert replay(bot, note).status_code == 202, "not applied yet: stored, and refused by the flow"
    bot.runtime.workers.start()
    eventually(lambda: all_done(bot))
    slack.wait_for(lambda emu: any(NOTE in text for text in thread(emu)), timeout=15)
    assert kinds(bot).count("pagerduty.annotated") == 1

    response = replay(bot, note)  # once applied, a replay is answered at the door
    assert (response.status_code, response.json()["status"]) == (200, "duplicate")
    eventually(lambda: incident(bot).card_synced_version >= incident(bot).card_version)
    # one note (the thread may also say, in the same message, why there is no RCA: no Kubernetes labels)
    (said,) = [text for text in thread(slack) if NOTE in text]
    assert said.startswith(":pager: Note added in PagerDuty by Bob") and said.count(NOTE) == 1


def test_an_event_older_than_its_forgotten_id_is_still_refused(world, slack):
    bot, pd = world.bot, world.pd
    pd_id = pd.trigger_incident("Disk almost full on db-1", urgency="low")
    slack.wait_for(roots, timeout=15)
    pd.annotate(pd_id, "cleaning up old WAL files", by="Bob")
    note = delivered(pd, "incident.annotated")
    eventually(lambda: all_done(bot) and "pagerduty.annotated" in kinds(bot))

    world.clock.advance(REPLAY_KEEP.total_seconds() + 60)

    def forgotten() -> bool:  # the housekeeping loop prunes the replay guard's expired ids
        with unit_of_work(bot.runtime.factory) as session:
            return session.execute(select(SeenRequest)).first() is None
    eventually(forgotten)
    assert replay(bot, note).status_code == 202
    eventually(lambda: all_done(bot))
    assert kinds(bot).count("pagerduty.annotated") == 1, "refused for its age: no replay outlives its id"
