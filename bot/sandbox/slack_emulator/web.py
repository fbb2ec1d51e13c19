"""The Slack emulator's web view: the workspace as a Slack-like page, and people acting in it.

Mounted on the emulator's own HTTP server (`SlackEmulator.mount_web`): `/` is the page, and
everything else lives under `/web/` (never `/api/`, never the upload URLs):

    GET  /web/state?viewer=U&channel=C&thread=TS&since=V   panes as HTML + the open modal, JSON
    GET  /web/files/<file id>/<name>                      an uploaded file's bytes
    GET  /web/static/<name>                               the page's CSS and JS
    POST /web/click | /web/command | /web/message | /web/view | /web/view/close | /web/scenario
    POST /web/response/<token>                            a response_url the bot may post to

Invariants:
- A person's act reaches the bot only as Slack would deliver it: signed, to its Slack endpoints
  (`web_inbound.BotLink`). The view never writes the bot's messages itself; it shows what the
  bot posted through the Web API, plus what Slack shows one person only (ephemerals, the answer
  to their slash command, the modal opened with their trigger id).
- Requests are accepted only with a loopback `Host` (no DNS rebinding), and state-changing ones
  only as `application/json` (a cross-site form cannot send that without a preflight).
  Responses close the connection, so stopping the emulator leaves no browser connection behind.
- `version` changes whenever the workspace or the view's own state changes; the page polls it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from bot.sandbox.slack_emulator.server import HttpRequest, HttpResponse
from bot.sandbox.slack_emulator.web_inbound import (
    Actor,
    BotAnswer,
    BotLink,
    response_payload,
    values_for_view,
    view_errors,
)
from bot.sandbox.slack_emulator.web_render import (
    FILES_PATH,
    Directory,
    Feed,
    Renderer,
    file_mimetype,
    is_inline_image,
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_VIEWER = "U0ALICE"
DEFAULT_CHANNEL = "C0OPSBOT"
NOTICES_KEPT = 6
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
COMMON_HEADERS = (("Connection", "close"), ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))
WORD_MENTION_PREFIX = "@"
NO_THREAD = "-"


class ScenarioControl(Protocol):
    """What the page's "fire another scenario" button drives (see bot.sandbox.web_demo)."""

    def available(self) -> list[tuple[str, str]]: ...  # (name, title)
    def fire(self, name: str, notify: Callable[[str], None]) -> None: ...  # starts it, returns at once


def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, json.dumps(payload).encode("utf-8"), COMMON_HEADERS)


def _host_ok(request: HttpRequest) -> bool:
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOOPBACK_HOSTS


