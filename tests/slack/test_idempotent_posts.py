"""Posting once across lost answers: `bot.incidents.slack_posts` against the Slack emulator.

The emulator applies a post and holds its answer longer than the client waits (the answer is
lost, as when the bot dies mid-call); the retry must find the message by the marker in its
metadata instead of posting a second one, and a retry whose earlier attempt never reached
Slack must post exactly once.
"""

from datetime import UTC, datetime

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import SlackPostIntent
from bot.incidents import slack_posts
from bot.incidents.slack_posts import PostSpec, forget, post_once
from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID
from bot.slack.gateway import SlackGateway, SlackRetryLater, make_web_client
from tests.incidents.helpers import incidents, ingest
from tests.payloads import am_alert

CLIENT_TIMEOUT_SECONDS = 1


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


@pytest.fixture
def incident_id(factory) -> int:
    ingest(factory, [am_alert(pod="a")])
    return incidents(factory)[0].id


@pytest.fixture
def gateway(slack) -> SlackGateway:
    """No client retries and a short timeout: a held answer is a lost answer."""
    return SlackGateway(WebClient(token=slack.bot_token, base_url=slack.base_url, timeout=CLIENT_TIMEOUT_SECONDS,
                                  retry_handlers=[]))


def now() -> datetime:
    return datetime.now(UTC)


def reads(slack) -> list[str]:
    return [c.method for c in slack.calls if c.method.startswith("conversations.")]


def lose_the_answer(slack, factory, gateway, spec: PostSpec, text: str) -> dict:
    """Post with the answer held past the client's timeout: applied in Slack, unknown to the bot."""
    held = slack.delay_answer("chat.postMessage", seconds=CLIENT_TIMEOUT_SECONDS + 2)
    with pytest.raises(SlackRetryLater):
        post_once(factory, gateway, now, spec, text)
    held.release()
    return held.wait_applied().response


@pytest.mark.parametrize("channel", ["#incidents", DEFAULT_CHANNEL_ID])
def test_a_root_message_whose_answer_was_lost_is_adopted_not_posted_twice(slack, factory, gateway, incident_id,
                                                                          channel):
    spec = PostSpec(incident_id, "card", channel)
    first = lose_the_answer(slack, factory, gateway, spec, "card v1")
    assert len(slack.messages()) == 1, "Slack applied the post"

    result = post_once(factory, gateway, now, spec, "card v2")

    assert result.adopted and result.message.ts == first["ts"] and result.message.channel == DEFAULT_CHANNEL_ID
    assert [m["text"] for m in slack.messages()] == ["card v1"], "no second root message"
    assert len(slack.calls_to("chat.postMessage")) == 1
    history = slack.calls_to("conversations.history")[-1]
    assert history.args["include_all_metadata"] in (True, "true", "1") and float(history.args["oldest"]) > 0


def test_a_thread_reply_whose_answer_was_lost_is_found_among_the_replies(slack, factory, gateway, incident_id):
    root = slack.add_message(DEFAULT_CHANNEL_ID, "someone's root", user="U0ALICE")
    slack.add_message(DEFAULT_CHANNEL_ID, "a human reply", thread_ts=root)
    spec = PostSpec(incident_id, "rca:1", DEFAULT_CHANNEL_ID, root)
    first = lose_the_answer(slack, factory, gateway, spec, "RCA")
    other = PostSpec(incident_id, "proposal:1", DEFAULT_CHANNEL_ID, root)  # another of the bot's replies
    post_once(factory, gateway, now, other, "proposal")

    result = post_once(factory, gateway, now, spec, "RCA")

    assert result.adopted and result.message.ts == first["ts"]
    assert [m["text"] for m in slack.thread(DEFAULT_CHANNEL_ID, root)] == ["someone's root", "a human reply", "RCA",
                                                                             "proposal"]
    assert reads(slack) == ["conversations.replies"], "one thread read, and none on the first attempts"


