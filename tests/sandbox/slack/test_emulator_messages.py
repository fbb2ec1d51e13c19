"""Messages through the real WebClient: post, thread, update, ephemeral, delete, read back."""

from __future__ import annotations

import json
import re
import threading

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, SlackEmulator

TS_RE = re.compile(r"^\d{10}\.\d{6}$")
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Pod crashlooping*"}}


def error_of(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def test_post_resolves_channel_name_and_returns_slack_shape(emu: SlackEmulator, client: WebClient) -> None:
    resp = client.chat_postMessage(channel="#incidents", text="INC-1 opened", blocks=[SECTION])
    assert resp["ok"] is True
    assert resp["channel"] == DEFAULT_CHANNEL_ID
    assert TS_RE.match(resp["ts"])
    message = resp["message"]
    assert message["ts"] == resp["ts"] and message["bot_id"] == "B0OPSBOT" and message["user"] == "U0OPSBOT"
    assert message["blocks"][0]["text"] == SECTION["text"]
    assert message["blocks"][0]["block_id"]  # Slack fills in block ids
    stored = emu.messages(DEFAULT_CHANNEL_ID)
    assert [m["text"] for m in stored] == ["INC-1 opened"]
    assert stored[0]["channel"] == DEFAULT_CHANNEL_ID and "thread_ts" not in stored[0]
    call = emu.calls_to("chat.postMessage")[0]
    assert call.ok and call.status == 200 and call.content_type == "application/json"
    assert call.args["blocks"] == [SECTION]  # recorded as sent


def test_ts_unique_and_increasing_under_concurrency(emu: SlackEmulator) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def post(n: int) -> None:
        c = WebClient(token=emu.bot_token, base_url=emu.base_url)
        for i in range(5):
            ts = c.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=f"{n}-{i}")["ts"]
            with lock:
                results.append(ts)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 20
    stored = [m["ts"] for m in emu.messages()]
    assert stored == sorted(stored, key=float) and len(stored) == 20
    assert [c.response["ts"] for c in emu.calls_to("chat.postMessage")] == stored


def test_thread_reply_bumps_root(emu: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="root")
    r1 = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="evidence", thread_ts=root["ts"])
    emu.add_message(DEFAULT_CHANNEL_ID, "looking", user="U0ALICE", thread_ts=root["ts"])
    r3 = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="fix", thread_ts=root["ts"])
    assert r1["message"]["thread_ts"] == root["ts"]
    thread = emu.thread(DEFAULT_CHANNEL_ID, root["ts"])
    assert [m["text"] for m in thread] == ["root", "evidence", "looking", "fix"]
    top = emu.messages(DEFAULT_CHANNEL_ID)
    assert [m["text"] for m in top] == ["root"] and "thread_ts" not in top[0]
    assert all(m["thread_ts"] == root["ts"] for m in thread[1:]) and "thread_ts" not in thread[0]
    assert top[0]["reply_count"] == 3 and top[0]["latest_reply"] == r3["ts"]
    assert top[0]["reply_users"] == ["U0OPSBOT", "U0ALICE"]
    replies = client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["root", "evidence", "looking", "fix"]
    assert replies["messages"][0]["thread_ts"] == root["ts"]  # the API keeps Slack's shape
    history_root = client.conversations_history(channel=DEFAULT_CHANNEL_ID)["messages"][0]
    assert history_root["reply_count"] == 3 and history_root["thread_ts"] == root["ts"]
    # a reply's ts reads the same thread; an unknown ts is thread_not_found
    assert len(client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=r1["ts"])["messages"]) == 4
    with pytest.raises(SlackApiError) as exc:
        client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts="1000000000.000001")
    assert error_of(exc) == "thread_not_found"


def test_reply_broadcast_shows_in_channel(emu: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="root")
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="resolved", thread_ts=root["ts"], reply_broadcast=True)
    top = emu.messages(DEFAULT_CHANNEL_ID)
    assert [m["text"] for m in top] == ["root", "resolved"]
    assert top[1]["subtype"] == "thread_broadcast"


def test_update_in_place_keeps_ts_and_history(emu: SlackEmulator, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="firing", blocks=[SECTION])
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="resolved")
    assert updated["ts"] == posted["ts"] and updated["text"] == "resolved"
    (msg,) = emu.messages(DEFAULT_CHANNEL_ID)
    assert msg["ts"] == posted["ts"] and msg["text"] == "resolved"
    assert msg["blocks"][0]["text"] == SECTION["text"]  # blocks omitted: kept, as on Slack
    assert msg["edited"]["user"] == "U0OPSBOT"
    assert [h["text"] for h in msg["history"]] == ["firing"]
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="resolved", blocks=[])
    assert "blocks" not in emu.messages(DEFAULT_CHANNEL_ID)[0]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_update_errors(emu: SlackEmulator, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts="1000000000.000001", text="y")
    assert error_of(exc) == "message_not_found"
    with pytest.raises(SlackApiError) as exc:  # chat.update takes the channel ID, not its name
        client.chat_update(channel="#incidents", ts=posted["ts"], text="y")
    assert error_of(exc) == "channel_not_found"
    human = emu.add_message(DEFAULT_CHANNEL_ID, "typed by a person")
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=human, text="y")
    assert error_of(exc) == "cant_update_message"
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=posted["ts"])
    assert error_of(exc) == "no_text"


