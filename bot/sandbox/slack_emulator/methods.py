"""Web API methods about messages: `chat.*`, `conversations.*` and `reactions.add`.

Each implementation takes a `MethodContext` and the call's arguments (merged from query
string and body, with JSON-string arguments such as `blocks` already decoded) and returns the
response body, or raises `ApiError`. They run under the emulator's lock, so each call sees and
leaves the workspace consistent. The shapes and error codes follow Slack's documentation:
names (`#incidents`) are accepted only where Slack accepts them (`chat.postMessage`,
`chat.postEphemeral`); everywhere else a channel must be given by ID, and a name answers
`channel_not_found` as it does on Slack.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.sandbox.slack_emulator.blockkit import MESSAGE_TEXT_MAX_CHARS, check_message_blocks
from bot.sandbox.slack_emulator.errors import ApiError
from bot.sandbox.slack_emulator.state import Channel, Message, WorkspaceState

Args = Mapping[str, Any]


@dataclass(frozen=True)
class MethodContext:
    """What a method implementation may use: the workspace and the server's own root URL
    (for upload URLs), e.g. `http://127.0.0.1:50123`."""

    state: WorkspaceState
    server_root: str


MethodImpl = Callable[[MethodContext, Args], dict[str, Any]]


# -- argument helpers ---------------------------------------------------------------------------
def require(args: Args, *names: str) -> None:
    """Slack's answer to a missing argument (used even when the OpenAPI check is off)."""
    missing = [n for n in names if args.get(n) in (None, "")]
    if missing:
        raise ApiError("invalid_arguments", [f"[ERROR] missing required field: {n}" for n in missing])


