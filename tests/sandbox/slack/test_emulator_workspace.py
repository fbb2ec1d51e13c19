"""Users, user groups, views, the three-step file upload, and Bolt start-up against the emulator."""

from __future__ import annotations

from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack_emulator import (
    DEFAULT_CHANNEL_ID,
    ONCALL_GROUP_ID,
    UPLOAD_PSEUDO_METHOD,
    SlackEmulator,
)

MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "approve_step",
    "title": {"type": "plain_text", "text": "Approve step"},
    "submit": {"type": "plain_text", "text": "Approve"},
    "private_metadata": "INC-7",
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Roll back *checkout* to revision 41?"}},
        {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
         "element": {"type": "plain_text_input", "action_id": "reason_input"}},
    ],
}


def test_users_and_groups(emu: SlackEmulator, client: WebClient) -> None:
    alice = client.users_info(user="U0ALICE")["user"]
    assert alice["real_name"] == "Alice Chen" and alice["tz"] == "Europe/Berlin" and not alice["is_bot"]
    assert isinstance(alice["tz_offset"], int)
    assert client.users_lookupByEmail(email="BOB@example.com")["user"]["id"] == "U0BOB"
    with pytest.raises(SlackApiError) as exc:
        client.users_info(user="U0NOBODY")
    assert exc.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as exc:
        client.users_lookupByEmail(email="nobody@example.com")
    assert exc.value.response["error"] == "users_not_found"
    emu.add_user("U0DAN", "dan", real_name="Dan Ito", tz="Asia/Tokyo")
    emu.add_usergroup("S0DB", "dba", users=["U0DAN"])
    groups = {g["handle"]: g for g in client.usergroups_list(include_users=True)["usergroups"]}
    assert groups["oncall"]["users"] == ["U0ALICE", "U0BOB"] and groups["dba"]["user_count"] == 1
    assert "users" not in client.usergroups_list()["usergroups"][0]
    assert client.usergroups_users_list(usergroup=ONCALL_GROUP_ID)["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert exc.value.response["error"] == "no_such_subteam"


def test_views_open_and_update(emu: SlackEmulator, client: WebClient) -> None:
    trigger = emu.new_trigger_id()
    opened = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "approve_step"
    assert opened["private_metadata"] == "INC-7" and opened["hash"]
    assert emu.calls_to("views.open")[0].args["view"] == MODAL
    with pytest.raises(SlackApiError) as exc:  # a trigger id is single-use
        client.views_open(trigger_id=trigger, view=MODAL)
    assert exc.value.response["error"] == "exchanged_trigger_id"
    changed = {**MODAL, "private_metadata": "INC-7:v2"}
    updated = client.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])["view"]
    assert updated["id"] == opened["id"] and updated["private_metadata"] == "INC-7:v2"
    assert updated["hash"] != opened["hash"]
    with pytest.raises(SlackApiError) as exc:
        client.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])  # stale hash
    assert exc.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as exc:
        client.views_update(view_id="V0MISSING", view=changed)
    assert exc.value.response["error"] == "not_found"
    assert emu.views[0]["private_metadata"] == "INC-7:v2"


def test_views_open_requires_trigger_and_valid_modal(emu: SlackEmulator, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.views_open(view=MODAL)
    assert exc.value.response["error"] == "invalid_arguments"
    assert "trigger_id" in exc.value.response["response_metadata"]["messages"][0]
    no_submit = {k: v for k, v in MODAL.items() if k != "submit"}
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=emu.new_trigger_id(), view=no_submit)
    assert "needs a submit button" in exc.value.response["response_metadata"]["messages"][0]
    no_title = {k: v for k, v in MODAL.items() if k != "title"}
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=emu.new_trigger_id(), view=no_title)
    assert "title" in exc.value.response["response_metadata"]["messages"][0]


def test_files_upload_v2_end_to_end(emu: SlackEmulator, client: WebClient) -> None:
    root = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="INC-7")
    content = "".join(f"2025-11-21T12:00:{i:02d}Z OOMKilled checkout-7d9\n" for i in range(40))
    resp = client.files_upload_v2(channel=DEFAULT_CHANNEL_ID, thread_ts=root["ts"], content=content,
                                  filename="checkout.log", title="checkout logs", initial_comment="Last 40 lines")
    assert resp["file"]["id"].startswith("F") and resp["file"]["title"] == "checkout logs"
    assert [c.method for c in emu.calls[1:]] == [
        "files.getUploadURLExternal", UPLOAD_PSEUDO_METHOD, "files.completeUploadExternal"]
    (f,) = emu.files
    assert f["bytes"] == content.encode() and f["length"] == len(content.encode())
    assert (f["channel"], f["thread_ts"], f["initial_comment"]) == (DEFAULT_CHANNEL_ID, root["ts"], "Last 40 lines")
    assert f["filename"] == "checkout.log"
    thread = emu.thread(DEFAULT_CHANNEL_ID, root["ts"])
    assert thread[1]["files"][0]["id"] == f["id"] and thread[1]["text"] == "Last 40 lines"
    assert client.files_info(file=f["id"])["file"]["name"] == "checkout.log"
    complete = emu.calls_to("files.completeUploadExternal")[0]
    assert complete.args["files"] == [{"id": f["id"], "title": "checkout logs"}]  # JSON string decoded


def test_upload_flow_errors(emu: SlackEmulator, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.files_completeUploadExternal(files=[{"id": "F0UNKNOWN", "title": "x"}], channel_id=DEFAULT_CHANNEL_ID)
    assert exc.value.response["error"] == "file_not_found"
    issued = client.files_getUploadURLExternal(filename="a.txt", length=5)
    with pytest.raises(SlackApiError) as exc:  # bytes never uploaded
        client.files_completeUploadExternal(files=[{"id": issued["file_id"]}], channel_id=DEFAULT_CHANNEL_ID)
    assert exc.value.response["error"] == "file_not_found"
    with pytest.raises(HTTPError) as http_exc:  # the upload must carry the announced length
        urlopen(Request(issued["upload_url"], data=b"too long", method="POST"), timeout=5)
    assert http_exc.value.code == 400
    with urlopen(Request(issued["upload_url"], data=b"12345", method="POST"), timeout=5) as ok:
        assert ok.read() == b"OK - 5"
    client.files_completeUploadExternal(files=[{"id": issued["file_id"]}])  # private: not shared anywhere
    assert emu.files[0]["channel"] is None and emu.messages() == []
    with pytest.raises(SlackApiError) as exc:
        client.files_getUploadURLExternal(filename="empty.txt", length=0)
    assert exc.value.response["error"] == "invalid_arguments"


def test_bolt_app_starts_and_posts_through_emulator(emu: SlackEmulator) -> None:
    app = App(client=WebClient(token=emu.bot_token, base_url=emu.base_url), signing_secret="s3cret")
    assert emu.calls_to("auth.test"), "Bolt verifies its token with auth.test at start-up"
    app.client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="ready")
    assert emu.messages()[0]["text"] == "ready"