def test_ephemeral(emu: SlackEmulator, client: WebClient) -> None:
    resp = client.chat_postEphemeral(channel=DEFAULT_CHANNEL_ID, user="U0ALICE", text="only you", blocks=[SECTION])
    assert TS_RE.match(resp["message_ts"])
    (eph,) = emu.ephemerals(DEFAULT_CHANNEL_ID)
    assert eph["user"] == "U0ALICE" and eph["text"] == "only you" and eph["ts"] == resp["message_ts"]
    assert emu.messages() == []
    with pytest.raises(SlackApiError) as exc:
        client.chat_postEphemeral(channel=DEFAULT_CHANNEL_ID, user="U0NOBODY", text="x")
    assert error_of(exc) == "user_not_in_channel"
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postEphemeral", json={"channel": DEFAULT_CHANNEL_ID, "text": "x"})
    assert exc.value.response["response_metadata"]["messages"] == ["[ERROR] missing required field: user"]


def test_delete_permalink_and_reactions(emu: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="root")
    reply = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="reply", thread_ts=root["ts"])
    link = client.chat_getPermalink(channel=DEFAULT_CHANNEL_ID, message_ts=reply["ts"])["permalink"]
    assert link.endswith(f"/archives/{DEFAULT_CHANNEL_ID}/p{reply['ts'].replace('.', '')}"
                         f"?thread_ts={root['ts']}&cid={DEFAULT_CHANNEL_ID}")
    client.reactions_add(channel=DEFAULT_CHANNEL_ID, timestamp=root["ts"], name="white_check_mark")
    with pytest.raises(SlackApiError) as exc:
        client.reactions_add(channel=DEFAULT_CHANNEL_ID, timestamp=root["ts"], name="white_check_mark")
    assert error_of(exc) == "already_reacted"
    assert emu.messages()[0]["reactions"] == [{"name": "white_check_mark", "users": ["U0OPSBOT"], "count": 1}]
    client.chat_delete(channel=DEFAULT_CHANNEL_ID, ts=reply["ts"])
    assert [m["text"] for m in emu.thread(DEFAULT_CHANNEL_ID, root["ts"])] == ["root"]
    assert "reply_count" not in emu.messages()[0]
    with pytest.raises(SlackApiError) as exc:
        client.chat_delete(channel=DEFAULT_CHANNEL_ID, ts=reply["ts"])
    assert error_of(exc) == "message_not_found"


def test_history_newest_first_with_cursor(emu: SlackEmulator, client: WebClient) -> None:
    for i in range(5):
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text=f"m{i}")
    first = client.conversations_history(channel=DEFAULT_CHANNEL_ID, limit=3)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3", "m2"] and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    second = client.conversations_history(channel=DEFAULT_CHANNEL_ID, limit=3, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m1", "m0"] and second["has_more"] is False
    with pytest.raises(SlackApiError) as exc:
        client.conversations_history(channel=DEFAULT_CHANNEL_ID, cursor="bogus")
    assert error_of(exc) == "invalid_cursor"


def test_form_encoded_blocks_are_decoded(emu: SlackEmulator, client: WebClient) -> None:
    client.api_call("chat.postMessage", data={"channel": DEFAULT_CHANNEL_ID, "text": "t",
                                              "blocks": json.dumps([SECTION])})
    call = emu.calls_to("chat.postMessage")[0]
    assert call.ok and call.content_type == "application/x-www-form-urlencoded"
    assert call.args["blocks"] == [SECTION]
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postMessage", data={"channel": DEFAULT_CHANNEL_ID, "blocks": "[{not json"})
    assert error_of(exc) == "invalid_blocks_format"


def test_channel_errors(emu: SlackEmulator, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="#nope", text="x")
    assert error_of(exc) == "channel_not_found"
    emu.add_channel("C0OUTSIDE", "outside", is_member=False)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="C0OUTSIDE", text="x")
    assert error_of(exc) == "not_in_channel"
    assert client.conversations_join(channel="C0OUTSIDE")["channel"]["is_member"] is True
    again = client.conversations_join(channel="C0OUTSIDE")
    assert again["warning"] == "already_in_channel"
    assert client.chat_postMessage(channel="#outside", text="x")["channel"] == "C0OUTSIDE"
    info = client.conversations_info(channel=DEFAULT_CHANNEL_ID)["channel"]
    assert info["name"] == "incidents" and info["is_member"] is True
    emu.add_channel("C0OLD", "old", is_archived=True)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="C0OLD", text="x")
    assert error_of(exc) == "is_archived"


def test_dm_by_user_id(emu: SlackEmulator, client: WebClient) -> None:
    resp = client.chat_postMessage(channel="U0BOB", text="you are paged")
    assert resp["channel"].startswith("D")
    assert [m["text"] for m in emu.messages(resp["channel"])] == ["you are paged"]
