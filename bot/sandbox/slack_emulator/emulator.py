"""`SlackEmulator`: a Slack Web API on loopback for tests and the demo.

Point the real client at it with `WebClient(token=emu.bot_token, base_url=emu.base_url)`.
Every call is checked the way Slack checks it (token, arguments against Slack's OpenAPI
description, Block Kit limits), answered with Slack-shaped JSON, and recorded in `calls`.

Thread safety: one lock guards the workspace, the call log and the injection queue. Each
HTTP call runs its whole decision (injection, auth, checks, the method, the record) under the
lock, so concurrent calls from the bot's worker threads serialise like one Slack workspace
would and `calls` order equals the order the calls took effect. Test-side queries take the
same lock and return deep copies, so a test never sees a half-applied call.

Persistence: with `state_file`, the workspace lives in that SQLite file too (`persistence.py`):
it is loaded at construction and every change is written through under the same lock, before
the call is answered. Without it (tests, the demo) the workspace lives in memory only.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.sandbox.paths import slack_openapi_path
from bot.sandbox.slack_emulator.errors import ApiError
from bot.sandbox.slack_emulator.faults import ArgsMatch, HeldAnswer
from bot.sandbox.slack_emulator.methods import MethodContext
from bot.sandbox.slack_emulator.methods_misc import (
    METHODS,
    UPLOAD_PATH_PREFIX,
    MethodContextWithSocket,
    receive_upload,
    token_problem,
)
from bot.sandbox.slack_emulator.persistence import WorkspaceStore
from bot.sandbox.slack_emulator.server import (
    HttpRequest,
    HttpResponse,
    LoopbackHTTPServer,
    parse_arguments,
    parse_multipart,
)
from bot.sandbox.slack_emulator.socket_mode import SocketModeServer
from bot.sandbox.slack_emulator.state import Channel, Identity, Message, User, Usergroup, WorkspaceState
from bot.sandbox.slack_emulator.validation import ApiCatalog

UPLOAD_PSEUDO_METHOD = "<upload>"
"""The `SlackCall.method` recorded for raw POSTs to an upload URL (not a Web API method)."""

_DEFAULT_SPEC: Any = object()
T = TypeVar("T")


@dataclass(frozen=True)
class SlackCall:
    """One recorded call. `args` are as the client sent them (token removed, JSON-string
    arguments such as `blocks` decoded); `response` is the body returned."""

    method: str
    args: dict[str, Any]
    ok: bool
    error: str | None
    status: int
    response: dict[str, Any]
    at: float
    http_method: str = "POST"
    content_type: str = ""

    @property
    def status_code(self) -> int:
        return self.status


@dataclass
class _Injection:
    method: str
    status: int
    retry_after: int | None
    error: str | None
    remaining: int


@functools.lru_cache(maxsize=4)
def _load_catalog(path: str | None, mtime_ns: int) -> ApiCatalog:
    """Parsed once per (file, version); `ApiCatalog` is immutable, so sharing it is safe."""
    return ApiCatalog.from_openapi(Path(path) if path else None)


def load_catalog(openapi_path: Path | None) -> ApiCatalog:
    """The argument catalog for a spec file (or only the allow-listed methods for None)."""
    if openapi_path is None:
        return _load_catalog(None, 0)
    path = Path(openapi_path)
    return _load_catalog(str(path.resolve()), path.stat().st_mtime_ns)


class SlackEmulator:
    """A Slack workspace and Web API on `http://127.0.0.1:<port>/api/`.

    Pre-seeded with #incidents (`C0OPSBOT`), #general, the bot user `U0OPSBOT`, users
    `U0ALICE`, `U0BOB`, `U0CAROL` (emails `<name>@example.com`) and the groups `S0ONCALL`
    (@oncall: alice, bob) and `S0SRE` (@sre). Use as a context manager or start()/stop().
    Socket Mode: `apps.connections.open` with `app_token` opens a WebSocket on `socket_mode`
    (`socket_mode.SocketModeServer`), started and stopped with the emulator.

    `state_file`: keep the workspace (channels, users, groups, messages, files, views and the ts
    counter) in this SQLite file and start from what it holds; seeded only when it is new.
    Raises `persistence.WorkspaceFileError` when the file cannot be used; an unreadable file
    is set aside with a warning. `stop()` releases the file: later changes stay in memory.
    """

    def __init__(self, openapi_path: Path | None = _DEFAULT_SPEC, bot_token: str = "xoxb-emulator",
                 host: str = "127.0.0.1", port: int = 0, *, identity: Identity | None = None,
                 state_file: Path | None = None) -> None:
        if openapi_path is _DEFAULT_SPEC:
            default = slack_openapi_path()
            openapi_path = default if default.exists() else None
        self.catalog = load_catalog(openapi_path)
        self.bot_token = bot_token
        self.app_token = "xapp-1-A0OPSBOT-emulator"  # the app-level token (Socket Mode)
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._state = WorkspaceState(identity or Identity())
        self._store: WorkspaceStore | None = None
        if state_file is None:
            self._state.seed_defaults()
        else:
            self._store = WorkspaceStore.open(Path(state_file), self._state)
        self._calls: list[SlackCall] = []
        self._injections: list[_Injection] = []
        self._holds: list[HeldAnswer] = []
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._root = ""
        self._seeded = 0  # messages added with add_message (they record no call)
        self._web: Callable[[HttpRequest], HttpResponse | None] | None = None
        self.socket_mode = SocketModeServer(host, self._state.identity.app_id)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> str:
        """Bind and serve in a daemon thread; returns `base_url`. Starting twice is an error."""
        if self._server is not None:
            raise RuntimeError("the Slack emulator is already running")
        server = LoopbackHTTPServer(self._host, self._port, self._handle)
        host, port = server.server_address[:2]
        self._root = f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"slack-emulator-{port}", daemon=True)
        self._thread.start()
        self.socket_mode.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close the socket; recorded state stays readable. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        with self._lock:
            for held in self._holds:
                held.release()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.socket_mode.stop()
        with self._lock:
            if self._store is not None:
                self._store.close()

    def __enter__(self) -> SlackEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/api/`; slack_sdk appends the method name."""
        if not self._root:
            raise RuntimeError("the Slack emulator has not been started")
        return f"{self._root}/api/"

    # -- seeds -----------------------------------------------------------------------------------
    def add_user(self, id: str, name: str, real_name: str | None = None, is_bot: bool = False,  # noqa: A002
                 tz: str = "UTC", email: str | None = None) -> None:
        """Add or replace a user; `email` defaults to `<name>@example.com` for humans."""
        with self._lock:
            team = self._state.identity.team_id
            mail = email if email is not None else (None if is_bot else f"{name}@example.com")
            self._state.users[id] = User(id, name, real_name or name, team, is_bot=is_bot, tz=tz, email=mail)
            self._state.touch("user", id)
            self._save()

    def add_usergroup(self, id: str, handle: str, users: list[str] | None = None,  # noqa: A002
                      name: str | None = None, description: str = "") -> None:
        with self._lock:
            team = self._state.identity.team_id
            self._state.usergroups[id] = Usergroup(id, handle, name or handle, team, list(users or []), description)
            self._state.touch("usergroup", id)
            self._save()

    def add_channel(self, id: str, name: str, *, is_private: bool = False, is_member: bool = True,  # noqa: A002
                    is_archived: bool = False) -> None:
        """Add or replace a channel; `name` without `#`. `is_member` is whether the bot is in it."""
        with self._lock:
            self._state.channels[id] = Channel(id, name.lstrip("#"), is_private=is_private,
                                               is_member=is_member, is_archived=is_archived)
            self._state.touch("channel", id)
            self._save()

    def add_message(self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None,
                    blocks: list[dict[str, Any]] | None = None) -> str:
        """Seed a message from a human (as if typed in Slack); returns its ts."""
        with self._lock:
            st = self._state
            chan = st.resolve_channel(channel)
            ts = st.next_ts()
            payload: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts,
                                       "team": st.identity.team_id}
            if blocks:
                payload["blocks"] = copy.deepcopy(blocks)
            if thread_ts:
                payload["thread_ts"] = thread_ts
                root = st.message(chan.id, thread_ts)
                if root is not None:
                    payload["parent_user_id"] = root.payload.get("user")
            st.add_message(Message(chan.id, payload))
            self._seeded += 1
            self._save()
            return ts

    def new_trigger_id(self) -> str:
        """A fresh trigger id shaped like Slack's, for views.open in tests."""
        return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"

    # -- fault injection -------------------------------------------------------------------------
    def inject(self, method: str, *, status: int = 429, retry_after: int | None = 1, error: str | None = None,
               times: int = 1) -> None:
        """Make the next `times` calls to `method` (`"*"` for any) fail without effect.

        With `error`, the answer is HTTP 200 `{"ok": false, "error": error}`. Otherwise it is
        HTTP `status`: 429 answers `{"ok": false, "error": "ratelimited"}` with
        `Retry-After: retry_after` (omitted when None); 5xx answers a JSON error body (503
        also carries Retry-After). Injections queue in order.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if error is None and not (status == 429 or 500 <= status <= 599):
            raise ValueError(f"inject needs an error code, status 429 or a 5xx status, not {status}")
        with self._lock:
            self._injections.append(_Injection(method, 200 if error else status, retry_after, error, times))

    def delay_answer(self, method: str, seconds: float, *, match: ArgsMatch | None = None,
                     times: int = 1, drop: bool = False) -> HeldAnswer:
        """Apply the next `times` successful calls to `method` (`"*"` for any) whose arguments
        satisfy `match`, then hold each answer for `seconds` (or until `release()`): the write
        is in the workspace while the client still waits. With `drop`, the connection is then
        closed instead of answered (a lost answer). See `faults.HeldAnswer`."""
        if times < 1 or seconds < 0:
            raise ValueError("times must be at least 1 and seconds not negative")
        held = HeldAnswer(method, seconds, match, times, drop)
        with self._lock:
            self._holds.append(held)
        return held

    def _take_hold(self, method: str, call: SlackCall) -> HeldAnswer | None:
        for held in self._holds:
            if call.ok and held.matches(method, call.args):
                held.took(call)
                return held
        return None

    def _take_injection(self, method: str) -> HttpResponse | None:
        for inj in self._injections:
            if inj.remaining > 0 and inj.method in (method, "*"):
                inj.remaining -= 1
                if inj.remaining == 0:
                    self._injections.remove(inj)
                if inj.error:
                    return HttpResponse.json(200, {"ok": False, "error": inj.error})
                headers: tuple[tuple[str, str], ...] = ()
                if inj.retry_after is not None and inj.status in (429, 503):
                    headers = (("Retry-After", str(inj.retry_after)),)
                code = {429: "ratelimited", 503: "service_unavailable"}.get(inj.status, "internal_error")
                return HttpResponse.json(inj.status, {"ok": False, "error": code}, headers)
        return None

    # -- observation -----------------------------------------------------------------------------
    @property
    def calls(self) -> list[SlackCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages as the channel shows them, oldest first: top-level messages (no
        `thread_ts`; a thread root carries `reply_count`, `reply_users` and `latest_reply`)
        plus `reply_broadcast` replies (subtype `thread_broadcast`, with their `thread_ts`).
        Each has `channel`, and `history`: its versions before each chat.update."""
        with self._lock:
            cid = self._channel_id(channel) if channel else None
            if channel and cid is None:
                return []
            return [m.to_test_view() for m in self._state.channel_messages(cid)]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The root followed by its replies, oldest first (replies only if the root is gone)."""
        with self._lock:
            cid = self._channel_id(channel)
            if cid is None:
                return []
            return [m.to_test_view() for m in self._state.thread_messages(cid, ts)]

    def ephemerals(self, channel: str | None = None) -> list[dict[str, Any]]:
        """chat.postEphemeral messages, oldest first: channel, user (the recipient), ts (the
        `message_ts` returned), text, blocks, thread_ts."""
        with self._lock:
            cid = self._channel_id(channel) if channel else None
            return [copy.deepcopy(e) for e in self._state.ephemerals if channel is None or e["channel"] == cid]

    @property
    def files(self) -> list[dict[str, Any]]:
        """Completed uploads, in upload order."""
        with self._lock:
            return [f.to_test_view() for f in self._state.files.values() if f.completed]

    @property
    def views(self) -> list[dict[str, Any]]:
        """Views opened with views.open, as last updated."""
        with self._lock:
            return [copy.deepcopy(v.view) for v in self._state.views.values()]

    def wait_for(self, predicate: Callable[[SlackEmulator], T], timeout: float = 10.0,
                 interval_seconds: float = 0.02) -> T:
        """Poll `predicate(self)` until it returns something truthy and return that.

        Raises TimeoutError after `timeout` seconds with a summary of the calls so far.
        Exceptions from the predicate propagate (a broken predicate should fail loudly).
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s; calls so far:\n{self.summary()}")
            time.sleep(interval_seconds)

    def summary(self, last: int = 40) -> str:
        """One line per recent call: method, HTTP status, ok or the error."""
        calls = self.calls
        lines = [f"  {c.method} -> {c.status} {'ok' if c.ok else c.error}" for c in calls[-last:]]
        if len(calls) > last:
            lines.insert(0, f"  ... {len(calls) - last} earlier calls")
        return "\n".join(lines) or "  (no calls)"

    # -- the web view's reads (see web.py) ------------------------------------------------------
    def mount_web(self, app: Callable[[HttpRequest], HttpResponse | None]) -> None:
        """Serve `app` for `/` and every path under `/web/` (never `/api/` or the upload URLs)."""
        self._web = app

    @property
    def change_count(self) -> int:
        """Grows with every recorded call and seeded message: a cheap "has anything changed?"."""
        with self._lock:
            return len(self._calls) + self._seeded

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One stored message (a root or a reply) as `messages()` shows it, or None."""
        with self._lock:
            cid = self._channel_id(channel)
            found = self._state.message(cid, ts) if cid else None
            return found.to_test_view() if found is not None else None

    def directory(self) -> dict[str, Any]:
        """Names for display: `users` {id: name}, `humans` [(id, name, real name)], `usergroups`
        {id: handle}, `channels` [(id, name)] of the channels the bot is in (no DMs)."""
        with self._lock:
            st = self._state
            return {
                "users": {u.id: u.name for u in st.users.values()},
                "humans": [(u.id, u.name, u.real_name) for u in st.users.values() if not u.is_bot and not u.deleted],
                "usergroups": {g.id: g.handle for g in st.usergroups.values()},
                "channels": [(c.id, c.name) for c in st.channels.values()
                             if c.im_user is None and c.is_member and not c.is_archived],
            }

    def file_data(self, file_id: str) -> tuple[str, bytes] | None:
        """(filename, bytes) of a completed upload, or None."""
        with self._lock:
            record = self._state.files.get(file_id)
            if record is None or not record.completed or record.data is None:
                return None
            return record.filename, bytes(record.data)

    def open_views(self) -> list[dict[str, Any]]:
        """Views opened with views.open, as last updated, each with the `trigger_id` that opened it."""
        with self._lock:
            return [{"view": copy.deepcopy(r.view), "trigger_id": r.trigger_id} for r in self._state.views.values()]

    def _save(self) -> None:
        """Write what the last change touched to the state file (caller holds the lock)."""
        if self._store is not None:
            self._store.save(self._state)

    def _channel_id(self, channel: str | None) -> str | None:
        found = self._state.find_channel(channel)
        return found.id if found is not None else None

    # -- request handling ------------------------------------------------------------------------
    def _handle(self, request: HttpRequest) -> HttpResponse | None:
        if request.path.startswith("/api/"):
            return self._handle_api(request.path[len("/api/"):], request)
        if request.path.startswith(UPLOAD_PATH_PREFIX) and request.method == "POST":
            return self._handle_upload(request.path[len(UPLOAD_PATH_PREFIX):], request)
        if self._web is not None and (request.path == "/" or request.path.startswith("/web/")):
            return self._web(request)
        return HttpResponse.text(404, "not found")

    def _handle_api(self, method: str, request: HttpRequest) -> HttpResponse | None:
        parsed = parse_arguments(request)
        args = dict(parsed.args)
        body_token = args.pop("token", None)
        token = _bearer(request.headers.get("authorization", ""))
        if token is None and not parsed.json_body and isinstance(body_token, str) and body_token:
            token = body_token
        with self._lock:
            response = self._take_injection(method)
            if response is None:
                response = self._answer(method, args, parsed.error, parsed.json_body, token)
            self._save()
            held = self._take_hold(method, self._record(method, args, response, request))
        if held is not None:
            held.hold()  # the call has taken effect; its answer waits (outside the lock)
            if held.drop:
                return None  # the answer is lost: the connection closes with no response
        return response

    def _answer(self, method: str, args: dict[str, Any], parse_error: str | None, json_body: bool,
                token: str | None) -> HttpResponse:
        if method not in METHODS:
            return HttpResponse.json(200, {"ok": False, "error": "unknown_method"})
        if parse_error:
            return HttpResponse.json(200, {"ok": False, "error": parse_error})
        if not token:
            return HttpResponse.json(200, {"ok": False, "error": "not_authed"})
        problem = token_problem(method, token, bot_token=self.bot_token, app_token=self.app_token)
        if problem:
            return HttpResponse.json(200, {"ok": False, "error": problem})
        check = self.catalog.check(method, args, json_body=json_body)
        if not check.ok:
            return HttpResponse.json(200, ApiError("invalid_arguments", check.messages).body())
        call_args = {} if check.json_ignored else args
        ctx = MethodContextWithSocket(self._state, self._root, self.socket_mode)
        try:
            body = METHODS[method](ctx, call_args)
        except ApiError as exc:
            body = exc.body()
            if check.messages:
                meta = body.setdefault("response_metadata", {})
                meta["messages"] = list(check.messages) + list(meta.get("messages", []))
            return HttpResponse.json(exc.http_status, body)
        except Exception as exc:  # an emulator bug: answer like a Slack outage, and record it
            return HttpResponse.json(500, {"ok": False, "error": "fatal_error",
                                           "response_metadata": {"messages": [f"[ERROR] emulator bug: {exc!r}"]}})
        if check.messages:
            meta = body.setdefault("response_metadata", {})
            meta["warnings"] = ["json_body_ignored"]
            meta["messages"] = list(check.messages)
        return HttpResponse.json(200, body)

    def _handle_upload(self, file_id: str, request: HttpRequest) -> HttpResponse:
        data = request.body
        if request.content_type == "multipart/form-data":
            try:
                _, parts = parse_multipart(request.headers.get("content-type", ""), request.body)
            except ValueError:
                parts = {}
            data = parts.get("file", next(iter(parts.values()), b""))
        with self._lock:
            response = self._take_injection(UPLOAD_PSEUDO_METHOD)
            if response is None:
                status, text = receive_upload(MethodContext(self._state, self._root), file_id, data)
                response = HttpResponse.text(status, text)
                self._save()
            self._record(UPLOAD_PSEUDO_METHOD, {"file_id": file_id, "length": len(data)}, response, request)
            return response

    def _record(self, method: str, args: dict[str, Any], response: HttpResponse, request: HttpRequest) -> SlackCall:
        if response.content_type.startswith("application/json"):
            body: dict[str, Any] = json.loads(response.body)
            ok, error = bool(body.get("ok")), body.get("error")
        else:
            body = {"text": response.body.decode("utf-8", "replace")}
            ok, error = response.status == 200, None if response.status == 200 else body["text"]
        call = SlackCall(method, copy.deepcopy(args), ok, error, response.status, body, time.time(),
                         request.method, request.content_type)
        self._calls.append(call)
        return call


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
