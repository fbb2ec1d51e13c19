"""HTTP plumbing: a threaded server bound to loopback, and request-body parsing.

The server knows nothing about Slack: it turns each HTTP request into an immutable
`HttpRequest`, hands it to one application callable and writes back the `HttpResponse`.
Requests are served on their own threads (`ThreadingHTTPServer`), so the application must be
thread-safe; the emulator serialises on its own lock.

Body parsing follows what Slack accepts: `application/x-www-form-urlencoded`,
`application/json` (an object) and `multipart/form-data`, merged over the query string
(body wins). Arguments Slack takes as JSON strings (`blocks`, `attachments`, `view`,
`files`, `metadata`) are decoded when they arrive as strings, so recorded calls and method
implementations see the same structure whichever encoding the client chose.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.sandbox.loopback_http import write_response

JSON_STRING_ARGS = frozenset({"blocks", "attachments", "view", "files", "metadata"})
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """One request as received. Header names are lower-case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class HttpResponse:
    """One response to write: status, extra headers, body bytes."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json; charset=utf-8"

    @classmethod
    def json(cls, status: int, payload: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        return cls(status, json.dumps(payload).encode("utf-8"), headers)

    @classmethod
    def text(cls, status: int, text: str) -> HttpResponse:
        return cls(status, text.encode("utf-8"), (), "text/plain; charset=utf-8")


App = Callable[[HttpRequest], "HttpResponse | None"]  # None: close the connection without an answer


@dataclass(frozen=True)
class ParsedArguments:
    """Arguments of a Web API call. `error` is a Slack error code when the body could not be
    read (`invalid_json`, `invalid_form_data`); `uploads` holds multipart file parts."""

    args: dict[str, Any]
    json_body: bool
    error: str | None = None
    uploads: dict[str, bytes] = field(default_factory=dict)


def require_loopback(host: str) -> str:
    """`host` if it is a loopback address or `localhost`; the emulator never listens elsewhere."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"the Slack emulator binds loopback only, not {host!r}")


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server on a loopback address, calling `app` for every request."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str, port: int, app: App) -> None:
        host = require_loopback(host)
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        super().__init__((host, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(HttpResponse.text(413, "request body too large"))
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app(request)
        except Exception as exc:  # a bug in the emulator must show, not hang the client
            response = HttpResponse.json(500, {"ok": False, "error": "fatal_error",
                                               "response_metadata": {"messages": [f"[ERROR] emulator: {exc!r}"]}})
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: HttpResponse) -> None:
        try:
            write_response(self, response)
        except (BrokenPipeError, ConnectionResetError):  # the client left (e.g. killed during a held answer)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
        return  # tests read emulator.calls, not stderr


def parse_arguments(request: HttpRequest) -> ParsedArguments:
    """Merge query-string and body arguments as Slack does; decode JSON-string arguments."""
    args: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    ctype = request.content_type
    uploads: dict[str, bytes] = {}
    json_body = False
    if request.body:
        if ctype == "application/json":
            json_body = True
            try:
                payload = json.loads(request.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return ParsedArguments(args, True, "invalid_json")
            if not isinstance(payload, dict):
                return ParsedArguments(args, True, "invalid_json")
            args.update(payload)
        elif ctype == "multipart/form-data":
            try:
                fields, uploads = parse_multipart(request.headers.get("content-type", ""), request.body)
            except ValueError:
                return ParsedArguments(args, False, "invalid_form_data")
            args.update(fields)
        else:
            try:
                args.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
            except UnicodeDecodeError:
                return ParsedArguments(args, False, "invalid_form_data")
    for key in JSON_STRING_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            # undecodable: left as a string, the method reports invalid_blocks_format and the like
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return ParsedArguments(args, json_body, None, uploads)


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Fields and file parts of a `multipart/form-data` body. Raises ValueError when malformed."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = payload
        else:
            fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields, files
