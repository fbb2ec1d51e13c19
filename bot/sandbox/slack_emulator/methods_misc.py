"""Web API methods other than messages: `auth.test`, `apps.connections.open` (Socket Mode),
`users.*`, `usergroups.*`, `views.*` and the file upload flow (`files.getUploadURLExternal`, the raw upload, `files.completeUploadExternal`,
`files.info`).

Same contract as `methods.py`: called under the emulator's lock with decoded arguments,
return the response body or raise `ApiError`.

The upload flow keeps Slack's three steps honest: the upload URL is single-use and must
receive exactly the `length` announced in step one, and `files.completeUploadExternal`
refuses file ids that were never issued or never received their bytes.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.sandbox.slack_emulator.blockkit import check_view
from bot.sandbox.slack_emulator.errors import ApiError
from bot.sandbox.slack_emulator.methods import (
    MESSAGE_METHODS,
    Args,
    MethodContext,
    MethodImpl,
    arg_bool,
    arg_str,
    bot_message,
    channel_by_id,
    message_blocks,
    require,
)
from bot.sandbox.slack_emulator.socket_mode import SocketModeServer
from bot.sandbox.slack_emulator.state import FileRecord, Message, ViewRecord

UPLOAD_PATH_PREFIX = "/upload/v1/"
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
"""Methods that take the app-level token (`xapp-`); every other method takes the bot token."""


@dataclass(frozen=True)
class MethodContextWithSocket(MethodContext):
    """A `MethodContext` that also reaches the emulator's Socket Mode server."""

    socket_mode: SocketModeServer | None = None


def token_problem(method: str, token: str, *, bot_token: str, app_token: str) -> str | None:
    """Slack's error code for calling `method` with `token`, or None when the token fits:
    an unknown token is `invalid_auth`; a known token of the wrong kind (a bot token on
    `apps.connections.open`, the app token anywhere else) is `not_allowed_token_type`."""
    if token not in (bot_token, app_token):
        return "invalid_auth"
    if (token == app_token) != (method in APP_TOKEN_METHODS):
        return "not_allowed_token_type"
    return None


def auth_test(ctx: MethodContext, args: Args) -> dict[str, Any]:
    ident = ctx.state.identity
    return {"ok": True, "url": ident.url, "team": ident.team_name, "user": ident.bot_name,
            "team_id": ident.team_id, "user_id": ident.bot_user_id, "bot_id": ident.bot_id,
            "is_enterprise_install": False}


def apps_connections_open(ctx: MethodContext, args: Args) -> dict[str, Any]:
    """A one-time WebSocket URL of the Socket Mode server (`socket_mode.py`)."""
    server = ctx.socket_mode if isinstance(ctx, MethodContextWithSocket) else None
    if server is None or not server.running:
        raise ApiError("internal_error", ["[ERROR] the emulator's Socket Mode server is not running"])
    return {"ok": True, "url": server.issue_url()}


# -- users / usergroups -------------------------------------------------------------------------
def users_info(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "user")
    user = ctx.state.users.get(arg_str(args, "user") or "")
    if user is None:
        raise ApiError("user_not_found")
    return {"ok": True, "user": user.to_api()}


def users_lookup_by_email(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "email")
    email = (arg_str(args, "email") or "").strip().lower()
    for user in ctx.state.users.values():
        if user.email and user.email.lower() == email and not user.deleted:
            return {"ok": True, "user": user.to_api()}
    raise ApiError("users_not_found")


def usergroups_list(ctx: MethodContext, args: Args) -> dict[str, Any]:
    include_users = arg_bool(args, "include_users")
    include_disabled = arg_bool(args, "include_disabled")
    groups = [g.to_api(include_users=include_users) for g in ctx.state.usergroups.values()
              if include_disabled or not g.disabled]
    return {"ok": True, "usergroups": groups}


def usergroups_users_list(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "usergroup")
    group = ctx.state.usergroups.get(arg_str(args, "usergroup") or "")
    if group is None or (group.disabled and not arg_bool(args, "include_disabled")):
        raise ApiError("no_such_subteam")
    return {"ok": True, "users": list(group.users)}


