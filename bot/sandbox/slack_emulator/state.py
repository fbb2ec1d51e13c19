"""The emulated workspace: channels, users, user groups, messages, ephemerals, files, views.

`WorkspaceState` is deliberately *not* thread-safe on its own: the emulator holds one lock
around every HTTP call and every test-side query, so a method implementation sees and leaves
the state consistent (a reply and its root's `reply_count` change together, a `ts` is never
handed out twice). Everything returned to callers outside that lock is a deep copy.

Message timestamps are wall-clock microseconds formatted the way Slack formats them
(`"1763721600.000100"`), strictly increasing within one workspace, so `ts` ordering is
posting order even when two messages are posted within the same microsecond.

Change tracking: every mutation of a kept record (channel, user, user group, message, file,
view) adds its `(kind, key)` to `changed`, from here or from the method that mutated it in
place; `persistence.WorkspaceStore.save` writes those records as they are now (or deletes the
ones that are gone) and clears the set. Marking a record that did not really change is harmless;
a mutation that marks nothing would be lost on restart. The two counters (`last_ts_us`,
`last_id`) are saved whenever they move.
"""

from __future__ import annotations

import copy
import mimetypes
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.sandbox.slack_emulator.errors import ApiError

DEFAULT_TEAM_ID = "T0EMULATOR"
DEFAULT_CHANNEL_ID = "C0OPSBOT"
DEFAULT_CHANNEL_NAME = "incidents"
GENERAL_CHANNEL_ID = "C0GENERAL"
BOT_USER_ID = "U0OPSBOT"
BOT_ID = "B0OPSBOT"
APP_ID = "A0OPSBOT"
ONCALL_GROUP_ID = "S0ONCALL"


@dataclass(frozen=True)
class Identity:
    """Who the emulated workspace and the bot token belong to (what `auth.test` reports)."""

    team_id: str = DEFAULT_TEAM_ID
    team_name: str = "opsbot emulator"
    team_domain: str = "opsbot-emulator"
    bot_user_id: str = BOT_USER_ID
    bot_id: str = BOT_ID
    app_id: str = APP_ID
    bot_name: str = "opsbot"

    @property
    def url(self) -> str:
        return f"https://{self.team_domain}.slack.com/"


@dataclass
class Channel:
    """A conversation. `is_member` is whether the bot is in it (posting elsewhere fails)."""

    id: str
    name: str
    is_private: bool = False
    is_member: bool = True
    is_archived: bool = False
    created: int = field(default_factory=lambda: int(time.time()))
    im_user: str | None = None

    def to_api(self) -> dict[str, Any]:
        """The `channel` object of `conversations.info`."""
        if self.im_user is not None:
            return {"id": self.id, "is_im": True, "user": self.im_user, "created": self.created,
                    "is_org_shared": False, "is_archived": False}
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.id == GENERAL_CHANNEL_ID,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member,
            "created": self.created,
            "creator": "",
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass
class User:
    """A workspace member. `email` is what `users.lookupByEmail` matches (case-insensitively)."""

    id: str
    name: str
    real_name: str
    team_id: str
    is_bot: bool = False
    tz: str = "UTC"
    email: str | None = None
    deleted: bool = False

    def to_api(self) -> dict[str, Any]:
        """The `user` object of `users.info`."""
        offset, label = _tz_offset_and_label(self.tz)
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": self.team_id,
            "image_48": f"https://avatars.example.invalid/{self.id}_48.png",
        }
        if self.email and not self.is_bot:
            profile["email"] = self.email
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": label,
            "tz_offset": offset,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 0,
        }


@dataclass
class Usergroup:
    """A user group (`@oncall`); `users` keeps the order it was given."""

    id: str
    handle: str
    name: str
    team_id: str
    users: list[str] = field(default_factory=list)
    description: str = ""
    disabled: bool = False

    def to_api(self, *, include_users: bool) -> dict[str, Any]:
        """The element of `usergroups.list`."""
        out: dict[str, Any] = {
            "id": self.id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "name": self.name,
            "description": self.description,
            "handle": self.handle,
            "is_external": False,
            "date_create": 0,
            "date_update": 0,
            "date_delete": 0,
            "auto_type": None,
            "created_by": "",
            "prefs": {"channels": [], "groups": []},
            "user_count": len(self.users),
        }
        if include_users:
            out["users"] = list(self.users)
        return out


