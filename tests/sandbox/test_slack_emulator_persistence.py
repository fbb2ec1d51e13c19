"""The Slack emulator's workspace file: what a restarted emulator (and a restarted bot) still has.

Every test drives the emulator through the real slack_sdk WebClient, stops it, and starts a new
emulator on the same file; nothing is compared through the emulator's internals.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, GENERAL_CHANNEL_ID, SlackEmulator
from bot.sandbox.slack_emulator.persistence import WorkspaceFileError
from bot.sandbox.slack_emulator.web import WebView

LOG_BYTES = "".join(f"2025-11-21T12:00:{i:02d}Z OOMKilled checkout-7d9\n" for i in range(40)).encode()
MODAL: dict[str, Any] = {
    "type": "modal", "callback_id": "approve_step", "title": {"type": "plain_text", "text": "Approve step"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Scale *checkout* to 6?"}}],
}


def client_for(emu: SlackEmulator) -> WebClient:
    return WebClient(token=emu.bot_token, base_url=emu.base_url, timeout=10)


def history(client: WebClient, channel: str = DEFAULT_CHANNEL_ID) -> list[dict[str, Any]]:
    return client.conversations_history(channel=channel, limit=1000)["messages"]


def replies(client: WebClient, ts: str, channel: str = DEFAULT_CHANNEL_ID) -> list[dict[str, Any]]:
    return client.conversations_replies(channel=channel, ts=ts, limit=1000)["messages"]


def all_ts(messages: list[dict[str, Any]]) -> set[float]:
    stamps = {float(m["ts"]) for m in messages}
    stamps |= {float(m["edited"]["ts"]) for m in messages if "edited" in m}
    return stamps


def test_messages_threads_and_files_survive_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "slack.sqlite3"
    with SlackEmulator(state_file=state_file) as first:
        client = client_for(first)
        root = client.chat_postMessage(channel="#incidents", text="INC-7 opened")
        reply = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, thread_ts=root["ts"], text="investigating")
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=root["ts"], text="INC-7 mitigated")
        client.reactions_add(channel=DEFAULT_CHANNEL_ID, timestamp=reply["ts"], name="eyes")
        client.files_upload_v2(channel=DEFAULT_CHANNEL_ID, thread_ts=root["ts"], content=LOG_BYTES,
                               filename="checkout.log", title="checkout logs", initial_comment="Last 40 lines")
        ephemeral = client.chat_postEphemeral(channel=DEFAULT_CHANNEL_ID, user="U0ALICE", text="only you")
        channel_before = history(client)
        thread_before = replies(client, root["ts"])
        (file_id,) = [f["id"] for f in first.files]
        file_before = client.files_info(file=file_id)["file"]

    assert [m["text"] for m in thread_before] == ["INC-7 mitigated", "investigating", "Last 40 lines"]
    with SlackEmulator(state_file=state_file) as second:
        assert second.calls == [], "the call log is a test instrument, not part of the workspace"
        client = client_for(second)
        assert history(client) == channel_before
        assert replies(client, root["ts"]) == thread_before
        assert second.messages(DEFAULT_CHANNEL_ID)[0]["history"][0]["text"] == "INC-7 opened"
        assert client.files_info(file=file_id)["file"] == file_before
        second.mount_web(WebView(second))
        download = requests.get(f"{second.base_url.removesuffix('/api/')}/web/files/{file_id}/checkout.log", timeout=10)
        assert download.status_code == 200 and download.content == LOG_BYTES
        assert second.ephemerals() == [], "ephemeral messages are not kept, as on Slack"

        new = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="after the restart")
        old = all_ts(thread_before) | all_ts(channel_before) | {float(ephemeral["message_ts"])}
        assert float(new["ts"]) > max(old)
        again = client.files_upload_v2(channel=DEFAULT_CHANNEL_ID, content=b"new", filename="b.txt")
        assert again["file"]["id"] != file_id, "file ids are never handed out twice"


def test_every_kind_of_change_is_kept(tmp_path: Path) -> None:
    """Channels joined, DMs opened, seeded people, edits, deletions, reactions, views, an upload
    whose bytes arrived but was not completed: a restarted emulator shows exactly what the first
    one showed, and the upload completes after the restart."""
    state_file = tmp_path / "slack.sqlite3"

    def snapshot(emu: SlackEmulator, client: WebClient) -> dict[str, Any]:
        return {
            "messages": emu.messages(),
            "threads": {m["ts"]: emu.thread(m["channel"], m["ts"]) for m in emu.messages()},
            "files": emu.files,
            "views": emu.open_views(),
            "directory": emu.directory(),
            "channels": client.conversations_list(types="public_channel,private_channel,im")["channels"],
            "groups": client.usergroups_list(include_users=True, include_disabled=True)["usergroups"],
            "dana": client.users_lookupByEmail(email="dana@example.com")["user"],
        }

    with SlackEmulator(state_file=state_file) as first:
        client = client_for(first)
        first.add_channel("C0WAR", "war-room", is_member=False)
        first.add_user("U0DANA", "dana", "Dana Ito", tz="Asia/Tokyo")
        first.add_usergroup("S0DB", "db-oncall", ["U0DANA"], description="Database on-call")
        human = first.add_message(DEFAULT_CHANNEL_ID, "is checkout down?", user="U0BOB")
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, thread_ts=human, text="INC-8 opened", reply_broadcast=True)
        client.conversations_join(channel="C0WAR")
        bridge = client.chat_postMessage(channel="C0WAR", text="bridge open")
        client.chat_update(channel="C0WAR", ts=bridge["ts"], text="bridge closed")
        pending = client.files_getUploadURLExternal(filename="heap.txt", length=len(LOG_BYTES))
        assert requests.post(pending["upload_url"], data=LOG_BYTES, timeout=10).status_code == 200
        client.chat_postMessage(channel="U0CAROL", text="you are paged")  # opens the DM
        doomed = client.chat_postMessage(channel=GENERAL_CHANNEL_ID, thread_ts=human, text="wrong channel")
        client.chat_delete(channel=GENERAL_CHANNEL_ID, ts=doomed["ts"])
        gone_reply = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, thread_ts=human, text="typo")
        client.chat_delete(channel=DEFAULT_CHANNEL_ID, ts=gone_reply["ts"])
        client.reactions_add(channel=DEFAULT_CHANNEL_ID, timestamp=human, name="white_check_mark")
        trigger = first.new_trigger_id()
        opened = client.views_open(trigger_id=trigger, view=MODAL)["view"]
        client.views_update(view_id=opened["id"], view={**MODAL, "callback_id": "approve_step_2"})
        client.views_open(trigger_id=first.new_trigger_id(), view={**MODAL, "external_id": "never-updated"})
        before = snapshot(first, client)

    assert [m["text"] for m in before["threads"][human]] == ["is checkout down?", "INC-8 opened"]
    assert [m["text"] for m in before["messages"] if m["channel"] == "C0WAR"] == ["bridge closed"]
    with SlackEmulator(state_file=state_file) as second:
        client = client_for(second)
        assert snapshot(second, client) == before
        with pytest.raises(SlackApiError) as exc:
            client.views_open(trigger_id=trigger, view=MODAL)
        assert exc.value.response["error"] == "exchanged_trigger_id"
        second.add_user("U0EVE", "eve")
        client.files_completeUploadExternal(files=[{"id": pending["file_id"], "title": "heap"}], channel_id="C0WAR")
        assert [(f["id"], f["bytes"]) for f in second.files] == [(pending["file_id"], LOG_BYTES)]

    with SlackEmulator(state_file=state_file) as third:  # a change made by the second one is kept too
        assert client_for(third).users_info(user="U0EVE")["user"]["name"] == "eve"


def test_one_emulator_per_file(tmp_path: Path) -> None:
    state_file = tmp_path / "slack.sqlite3"
    SlackEmulator(state_file=state_file).stop()  # creates the file
    with SlackEmulator(state_file=state_file) as owner:
        with pytest.raises(WorkspaceFileError, match="in use by another Slack emulator"):
            SlackEmulator(state_file=state_file)
        client_for(owner).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="still mine")
    with SlackEmulator(state_file=state_file) as after:
        assert [m["text"] for m in after.messages()] == ["still mine"]


def test_garbage_file_is_set_aside_and_the_workspace_starts_fresh(tmp_path: Path, caplog) -> None:
    state_file = tmp_path / "slack.sqlite3"
    garbage = bytes(range(256)) * 64
    state_file.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="bot.sandbox.slack_emulator.persistence"), \
            SlackEmulator(state_file=state_file) as emu:
        assert emu.messages() == []
        assert ("C0OPSBOT", "incidents") in emu.directory()["channels"], "a fresh workspace is seeded"
        client_for(emu).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="fresh start")
    (aside,) = tmp_path.glob("slack.sqlite3.unreadable-*")
    assert aside.read_bytes() == garbage, "the unreadable file is kept, byte for byte"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(state_file) in warning.getMessage() and str(aside) in warning.getMessage()
    with SlackEmulator(state_file=state_file) as emu:
        assert [m["text"] for m in emu.messages()] == ["fresh start"]


def test_unreadable_record_sets_the_file_aside(tmp_path: Path, caplog) -> None:
    state_file = tmp_path / "slack.sqlite3"
    with SlackEmulator(state_file=state_file) as emu:
        client_for(emu).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="kept")
    with sqlite3.connect(state_file) as db:
        db.execute("UPDATE records SET body = '{\"channel\": ' WHERE kind = 'message'")
    db.close()
    with caplog.at_level(logging.WARNING, logger="bot.sandbox.slack_emulator.persistence"), \
            SlackEmulator(state_file=state_file) as emu:
        assert emu.messages() == []
    (aside,) = tmp_path.glob("slack.sqlite3.unreadable-*")
    assert "cannot be read" in caplog.text and str(aside) in caplog.text


def test_another_programs_database_is_left_untouched(tmp_path: Path) -> None:
    other = tmp_path / "opsbot.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE incidents (id INTEGER PRIMARY KEY)")
    db.close()
    content = other.read_bytes()
    with pytest.raises(WorkspaceFileError, match="not a Slack emulator workspace"):
        SlackEmulator(state_file=other)
    assert other.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["opsbot.sqlite3"]


def test_without_a_file_the_workspace_stays_in_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SlackEmulator() as emu:
        client_for(emu).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="gone after stop")
    assert list(tmp_path.iterdir()) == []
    with SlackEmulator() as emu:
        assert emu.messages() == []


def test_a_restarted_bot_finds_its_messages(tmp_path: Path, monkeypatch, caplog) -> None:
    """`build_runtime` without a Slack token embeds the emulator with its file in data_dir."""
    from bot.config import Settings
    from bot.runtime import build_runtime

    for name in ("OPSBOT_SLACK_BOT_TOKEN", "OPSBOT_SLACK_API_URL", "OPSBOT_CONFIG", "OPSBOT_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "data", http_port=0, intake_processes=0, log_format="text")
    (tmp_path / "data").mkdir()
    with caplog.at_level(logging.INFO, logger="bot.runtime"):
        runtime = build_runtime(settings)
    try:
        posted = runtime.web_client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="INC-1 opened")
    finally:
        runtime.close()
    state_file = (tmp_path / "data" / "slack-emulator.sqlite3").resolve()
    assert state_file.is_file() and f"workspace kept in {state_file}" in caplog.text
    runtime = build_runtime(settings)
    try:
        found = runtime.web_client.conversations_history(channel=DEFAULT_CHANNEL_ID)["messages"]
    finally:
        runtime.close()
    assert [(m["ts"], m["text"]) for m in found] == [(posted["ts"], "INC-1 opened")]