def slack_escape(text: str) -> str:
    """What a Slack client sends for typed text: `&`, `<`, `>` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class WebView:
    """The page over one emulator. Thread-safe: its own state is guarded by one lock; the
    emulator's is read through its public, locked methods."""

    def __init__(self, emulator: Any, *, renderer: Renderer | None = None,
                 scenarios: ScenarioControl | None = None) -> None:
        self._emu = emulator
        self._render = renderer or Renderer()
        self._scenarios = scenarios
        self._lock = threading.Lock()
        self._link: BotLink | None = None
        self._counter = 0
        self._triggers: dict[str, str] = {}  # trigger id → user who acted
        self._closed_views: set[str] = set()
        self._view_errors: dict[str, dict[str, str]] = {}
        self._responses: list[dict[str, Any]] = []  # slash-command answers and response_url posts
        self._response_urls: dict[str, Actor] = {}
        self._notices: list[str] = []

    # -- wiring --------------------------------------------------------------------------------
    def connect(self, bot_url: str, signing_secret: str) -> None:
        """Where people's acts go: the bot's base URL and the app's signing secret."""
        with self._lock:
            self._link = BotLink(bot_url, signing_secret)
            self._counter += 1

    def notify(self, text: str) -> None:
        """A line in the page's notice strip (errors, the demo's progress)."""
        with self._lock:
            self._notices = [*self._notices, f"{time.strftime('%H:%M:%S')} {text}"][-NOTICES_KEPT:]
            self._counter += 1

    @property
    def version(self) -> str:
        with self._lock:
            return f"{self._emu.change_count}.{self._counter}"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _host_ok(request):
            return HttpResponse(403, b"the web view answers loopback hosts only", COMMON_HEADERS, "text/plain")
        path = request.path
        if request.method == "GET":
            if path == "/":
                return self._page(request)
            if path == "/web/state":
                return self._state(request)
            if path.startswith(FILES_PATH):
                return self._file(path[len(FILES_PATH):])
            if path.startswith("/web/static/"):
                return self._static(path[len("/web/static/"):])
            return HttpResponse(404, b"not found", COMMON_HEADERS, "text/plain")
        if request.method != "POST":
            return HttpResponse(405, b"method not allowed", COMMON_HEADERS, "text/plain")
        if path.startswith("/web/response/"):
            return self._response_url(path[len("/web/response/"):], request.body)
        if request.content_type != "application/json":
            return _json(415, {"ok": False, "error": "send application/json"})
        try:
            body = json.loads(request.body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            return _json(400, {"ok": False, "error": "invalid JSON"})
        if not isinstance(body, dict):
            return _json(400, {"ok": False, "error": "a JSON object is expected"})
        handler = {"/web/click": self._click, "/web/command": self._command, "/web/message": self._message,
                   "/web/view": self._submit_view, "/web/view/close": self._close_view,
                   "/web/scenario": self._fire}.get(path)
        if handler is None:
            return _json(404, {"ok": False, "error": "no such action"})
        return handler(body)

    # -- reading ---------------------------------------------------------------------------------
    def _directory(self) -> Directory:
        return Directory.of(self._emu.directory())

    def _actor(self, body: dict[str, Any], directory: Directory, channel: str | None = None) -> Actor | None:
        user = str(body.get("viewer") or "")
        if user not in {uid for uid, _name, _real in directory.humans}:
            return None
        channel_id = channel or str(body.get("channel") or DEFAULT_CHANNEL)
        return Actor(user, directory.users.get(user, user), channel_id,
                     directory.channel_names.get(channel_id, channel_id))

    def _page(self, request: HttpRequest) -> HttpResponse:
        directory = self._directory()
        scenarios = self._scenarios.available() if self._scenarios else []
        html = self._render.page(directory, DEFAULT_VIEWER, scenarios)
        headers = (*COMMON_HEADERS, ("Content-Security-Policy", PAGE_CSP))
        return HttpResponse(200, html.encode("utf-8"), headers, "text/html; charset=utf-8")

    def _static(self, name: str) -> HttpResponse:
        found = self._render.static(name)
        if found is None:
            return HttpResponse(404, b"not found", COMMON_HEADERS, "text/plain")
        return HttpResponse(200, found[0], COMMON_HEADERS, found[1])

    def _file(self, rest: str) -> HttpResponse:
        file_id = unquote(rest.split("/", 1)[0])
        found = self._emu.file_data(file_id)
        if found is None:
            return HttpResponse(404, b"no such file", COMMON_HEADERS, "text/plain")
        filename, data = found
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename) or "file"
        disposition = "inline" if is_inline_image(filename) else "attachment"
        headers = (*COMMON_HEADERS, ("Content-Disposition", f'{disposition}; filename="{safe_name}"'),
                   ("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'"))
        kind = file_mimetype(filename) if disposition == "inline" else "application/octet-stream"
        return HttpResponse(200, data, headers, kind)

    def _only_for(self, viewer: str, channel: str) -> list[dict[str, Any]]:
        """Ephemerals (the bot's chat.postEphemeral and this view's answers) for `viewer` in `channel`."""
        shown = [{**e, "ephemeral": True} for e in self._emu.ephemerals(channel) if e.get("user") == viewer]
        with self._lock:
            shown += [dict(r) for r in self._responses if r["channel"] == channel
                      and (r["user"] == viewer or r.get("in_channel"))]
        return shown

    def _feeds(self, viewer: str, channel: str, thread: str | None) -> tuple[Feed, Feed | None, str | None]:
        """The channel pane and the thread pane. `thread`: the root's ts, NO_THREAD for none, or
        None to follow the newest thread (what the page shows until someone picks one)."""
        messages = self._emu.messages(channel)
        private = self._only_for(viewer, channel)
        in_channel = messages + [e for e in private if not e.get("thread_ts")]
        in_channel.sort(key=lambda m: float(m.get("ts") or 0))
        if thread == NO_THREAD:
            thread = None
        elif thread is None:
            roots = [m for m in messages if m.get("reply_count") and not m.get("thread_ts")]
            thread = roots[-1]["ts"] if roots else None
        names = dict(self._emu.directory()["channels"])
        feed = Feed(in_channel, "#" + names.get(channel, channel), channel)
        if thread is None:
            return feed, None, None
        replies = self._emu.thread(channel, thread) + [e for e in private if e.get("thread_ts") == thread]
        replies.sort(key=lambda m: (m.get("ts") != thread, float(m.get("ts") or 0)))
        return feed, Feed(replies, "Thread", channel, thread), thread

    def _modal_for(self, viewer: str) -> dict[str, Any] | None:
        with self._lock:
            mine = {t for t, user in self._triggers.items() if user == viewer}
            closed = set(self._closed_views)
        views = [v["view"] for v in self._emu.open_views() if v["trigger_id"] in mine and v["view"]["id"] not in closed]
        return views[-1] if views else None

    def _state(self, request: HttpRequest) -> HttpResponse:
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        version = self.version
        if query.get("since") == version:
            return _json(200, {"version": version, "same": True})
        directory = self._directory()
        viewer = query.get("viewer") or DEFAULT_VIEWER
        channel = query.get("channel") or DEFAULT_CHANNEL
        feed, thread_feed, thread_ts = self._feeds(viewer, channel, query.get("thread") or None)
        view = self._modal_for(viewer)
        with self._lock:
            errors = dict(self._view_errors.get(view["id"], {})) if view else {}
            notices = list(self._notices)
            connected = self._link is not None
        return _json(200, {
            "version": version, "viewer": viewer, "channel": channel, "thread": thread_ts,
            "connected": connected, "notices": notices, "channel_title": feed.title,
            "channel_html": str(self._render.feed(directory, feed, viewer, in_thread=False)),
            "thread_html": str(self._render.feed(directory, thread_feed, viewer, in_thread=True))
            if thread_feed else "",
            "modal": {"key": f"{view['id']}:{view['hash']}:{len(errors)}",
                      "html": str(self._render.modal(directory, view, errors))} if view else None,
        })

    # -- acting ----------------------------------------------------------------------------------
    def _require(self, body: dict[str, Any]) -> tuple[BotLink, Actor] | HttpResponse:
        with self._lock:
            link = self._link
        if link is None:
            return _json(503, {"ok": False, "error": "the bot is not connected yet"})
        actor = self._actor(body, self._directory())
        if actor is None:
            return _json(400, {"ok": False, "error": "unknown user"})
        return link, actor

    def _answered(self, answer: BotAnswer, what: str) -> HttpResponse:
        if not answer.ok:
            self.notify(f"{what}: {answer.error}")
        else:
            with self._lock:
                self._counter += 1
        return _json(200, {"ok": answer.ok, "status": answer.status, "error": answer.error})

    def _remember(self, trigger: str, actor: Actor) -> None:
        with self._lock:
            self._triggers[trigger] = actor.user_id

    def _click(self, body: dict[str, Any]) -> HttpResponse:
        required = self._require(body)
        if isinstance(required, HttpResponse):
            return required
        link, actor = required
        ts = str(body.get("ts") or "")
        message = self._emu.message(actor.channel_id, ts)
        ephemeral = False
        if message is None:
            message = next((e for e in self._only_for(actor.user_id, actor.channel_id) if e.get("ts") == ts), None)
            ephemeral = True
        if message is None:
            return _json(404, {"ok": False, "error": "no such message"})
        try:
            trigger, answer = link.click(actor, message, str(body.get("block_id") or ""),
                                         str(body.get("action_id") or ""), choice=body.get("choice"),
                                         ephemeral=ephemeral)
        except LookupError as exc:
            return _json(404, {"ok": False, "error": str(exc)})
        self._remember(trigger, actor)
        return self._answered(answer, f"@{actor.user_name}'s click")

    def _command(self, body: dict[str, Any]) -> HttpResponse:
        required = self._require(body)
        if isinstance(required, HttpResponse):
            return required
        link, actor = required
        command, _, text = str(body.get("text") or "").strip().partition(" ")
        if not command.startswith("/") or len(command) < 2:
            return _json(400, {"ok": False, "error": "a slash command starts with /"})
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._response_urls[token] = actor
        trigger, answer = link.slash_command(actor, command, text.strip(), f"{self._emu_root()}/web/response/{token}")
        self._remember(trigger, actor)
        if answer.ok and answer.body and (answer.body.get("text") or answer.body.get("blocks")):
            self._add_response(actor, answer.body)
        return self._answered(answer, f"{command} from @{actor.user_name}")

    def _emu_root(self) -> str:
        return self._emu.base_url.removesuffix("/api/")

    def _add_response(self, actor: Actor, body: dict[str, Any]) -> None:
        with self._lock:
            self._responses.append({"channel": actor.channel_id, "user": actor.user_id, "ts": f"{time.time():.6f}",
                                    "text": str(body.get("text") or ""), "blocks": body.get("blocks") or [],
                                    "ephemeral": body.get("response_type") != "in_channel",
                                    "in_channel": body.get("response_type") == "in_channel", "bot": True})
            self._counter += 1

    def _response_url(self, token: str, raw: bytes) -> HttpResponse:
        with self._lock:
            actor = self._response_urls.get(token)
        payload = response_payload(raw)
        if actor is None or payload is None:
            return HttpResponse(404, b"no such response_url", COMMON_HEADERS, "text/plain")
        self._add_response(actor, payload)
        return HttpResponse(200, b"ok", COMMON_HEADERS, "text/plain")

    def _message(self, body: dict[str, Any]) -> HttpResponse:
        required = self._require(body)
        if isinstance(required, HttpResponse):
            return required
        link, actor = required
        typed = str(body.get("text") or "").strip()
        if not typed:
            return _json(400, {"ok": False, "error": "nothing to send"})
        if typed.startswith("/"):
            return self._command(body)
        thread_ts = str(body.get("thread_ts") or "") or None
        text = self._with_mentions(slack_escape(typed))
        ts = self._emu.add_message(actor.channel_id, text, user=actor.user_id, thread_ts=thread_ts)
        if f"<@{link.bot_user_id}>" not in text:
            return _json(200, {"ok": True, "ts": ts, "delivered": False})
        return self._answered(link.mention(actor, text, ts, thread_ts), f"@{actor.user_name}'s mention")

    def _with_mentions(self, text: str) -> str:
        """`@alice` → `<@U0ALICE>`, `@oncall` → `<!subteam^S0ONCALL>`, as Slack's composer does."""
        directory = self._directory()
        by_name = {name: f"<@{uid}>" for uid, name in directory.users.items()}
        by_name.update({handle: f"<!subteam^{gid}>" for gid, handle in directory.usergroups.items()})
        words = []
        for word in text.split(" "):
            stripped = word.rstrip(".,:;!?")
            name = stripped[len(WORD_MENTION_PREFIX):] if stripped.startswith(WORD_MENTION_PREFIX) else None
            words.append(by_name[name] + word[len(stripped):] if name in by_name else word)
        return " ".join(words)

    def _view(self, body: dict[str, Any], viewer: str) -> dict[str, Any] | None:
        view = self._modal_for(viewer)
        return view if view is not None and view["id"] == body.get("view_id") else None

    def _submit_view(self, body: dict[str, Any]) -> HttpResponse:
        required = self._require(body)
        if isinstance(required, HttpResponse):
            return required
        link, actor = required
        view = self._view(body, actor.user_id)
        if view is None:
            return _json(404, {"ok": False, "error": "no such open view"})
        form = body.get("values") if isinstance(body.get("values"), dict) else {}
        answer = link.submit_view(actor, view, values_for_view(view, form))
        errors = view_errors(answer)
        with self._lock:
            if errors:
                self._view_errors[view["id"]] = errors
            elif answer.ok:
                self._closed_views.add(view["id"])
        return self._answered(answer, f"@{actor.user_name}'s form")

    def _close_view(self, body: dict[str, Any]) -> HttpResponse:
        required = self._require(body)
        if isinstance(required, HttpResponse):
            return required
        link, actor = required
        view = self._view(body, actor.user_id)
        if view is None:
            return _json(404, {"ok": False, "error": "no such open view"})
        with self._lock:
            self._closed_views.add(view["id"])
            self._counter += 1
        answer = link.close_view(actor, view)
        return self._answered(answer, "closing the form") if answer else _json(200, {"ok": True})

    def _fire(self, body: dict[str, Any]) -> HttpResponse:
        if self._scenarios is None:
            return _json(404, {"ok": False, "error": "no scenarios to fire here"})
        name = str(body.get("scenario") or "")
        if name not in {n for n, _title in self._scenarios.available()}:
            return _json(400, {"ok": False, "error": "unknown scenario"})
        self._scenarios.fire(name, self.notify)  # returns at once; the work runs on the demo's own thread
        return _json(202, {"ok": True})