# -- views ---------------------------------------------------------------------------------------
def _valid_view(args: Args) -> dict[str, Any]:
    """The `view` argument, checked like Slack checks it: a problem answers
    `invalid_arguments` with `[ERROR] ... [json-pointer:/view/...]` messages."""
    view = args.get("view")
    if isinstance(view, str):
        raise ApiError("invalid_arguments", ["[ERROR] view is not valid JSON [json-pointer:/view]"])
    problems = check_view(view)
    if problems:
        raise ApiError("invalid_arguments", [p.render() for p in problems])
    assert isinstance(view, dict)
    return view


def _view_hash(view_id: str, revision: int) -> str:
    return f"{int(time.time())}.{hashlib.sha1(f'{view_id}:{revision}'.encode()).hexdigest()[:8]}"


def _view_object(ctx: MethodContext, view_id: str, view: dict[str, Any], revision: int,
                 root_view_id: str) -> dict[str, Any]:
    ident = ctx.state.identity
    out = copy.deepcopy(view)
    for index, block in enumerate(out.get("blocks", [])):
        if isinstance(block, dict) and "block_id" not in block:
            block["block_id"] = hashlib.sha1(f"{view_id}:{revision}:{index}".encode()).hexdigest()[:5]
    out.update({
        "id": view_id,
        "team_id": ident.team_id,
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": _view_hash(view_id, revision),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "root_view_id": root_view_id,
        "previous_view_id": None,
        "app_id": ident.app_id,
        "app_installed_team_id": ident.team_id,
        "bot_id": ident.bot_id,
    })
    return out