@dataclass
class Message:
    """A stored message. `payload` is exactly what Slack's API would return for it; `history`
    holds the versions it had before each `chat.update` (emulator-only, oldest first)."""

    channel: str
    payload: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ts(self) -> str:
        return str(self.payload["ts"])

    @property
    def is_reply(self) -> bool:
        thread_ts = self.payload.get("thread_ts")
        return thread_ts is not None and thread_ts != self.payload["ts"]

    @property
    def in_channel_view(self) -> bool:
        """Top-level messages and `reply_broadcast` replies show in the channel."""
        return not self.is_reply or self.payload.get("subtype") == "thread_broadcast"

    def to_test_view(self) -> dict[str, Any]:
        """What `SlackEmulator.messages()` / `thread()` return: the payload plus `channel` and
        the edit `history` (a deep copy; callers may mutate it). In this view `thread_ts` is
        present only on replies: a thread root's `thread_ts` (Slack sets it to the root's own
        ts once it has replies, and the API responses keep it) is left out, so
        `"thread_ts" in m` tells a reply from a top-level message."""
        out = copy.deepcopy(self.payload)
        if not self.is_reply:
            out.pop("thread_ts", None)
        out["channel"] = self.channel
        out["history"] = copy.deepcopy(self.history)
        return out


@dataclass
class FileRecord:
    """A file from `files.getUploadURLExternal`; `data` arrives with the raw upload, and
    `completed` flips in `files.completeUploadExternal`."""

    id: str
    filename: str
    length: int
    created: int
    user: str
    alt_txt: str | None = None
    snippet_type: str | None = None
    title: str | None = None
    data: bytes | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)
    thread_ts: str | None = None
    initial_comment: str | None = None

    def to_api(self, team_id: str, permalink_base: str) -> dict[str, Any]:
        """The file object Slack returns from `files.completeUploadExternal`."""
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": _guess_mimetype(self.filename),
            "filetype": self.snippet_type or _filetype(self.filename),
            "user": self.user,
            "user_team": team_id,
            "size": len(self.data or b""),
            "mode": "hosted",
            "is_external": False,
            "is_public": bool(self.channels),
            "url_private": f"{permalink_base}files-pri/{team_id}-{self.id}/{self.filename}",
            "permalink": f"{permalink_base}files/{self.user}/{self.id}/{self.filename}",
            "channels": list(self.channels),
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }

    def to_test_view(self) -> dict[str, Any]:
        """What `SlackEmulator.files` lists."""
        return {
            "id": self.id,
            "title": self.title or self.filename,
            "filename": self.filename,
            "bytes": self.data or b"",
            "length": self.length,
            "channel": self.channels[0] if self.channels else None,
            "channels": list(self.channels),
            "thread_ts": self.thread_ts,
            "initial_comment": self.initial_comment,
            "alt_txt": self.alt_txt,
            "snippet_type": self.snippet_type,
        }


@dataclass
class ViewRecord:
    """An open view: the object `views.open` returned, updated in place by `views.update`."""

    view: dict[str, Any]
    trigger_id: str | None
    revision: int = 1