def test_an_earlier_attempt_that_never_reached_slack_is_posted_once(slack, factory, gateway, incident_id):
    spec = PostSpec(incident_id, "card", DEFAULT_CHANNEL_ID)
    slack.inject("chat.postMessage", status=503, retry_after=None)
    with pytest.raises(SlackRetryLater):
        post_once(factory, gateway, now, spec, "card")
    assert slack.messages() == []

    result = post_once(factory, gateway, now, spec, "card")

    assert not result.adopted
    (card,) = slack.messages()
    assert card["ts"] == result.message.ts
    assert reads(slack) == ["conversations.history"], "searched once (not found), then posted"


def test_the_first_attempt_costs_no_read_and_a_stored_ts_ends_the_intent(slack, factory, gateway, incident_id):
    spec = PostSpec(incident_id, "card", DEFAULT_CHANNEL_ID)
    result = post_once(factory, gateway, now, spec, "card")
    assert not result.adopted and reads(slack) == []
    (card,) = slack.messages()
    assert card["metadata"] == {"event_type": "opsbot_post",
                                "event_payload": {"marker": card["metadata"]["event_payload"]["marker"],
                                                  "purpose": "card"}}
    with unit_of_work(factory) as session:
        assert session.execute(select(SlackPostIntent)).scalar_one().purpose == "card"
        forget(session, incident_id, "card")
    with unit_of_work(factory) as session:
        assert session.execute(select(SlackPostIntent)).first() is None


def test_only_the_bots_own_message_with_the_marker_counts():
    """A person's message never carries a bot_id, whatever its metadata says."""
    lookalike = {"type": "message", "user": "U0ALICE", "text": "x", "ts": "1.0",
                 "metadata": slack_posts.marker_metadata("m1", "card")}
    assert not slack_posts._carries(lookalike, "m1")
    assert slack_posts._carries({**lookalike, "bot_id": "B0OPSBOT"}, "m1")
    assert not slack_posts._carries({**lookalike, "bot_id": "B0OPSBOT"}, "m2")


def test_a_search_slack_refuses_falls_back_to_posting(slack, factory, gateway, incident_id):
    """No history scope (an app installed from an older manifest): post again, never lose it."""
    spec = PostSpec(incident_id, "card", DEFAULT_CHANNEL_ID)
    slack.inject("chat.postMessage", status=503, retry_after=None)
    with pytest.raises(SlackRetryLater):
        post_once(factory, gateway, now, spec, "card")
    slack.inject("conversations.history", status=200, error="missing_scope")
    result = post_once(factory, gateway, now, spec, "card")
    assert not result.adopted and len(slack.messages()) == 1


def test_the_search_is_bounded_by_pages(slack, factory, gateway, incident_id, monkeypatch):
    monkeypatch.setattr(slack_posts, "SEARCH_PAGE_LIMIT", 2)
    spec = PostSpec(incident_id, "card", DEFAULT_CHANNEL_ID)
    lose_the_answer(slack, factory, gateway, spec, "card")
    for i in range(2 * slack_posts.SEARCH_MAX_PAGES):  # newer messages push it past the last page
        slack.add_message(DEFAULT_CHANNEL_ID, f"chatter {i}")
    result = post_once(factory, gateway, now, spec, "card")
    assert not result.adopted
    assert len(slack.calls_to("conversations.history")) == slack_posts.SEARCH_MAX_PAGES


def test_the_http_client_never_resends_a_post_whose_answer_was_lost(slack, factory, incident_id):
    """With the client the bot runs (`make_web_client`, which retries dropped connections), a
    post whose connection closes after Slack applied it is not sent again blindly: the retry
    of the caller finds it."""
    gateway = SlackGateway(make_web_client(slack.bot_token, slack.base_url))
    spec = PostSpec(incident_id, "card", DEFAULT_CHANNEL_ID)
    slack.delay_answer("chat.postMessage", seconds=0, drop=True)
    with pytest.raises(SlackRetryLater):
        post_once(factory, gateway, now, spec, "card")
    assert len(slack.messages()) == 1 and len(slack.calls_to("chat.postMessage")) == 1
    assert post_once(factory, gateway, now, spec, "card").adopted
    assert len(slack.messages()) == 1