def views_open(ctx: MethodContext, args: Args) -> dict[str, Any]:
    st = ctx.state
    trigger = arg_str(args, "trigger_id") or arg_str(args, "interactivity_pointer")
    if not trigger:
        raise ApiError("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
    if trigger in st.used_trigger_ids:
        raise ApiError("exchanged_trigger_id")
    view = _valid_view(args)
    external_id = view.get("external_id")
    if external_id and any(r.view.get("external_id") == external_id for r in st.views.values()):
        raise ApiError("duplicate_external_id")
    st.used_trigger_ids.add(trigger)
    view_id = st.new_id("V")
    obj = _view_object(ctx, view_id, view, 1, view_id)
    st.views[view_id] = ViewRecord(obj, trigger)
    st.touch("view", view_id)
    return {"ok": True, "view": copy.deepcopy(obj)}


def views_update(ctx: MethodContext, args: Args) -> dict[str, Any]:
    st = ctx.state
    view_id = arg_str(args, "view_id")
    external_id = arg_str(args, "external_id")
    record = st.views.get(view_id or "")
    if record is None and external_id:
        record = next((r for r in st.views.values() if r.view.get("external_id") == external_id), None)
    if record is None:
        raise ApiError("not_found")
    expected_hash = arg_str(args, "hash")
    if expected_hash and expected_hash != record.view["hash"]:
        raise ApiError("hash_conflict")
    view = _valid_view(args)
    record.revision += 1
    obj = _view_object(ctx, record.view["id"], view, record.revision, record.view["root_view_id"])
    record.view = obj
    st.touch("view", obj["id"])
    return {"ok": True, "view": copy.deepcopy(obj)}


# -- files --------------------------------------------------------------------------------------
def files_get_upload_url_external(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "filename", "length")
    filename = arg_str(args, "filename") or ""
    try:
        length = int(args["length"])
    except (TypeError, ValueError) as exc:
        raise ApiError("invalid_arguments", ["[ERROR] invalid value for field length: expected integer"]) from exc
    if length < 1:
        raise ApiError("invalid_arguments", ["[ERROR] length must be a positive number of bytes"])
    st = ctx.state
    file_id = st.new_id("F")
    st.files[file_id] = FileRecord(file_id, filename, length, int(time.time()), st.identity.bot_user_id,
                                   alt_txt=arg_str(args, "alt_txt"), snippet_type=arg_str(args, "snippet_type"))
    st.touch("file", file_id)
    return {"ok": True, "upload_url": f"{ctx.server_root}{UPLOAD_PATH_PREFIX}{file_id}", "file_id": file_id}


def receive_upload(ctx: MethodContext, file_id: str, data: bytes) -> tuple[int, str]:
    """Step two: the raw POST to the upload URL. Returns (HTTP status, body text) as
    files.slack.com does: `200 OK - <bytes>` on success."""
    record = ctx.state.files.get(file_id)
    if record is None:
        return 404, "upload URL not found"
    if record.data is not None:
        return 400, "upload URL already used"
    if len(data) != record.length:
        return 400, f"length mismatch: files.getUploadURLExternal announced {record.length} bytes, got {len(data)}"
    record.data = bytes(data)
    ctx.state.touch("file", file_id)
    return 200, f"OK - {len(data)}"


def files_complete_upload_external(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "files")
    st = ctx.state
    files = args.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
        raise ApiError("invalid_arguments", ['[ERROR] files must be a JSON array of {"id": ..., "title": ...}'])
    records: list[FileRecord] = []
    for item in files:
        record = st.files.get(str(item["id"]))
        if record is None:
            raise ApiError("file_not_found", [f"[ERROR] unknown file id {item['id']}"])
        if record.data is None:
            raise ApiError("file_not_found", [f"[ERROR] nothing was uploaded to the upload URL of {record.id}"])
        if record.completed:
            raise ApiError("invalid_arguments", [f"[ERROR] file {record.id} was already completed"])
        records.append(record)
    channel_ids: list[str] = []
    if arg_str(args, "channel_id"):
        channel_ids.append(channel_by_id(st, args["channel_id"]).id)
    for cid in (arg_str(args, "channels") or "").split(","):
        if cid.strip() and channel_by_id(st, cid.strip()).id not in channel_ids:
            channel_ids.append(cid.strip())
    thread_ts = arg_str(args, "thread_ts")
    if thread_ts and len(channel_ids) != 1:
        raise ApiError("invalid_arguments", ["[ERROR] thread_ts needs exactly one channel_id"])
    blocks = message_blocks(args)
    initial_comment = arg_str(args, "initial_comment")
    for item, record in zip(files, records, strict=True):
        record.completed = True
        record.title = arg_str(item, "title") or record.filename
        record.channels = list(channel_ids)
        record.thread_ts = thread_ts
        record.initial_comment = initial_comment
        st.touch("file", record.id)
    for cid in channel_ids:  # the share: one message carrying the files, in the channel or thread
        ts = st.next_ts()
        payload = bot_message(ctx, ts, text=initial_comment, blocks=blocks)
        payload.update({"upload": True, "display_as_bot": False,
                        "files": [r.to_api(st.identity.team_id, st.identity.url) for r in records]})
        if thread_ts:
            payload["thread_ts"] = thread_ts
            root = st.message(cid, thread_ts)
            if root is not None:
                payload["parent_user_id"] = root.payload.get("user")
        st.add_message(Message(cid, payload))
    return {"ok": True, "files": [{"id": r.id, "title": r.title} for r in records]}


def files_info(ctx: MethodContext, args: Args) -> dict[str, Any]:
    require(args, "file")
    record = ctx.state.files.get(arg_str(args, "file") or "")
    if record is None or not record.completed:
        raise ApiError("file_not_found")
    st = ctx.state
    return {"ok": True, "file": record.to_api(st.identity.team_id, st.identity.url), "comments": [],
            "response_metadata": {"next_cursor": ""}}


def files_upload_retired(ctx: MethodContext, args: Args) -> dict[str, Any]:
    """`files.upload` was retired in November 2025; use files_upload_v2."""
    raise ApiError("method_deprecated", ["[ERROR] files.upload is retired; use files.getUploadURLExternal "
                                         "and files.completeUploadExternal (WebClient.files_upload_v2)"])


METHODS: Mapping[str, MethodImpl] = MappingProxyType({
    **MESSAGE_METHODS,
    "auth.test": auth_test,
    "apps.connections.open": apps_connections_open,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.list": usergroups_list,
    "usergroups.users.list": usergroups_users_list,
    "views.open": views_open,
    "views.update": views_update,
    "files.getUploadURLExternal": files_get_upload_url_external,
    "files.completeUploadExternal": files_complete_upload_external,
    "files.info": files_info,
    "files.upload": files_upload_retired,
})
"""Every Web API method the emulator answers; anything else is `unknown_method`."""