class WorkspaceState:
    """All mutable workspace data. Not thread-safe: callers hold the emulator's lock."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, User] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.messages: dict[tuple[str, str], Message] = {}
        self.order: list[tuple[str, str]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.files: dict[str, FileRecord] = {}
        self.views: dict[str, ViewRecord] = {}
        self.used_trigger_ids: set[str] = set()
        self.last_ts_us = 0  # the newest ts handed out, in microseconds
        self.last_id = 0  # the number in the newest id from new_id
        self.changed: set[tuple[str, str]] = set()  # (kind, key) of records changed since the last save

    # -- identifiers --------------------------------------------------------------------
    def next_ts(self) -> str:
        """A fresh message timestamp, strictly greater than every one handed out before."""
        now_us = time.time_ns() // 1000
        self.last_ts_us = max(now_us, self.last_ts_us + 1)
        return f"{self.last_ts_us // 1_000_000}.{self.last_ts_us % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        """A Slack-looking object id (`F0EMU00000001`), unique within this workspace."""
        self.last_id += 1
        return f"{prefix}0EMU{self.last_id:08d}"

    # -- change tracking (see the module docstring) ------------------------------------------------
    def touch(self, kind: str, key: str) -> None:
        """Note that record `key` of `kind` changed, appeared or went away."""
        self.changed.add((kind, key))

    def touch_message(self, message: Message) -> None:
        self.touch("message", message_key(message.channel, message.ts))

    # -- seeds ----------------------------------------------------------------------------
    def seed_defaults(self) -> None:
        """The workspace every emulator starts with: #incidents and #general, the bot user,
        three on-call engineers and the @oncall and @sre groups."""
        ident = self.identity
        self.channels[DEFAULT_CHANNEL_ID] = Channel(DEFAULT_CHANNEL_ID, DEFAULT_CHANNEL_NAME)
        self.channels[GENERAL_CHANNEL_ID] = Channel(GENERAL_CHANNEL_ID, "general")
        self.users[ident.bot_user_id] = User(ident.bot_user_id, ident.bot_name, "opsbot", ident.team_id,
                                             is_bot=True)
        for uid, name, real, tz in (
            ("U0ALICE", "alice", "Alice Chen", "Europe/Berlin"),
            ("U0BOB", "bob", "Bob Okafor", "America/New_York"),
            ("U0CAROL", "carol", "Carol Diaz", "America/Los_Angeles"),
        ):
            self.users[uid] = User(uid, name, real, ident.team_id, tz=tz, email=f"{name}@example.com")
        self.usergroups[ONCALL_GROUP_ID] = Usergroup(ONCALL_GROUP_ID, "oncall", "On-call", ident.team_id,
                                                     ["U0ALICE", "U0BOB"], "Primary and secondary on-call")
        self.usergroups["S0SRE"] = Usergroup("S0SRE", "sre", "SRE", ident.team_id,
                                             ["U0ALICE", "U0BOB", "U0CAROL"], "Site reliability engineering")

    # -- look-ups -----------------------------------------------------------------------------
    def find_channel(self, value: object) -> Channel | None:
        """A channel by id, `#name` or `name`, or a user's existing DM; no side effects."""
        if not isinstance(value, str) or not value:
            return None
        if value in self.channels:
            return self.channels[value]
        name = value[1:] if value.startswith("#") else value
        for channel in self.channels.values():
            if channel.im_user is None and channel.name == name:
                return channel
        return self.channels.get("D" + value[1:]) if value in self.users else None

    def resolve_channel(self, value: object) -> Channel:
        """Like `find_channel`, but a user id opens a DM with them when none exists yet.

        Raises `ApiError("channel_not_found")` for anything else, as Slack does.
        """
        channel = self.find_channel(value)
        if channel is not None:
            return channel
        if isinstance(value, str) and value in self.users:
            dm = Channel("D" + value[1:], "D" + value[1:], is_private=True, im_user=value)
            self.channels[dm.id] = dm
            self.touch("channel", dm.id)
            return dm
        raise ApiError("channel_not_found")

    def message(self, channel_id: str, ts: object) -> Message | None:
        if not isinstance(ts, str):
            return None
        return self.messages.get((channel_id, ts))

    def add_message(self, message: Message) -> None:
        """Store a message and, for a reply, bump its root's thread summary."""
        key = (message.channel, message.ts)
        self.messages[key] = message
        self.order.append(key)
        self.touch_message(message)
        if message.is_reply:
            self._refresh_thread_summary(message.channel, str(message.payload["thread_ts"]))

    def remove_message(self, message: Message) -> None:
        key = (message.channel, message.ts)
        del self.messages[key]
        self.order.remove(key)
        self.touch_message(message)
        if message.is_reply:
            self._refresh_thread_summary(message.channel, str(message.payload["thread_ts"]))

    def channel_messages(self, channel_id: str | None) -> list[Message]:
        """Messages shown in a channel (or all channels), oldest first."""
        out = []
        for key in self.order:
            msg = self.messages[key]
            if (channel_id is None or msg.channel == channel_id) and msg.in_channel_view:
                out.append(msg)
        return out

    def thread_messages(self, channel_id: str, thread_ts: str) -> list[Message]:
        """The root (when it exists) followed by its replies, oldest first."""
        out = []
        root = self.messages.get((channel_id, thread_ts))
        if root is not None:
            out.append(root)
        for key in self.order:
            msg = self.messages[key]
            if msg.channel == channel_id and msg.is_reply and msg.payload.get("thread_ts") == thread_ts:
                out.append(msg)
        return out

    def _refresh_thread_summary(self, channel_id: str, thread_ts: str) -> None:
        root = self.messages.get((channel_id, thread_ts))
        if root is None:
            return
        self.touch_message(root)
        replies = self.thread_messages(channel_id, thread_ts)[1:]
        payload = root.payload
        if not replies:
            for key in ("thread_ts", "reply_count", "reply_users", "reply_users_count", "latest_reply"):
                payload.pop(key, None)
            return
        users: list[str] = []
        for reply in replies:
            uid = str(reply.payload.get("user", ""))
            if uid and uid not in users:
                users.append(uid)
        payload["thread_ts"] = thread_ts
        payload["reply_count"] = len(replies)
        payload["reply_users"] = users
        payload["reply_users_count"] = len(users)
        payload["latest_reply"] = replies[-1].ts


def message_key(channel_id: str, ts: str) -> str:
    """The key a message is kept under: `C0OPSBOT/1763721600.000100` (ids hold no `/`)."""
    return f"{channel_id}/{ts}"


def _tz_offset_and_label(tz: str) -> tuple[int, str]:
    try:
        now = datetime.now(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return 0, tz
    offset = now.utcoffset()
    return (int(offset.total_seconds()) if offset else 0), (now.tzname() or tz)


def _filetype(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"txt": "text", "log": "text", "md": "markdown", "yml": "yaml", "jpeg": "jpg"}.get(ext, ext or "binary")


def _guess_mimetype(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