def arg_str(args: Args, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def arg_bool(args: Args, name: str, default: bool = False) -> bool:
    value = args.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def arg_int(args: Args, name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments", [f"[ERROR] invalid value for field {name}: expected integer"]) from exc


def channel_by_id(state: WorkspaceState, value: object) -> Channel:
    """Methods that take only a conversation ID: a name is `channel_not_found`."""
    if not isinstance(value, str) or value.startswith("#") or value not in state.channels:
        if isinstance(value, str) and value in state.users:
            return state.resolve_channel(value)
        raise ApiError("channel_not_found")
    return state.channels[value]


def _readable(channel: Channel) -> Channel:
    if not channel.is_member and channel.im_user is None:
        raise ApiError("not_in_channel")
    return channel


def _postable(channel: Channel) -> Channel:
    if channel.is_archived:
        raise ApiError("is_archived")
    return _readable(channel)


def message_blocks(args: Args, name: str = "blocks") -> list[Any] | None:
    """The validated `blocks` argument (None when absent).

    Malformed JSON or a non-array is `invalid_blocks_format`; a Block Kit violation is
    `invalid_blocks` with one `[ERROR] ... [json-pointer:...]` message per problem.
    """
    if name not in args or args[name] is None:
        return None
    blocks = args[name]
    if isinstance(blocks, str):
        if not blocks.strip():
            return None
        raise ApiError("invalid_blocks_format",
                       [f"[ERROR] {name} is not valid JSON or not an array of blocks"])
    if not isinstance(blocks, list):
        raise ApiError("invalid_blocks_format", [f"[ERROR] {name} must be an array of blocks"])
    problems = check_message_blocks(blocks, pointer=f"/{name}")
    if problems:
        rendered = [p.render() for p in problems]
        raise ApiError("invalid_blocks", rendered, extra={"errors": [r.removeprefix("[ERROR] ") for r in rendered]})
    return blocks


def _attachments(args: Args) -> list[Any] | None:
    value = args.get("attachments")
    if value is None or value == "":
        return None
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise ApiError("invalid_attachments", ["[ERROR] attachments must be a JSON array of objects"])
    return value


def _with_block_ids(blocks: list[Any], seed: str) -> list[Any]:
    """Slack fills in a `block_id` for blocks that have none; so does the emulator."""
    out = copy.deepcopy(blocks)
    for index, block in enumerate(out):
        if isinstance(block, dict) and "block_id" not in block:
            block["block_id"] = hashlib.sha1(f"{seed}:{index}".encode()).hexdigest()[:5]
    return out


def _check_text(text: str | None) -> None:
    if text is not None and len(text) > MESSAGE_TEXT_MAX_CHARS:
        raise ApiError("msg_too_long", [f"[ERROR] text is {len(text)} characters; "
                                        f"the limit is {MESSAGE_TEXT_MAX_CHARS}"])


def bot_message(ctx: MethodContext, ts: str, *, text: str | None, blocks: list[Any] | None,
                attachments: list[Any] | None = None) -> dict[str, Any]:
    """The payload of a message the bot posts, shaped like Slack's."""
    ident = ctx.state.identity
    payload: dict[str, Any] = {
        "type": "message",
        "user": ident.bot_user_id,
        "bot_id": ident.bot_id,
        "app_id": ident.app_id,
        "text": text or "",
        "ts": ts,
        "team": ident.team_id,
        "bot_profile": {"id": ident.bot_id, "app_id": ident.app_id, "name": ident.bot_name,
                        "team_id": ident.team_id, "deleted": False, "updated": 0},
    }
    if blocks:
        payload["blocks"] = _with_block_ids(blocks, ts)
    if attachments:
        payload["attachments"] = copy.deepcopy(attachments)
    return payload


def _public(payload: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(payload))


def _listed(payload: Mapping[str, Any], args: Args) -> dict[str, Any]:
    """A message as `conversations.history` / `.replies` list it: its `metadata` only when the
    call asks for `include_all_metadata` (Slack leaves it out otherwise)."""
    out = _public(payload)
    if not arg_bool(args, "include_all_metadata"):
        out.pop("metadata", None)
    return out


def _metadata(args: Args) -> dict[str, Any] | None:
    """The validated `metadata` argument: `{"event_type": str, "event_payload": {...}}`, as
    Slack's message metadata requires; anything else is `invalid_metadata_format`."""
    value = args.get("metadata")
    if value is None or value == "":
        return None
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str) \
            or not value["event_type"] or not isinstance(value.get("event_payload"), dict):
        raise ApiError("invalid_metadata_format",
                       ["[ERROR] metadata must be an object with event_type (a string) and event_payload (an object)"])
    return {"event_type": value["event_type"], "event_payload": copy.deepcopy(value["event_payload"])}


# -- chat.* -------------------------------------------------------------------------------------
def chat_post_message(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel")
    st = ctx.state
    channel = _postable(st.resolve_channel(args["channel"]))
    text = arg_str(args, "text")
    markdown_text = arg_str(args, "markdown_text")
    blocks = message_blocks(args)
    attachments = _attachments(args)
    if not text and not blocks and not attachments and not markdown_text:
        raise ApiError("no_text")
    _check_text(text)
    metadata = _metadata(args)
    ts = st.next_ts()
    payload = bot_message(ctx, ts, text=text if text is not None else markdown_text, blocks=blocks,
                          attachments=attachments)
    if metadata is not None:
        payload["metadata"] = metadata
    thread_ts = arg_str(args, "thread_ts")
    if thread_ts:
        root = st.message(channel.id, thread_ts)
        if root is not None and root.is_reply:  # Slack threads a reply-to-a-reply under the root
            thread_ts = str(root.payload["thread_ts"])
            root = st.message(channel.id, thread_ts)
        payload["thread_ts"] = thread_ts
        if root is not None:
            payload["parent_user_id"] = root.payload.get("user")
        if arg_bool(args, "reply_broadcast"):
            payload["subtype"] = "thread_broadcast"
            if root is not None:
                payload["root"] = _public(root.payload)
    st.add_message(Message(channel.id, payload))
    return {"ok": True, "channel": channel.id, "ts": ts, "message": _public(payload)}


def _own_message(ctx: MethodContext, args: Args, ts_arg: str, not_own_error: str) -> Message:
    require(args, "channel", ts_arg)
    st = ctx.state
    channel = channel_by_id(st, args["channel"])
    msg = st.message(channel.id, arg_str(args, ts_arg))
    if msg is None:
        raise ApiError("message_not_found")
    if msg.payload.get("user") != st.identity.bot_user_id:
        raise ApiError(not_own_error)
    return msg


def chat_update(ctx: MethodContext, args: Args) -> dict[str, Any]:
    msg = _own_message(ctx, args, "ts", "cant_update_message")
    text = arg_str(args, "text")
    blocks = message_blocks(args)
    attachments = _attachments(args)
    if "text" not in args and "blocks" not in args and "attachments" not in args \
            and "markdown_text" not in args and "file_ids" not in args:
        raise ApiError("no_text")
    _check_text(text)
    payload = msg.payload
    previous = {k: copy.deepcopy(payload[k]) for k in ("text", "blocks", "attachments", "edited") if k in payload}
    new_text = text if text is not None else arg_str(args, "markdown_text")
    if new_text is not None:
        payload["text"] = new_text
    if blocks is not None:  # omitted: kept; []: removed (Slack's documented behaviour)
        if blocks:
            payload["blocks"] = _with_block_ids(blocks, f"{msg.ts}:{len(msg.history) + 1}")
        else:
            payload.pop("blocks", None)
    if attachments is not None or args.get("attachments") == []:
        if attachments:
            payload["attachments"] = copy.deepcopy(attachments)
        else:
            payload.pop("attachments", None)
    if not payload.get("text") and not payload.get("blocks") and not payload.get("attachments"):
        payload.update(previous)
        raise ApiError("no_text")
    edited_at = ctx.state.next_ts()
    previous["replaced_at"] = edited_at
    msg.history.append(previous)
    ctx.state.touch_message(msg)
    payload["edited"] = {"user": ctx.state.identity.bot_user_id, "ts": edited_at}
    return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": payload.get("text", ""),
            "message": _public(payload)}


def chat_post_ephemeral(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel", "user")
    st = ctx.state
    channel = _postable(st.resolve_channel(args["channel"]))
    user = arg_str(args, "user")
    if user not in st.users or st.users[user].deleted:
        raise ApiError("user_not_in_channel")
    text = arg_str(args, "text")
    blocks = message_blocks(args)
    attachments = _attachments(args)
    if not text and not blocks and not attachments and not arg_str(args, "markdown_text"):
        raise ApiError("no_text")
    _check_text(text)
    ts = st.next_ts()
    record: dict[str, Any] = {"channel": channel.id, "user": user, "ts": ts, "text": text or "",
                              "thread_ts": arg_str(args, "thread_ts")}
    if blocks:
        record["blocks"] = _with_block_ids(blocks, ts)
    if attachments:
        record["attachments"] = copy.deepcopy(attachments)
    st.ephemerals.append(record)
    return {"ok": True, "message_ts": ts}


def chat_delete(ctx: MethodContext, args: Args) -> dict[str, Any]:
    msg = _own_message(ctx, args, "ts", "cant_delete_message")
    ctx.state.remove_message(msg)
    return {"ok": True, "channel": msg.channel, "ts": msg.ts}


def chat_get_permalink(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel", "message_ts")
    st = ctx.state
    channel = channel_by_id(st, args["channel"])
    msg = st.message(channel.id, arg_str(args, "message_ts"))
    if msg is None:
        raise ApiError("message_not_found")
    link = f"{st.identity.url}archives/{channel.id}/p{msg.ts.replace('.', '')}"
    if msg.is_reply:
        link += f"?thread_ts={msg.payload['thread_ts']}&cid={channel.id}"
    return {"ok": True, "channel": channel.id, "permalink": link}


# -- conversations.* ----------------------------------------------------------------------------
def _page(items: list[dict[str, Any]], args: Args, default_limit: int) -> tuple[list[dict[str, Any]], str]:
    limit = max(1, min(arg_int(args, "limit", default_limit), 1000))
    cursor = arg_str(args, "cursor") or ""
    offset = 0
    if cursor:
        try:
            kind, _, number = base64.b64decode(cursor.encode(), validate=True).decode().partition(":")
            offset = int(number)
            if kind != "offset" or offset < 0:
                raise ValueError(cursor)
        except ValueError as exc:
            raise ApiError("invalid_cursor") from exc
    page = items[offset:offset + limit]
    more = offset + limit < len(items)
    next_cursor = base64.b64encode(f"offset:{offset + limit}".encode()).decode() if more else ""
    return page, next_cursor


def _ts_window(args: Args) -> Callable[[str], bool]:
    oldest = float(arg_str(args, "oldest") or 0)
    latest_arg = arg_str(args, "latest")
    latest = float(latest_arg) if latest_arg else time.time() + 86_400
    inclusive = arg_bool(args, "inclusive")

    def inside(ts: str) -> bool:
        value = float(ts)
        if inclusive:
            return oldest <= value <= latest
        return oldest < value < latest if oldest else value < latest

    return inside


def conversations_history(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel")
    channel = _readable(channel_by_id(ctx.state, args["channel"]))
    inside = _ts_window(args)
    msgs = [_listed(m.payload, args) for m in reversed(ctx.state.channel_messages(channel.id)) if inside(m.ts)]
    page, next_cursor = _page(msgs, args, 100)
    return {"ok": True, "messages": page, "has_more": bool(next_cursor), "pin_count": 0,
            "channel_actions_ts": None, "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor}}


def conversations_replies(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel", "ts")
    st = ctx.state
    channel = _readable(channel_by_id(st, args["channel"]))
    ts = arg_str(args, "ts") or ""
    msg = st.message(channel.id, ts)
    if msg is not None and msg.is_reply:
        ts = str(msg.payload["thread_ts"])
    thread = st.thread_messages(channel.id, ts)
    if not thread or thread[0].ts != ts:
        raise ApiError("thread_not_found")
    inside = _ts_window(args)
    msgs = [_listed(m.payload, args) for i, m in enumerate(thread) if i == 0 or inside(m.ts)]
    page, next_cursor = _page(msgs, args, 1000)
    return {"ok": True, "messages": page, "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor}}


def conversations_info(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel")
    return {"ok": True, "channel": channel_by_id(ctx.state, args["channel"]).to_api()}


CONVERSATION_TYPES = frozenset({"public_channel", "private_channel", "mpim", "im"})


def _conversation_type(channel: Channel) -> str:
    if channel.im_user is not None:
        return "im"
    return "private_channel" if channel.is_private else "public_channel"


def conversations_list(ctx: MethodContext, args: Args) -> dict[str, Any]:
    """Channels of the requested `types` (default public), private ones only where the bot is
    a member, as Slack lists them; `exclude_archived`, `limit` (default 100) and `cursor`."""
    types = {t.strip() for t in (arg_str(args, "types") or "public_channel").split(",") if t.strip()}
    if not types or not types <= CONVERSATION_TYPES:
        raise ApiError("invalid_types")
    exclude_archived = arg_bool(args, "exclude_archived")
    listed = [c.to_api() for c in ctx.state.channels.values()
              if _conversation_type(c) in types and not (exclude_archived and c.is_archived)
              and (_conversation_type(c) != "private_channel" or c.is_member)]
    page, next_cursor = _page(listed, args, 100)
    return {"ok": True, "channels": page, "response_metadata": {"next_cursor": next_cursor}}


def conversations_join(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel")
    channel = channel_by_id(ctx.state, args["channel"])
    if channel.im_user is not None or channel.is_private:
        raise ApiError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise ApiError("is_archived")
    out: dict[str, Any] = {"ok": True}
    if channel.is_member:
        out.update({"warning": "already_in_channel", "response_metadata": {"warnings": ["already_in_channel"]}})
    channel.is_member = True
    ctx.state.touch("channel", channel.id)
    out["channel"] = channel.to_api()
    return out


# -- reactions.add ------------------------------------------------------------------------------
def reactions_add(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "channel", "name", "timestamp")
    st = ctx.state
    channel = channel_by_id(st, args["channel"])
    msg = st.message(channel.id, arg_str(args, "timestamp"))
    if msg is None:
        raise ApiError("message_not_found")
    name = arg_str(args, "name") or ""
    if not name or ":" in name.strip(":") or name.startswith(":") or " " in name:
        raise ApiError("invalid_name")
    reactions = msg.payload.setdefault("reactions", [])
    st.touch_message(msg)
    me = st.identity.bot_user_id
    for reaction in reactions:
        if reaction["name"] == name:
            if me in reaction["users"]:
                raise ApiError("already_reacted")
            reaction["users"].append(me)
            reaction["count"] += 1
            return {"ok": True}
    reactions.append({"name": name, "users": [me], "count": 1})
    return {"ok": True}


def decode_json_value(value: Any) -> Any:
    """A JSON-string argument decoded (`blocks` sent form-encoded); unchanged when not JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


MESSAGE_METHODS: Mapping[str, MethodImpl] = MappingProxyType({
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.delete": chat_delete,
    "chat.getPermalink": chat_get_permalink,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "conversations.info": conversations_info,
    "conversations.list": conversations_list,
    "conversations.join": conversations_join,
    "reactions.add": reactions_add,
})
