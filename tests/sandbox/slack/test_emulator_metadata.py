"""Message metadata, conversations.list and held answers, through the real WebClient."""

from __future__ import annotations

import threading

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, GENERAL_CHANNEL_ID, SlackEmulator

META = {"event_type": "opsbot_post", "event_payload": {"marker": "m1", "purpose": "card"}}


def test_metadata_is_listed_only_when_asked_for(emu: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="root", metadata=META)["ts"]
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="reply", thread_ts=root, metadata=META)

    plain = client.conversations_history(channel=DEFAULT_CHANNEL_ID)["messages"]
    assert [m["text"] for m in plain] == ["root"] and "metadata" not in plain[0]
    full = client.conversations_history(channel=DEFAULT_CHANNEL_ID, include_all_metadata=True)["messages"]
    assert full[0]["metadata"] == META

    replies = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=root)["messages"]
    assert [m["text"] for m in replies] == ["root", "reply"] and all("metadata" not in m for m in replies)
    replies = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=root, include_all_metadata=True)
    assert [m["metadata"] for m in replies["messages"]] == [META, META]


def test_history_pages_newest_first_from_oldest(emu: SlackEmulator, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=f"m{i}")["ts"] for i in range(5)]
    first = client.conversations_history(channel=DEFAULT_CHANNEL_ID, oldest=stamps[1], limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"]
    cursor = first["response_metadata"]["next_cursor"]
    second = client.conversations_history(channel=DEFAULT_CHANNEL_ID, oldest=stamps[1], limit=2, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m2"] and not second["has_more"]
    assert second["response_metadata"]["next_cursor"] == ""


@pytest.mark.parametrize("metadata", [{"event_payload": {}}, {"event_type": "x"}, {"event_type": "", "event_payload": {}},
                                      {"event_type": "x", "event_payload": "not an object"}])
def test_malformed_metadata_is_refused_and_posts_nothing(emu: SlackEmulator, client: WebClient, metadata) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", metadata=metadata)
    assert excinfo.value.response["error"] == "invalid_metadata_format"
    assert emu.messages() == []


def test_conversations_list_finds_channels_by_type(emu: SlackEmulator, client: WebClient) -> None:
    emu.add_channel("G0SECRET", "secret-ops", is_private=True)
    emu.add_channel("G0OTHER", "not-invited", is_private=True, is_member=False)
    emu.add_channel("C0OLD", "old", is_archived=True)
    public = client.conversations_list()["channels"]
    assert {c["id"] for c in public} == {DEFAULT_CHANNEL_ID, GENERAL_CHANNEL_ID, "C0OLD"}
    both = client.conversations_list(types="public_channel,private_channel", exclude_archived=True)["channels"]
    assert {c["name"] for c in both} == {"incidents", "general", "secret-ops"}, "private: only where the bot is"
    page = client.conversations_list(limit=1)
    assert len(page["channels"]) == 1 and page["response_metadata"]["next_cursor"]
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_list(types="rooms")
    assert excinfo.value.response["error"] == "invalid_types"


def test_a_held_answer_is_applied_before_it_is_answered(emu: SlackEmulator, client: WebClient) -> None:
    held = emu.delay_answer("chat.postMessage", seconds=30, match=lambda args: "thread_ts" not in args)
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(client.chat_postMessage(channel=DEFAULT_CHANNEL_ID,
                                                                                      text="held")["ts"]))
    caller.start()
    call = held.wait_applied(timeout=10)
    assert [m["ts"] for m in emu.messages()] == [call.response["ts"]] and answers == [], "applied, not answered"
    other = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="not held")  # the hold is used up
    assert other["ok"] and held.done
    held.release()
    caller.join(timeout=10)
    assert answers == [call.response["ts"]]


def test_a_hold_matches_only_successful_calls(emu: SlackEmulator, client: WebClient) -> None:
    held = emu.delay_answer("chat.postMessage", seconds=30)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="#nowhere", text="x")  # refused: answered at once, nothing held
    assert not held.done
    with pytest.raises(TimeoutError):
        held.wait_applied(timeout=0.05)
    with pytest.raises(ValueError):
        emu.delay_answer("chat.postMessage", seconds=1, times=0)
