"""Card delivery through the gateway when Slack misbehaves (emulator-injected faults)."""

from slack_sdk import WebClient
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import TimelineEntry
from tests.payloads import am_alert, am_body


def kinds(bot):
    with unit_of_work(bot.runtime.factory) as session:
        return [entry.kind for entry in session.execute(select(TimelineEntry).order_by(TimelineEntry.id)).scalars()]


def test_a_429_delays_the_card_by_retry_after_and_never_loses_it(bot, slack):
    slack.inject("chat.postMessage", status=429, retry_after=1, times=1)
    bot.post_webhook("alertmanager", am_body([am_alert(pod="a")]))
    slack.wait_for(lambda emu: emu.messages(), timeout=15)
    attempts = slack.calls_to("chat.postMessage")
    assert [call.status for call in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 0.9, "Retry-After honoured"
    slack.wait_for(lambda emu: "slack.recovered" in kinds(bot))
    slack_kinds = [kind for kind in kinds(bot) if kind.startswith("slack.")]
    assert slack_kinds[-3:] == ["slack.failed", "slack.card_posted", "slack.recovered"]


def test_a_slack_outage_longer_than_the_client_retry_defers_the_card(bot, slack):
    slack.inject("chat.postMessage", status=503, retry_after=None, times=2)  # the client retries once
    bot.post_webhook("alertmanager", am_body([am_alert(pod="a")]))
    slack.wait_for(lambda emu: emu.messages(), timeout=15)
    assert [call.status for call in slack.calls_to("chat.postMessage")] == [503, 503, 200]
    slack.wait_for(lambda emu: "slack.recovered" in kinds(bot))
    with unit_of_work(bot.runtime.factory) as session:
        failed = session.execute(select(TimelineEntry).where(TimelineEntry.kind == "slack.failed")).scalar_one()
    assert failed.payload["error"] == "http_503"


def test_a_channel_the_bot_cannot_post_to_is_reported_with_a_hint(bot, slack):
    slack.inject("chat.postMessage", status=200, error="not_in_channel", retry_after=None, times=1)
    bot.post_webhook("alertmanager", am_body([am_alert(pod="a")]))
    slack.wait_for(lambda emu: emu.messages(), timeout=15)
    with unit_of_work(bot.runtime.factory) as session:
        failed = session.execute(select(TimelineEntry).where(TimelineEntry.kind == "slack.failed")).scalar_one()
    assert failed.payload["hint"] == "invite the bot to the channel"


def test_a_deleted_card_is_posted_again_on_the_next_change(bot, slack):
    bot.post_webhook("alertmanager", am_body([am_alert(pod="a")]))
    (card,) = slack.wait_for(lambda emu: emu.messages())
    WebClient(token=slack.bot_token, base_url=slack.base_url).chat_delete(channel=card["channel"], ts=card["ts"])
    bot.post_webhook("alertmanager", am_body([am_alert(pod="a"), am_alert(pod="b")]))
    (new_card,) = slack.wait_for(lambda emu: emu.messages())
    assert new_card["ts"] != card["ts"] and "2 firing" in str(new_card["blocks"])
