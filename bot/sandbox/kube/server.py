"""`KubeApiServer`: the HTTP face of a `SandboxCluster` on loopback.

A `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive (the real client pools connections);
each connection gets its own thread and every request is served under the cluster lock by
`api.handle`. Port 0 picks a free port; `start()` returns the base URL. Usable as a context
manager; `stop()` is idempotent, closes the listening socket and every open keep-alive
connection, so tests do not leak ports or threads. `hold(...)` injects a write held in flight
(`faults.Hold`): stored with its answer delayed, or delayed and dropped unstored; `slow(...)`
makes matching writes wait before they are processed (`faults.Slow`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.sandbox.kube.api import ApiRequest, ApiResponse, handle
from bot.sandbox.kube.cluster import SandboxCluster
from bot.sandbox.kube.errors import ApiError
from bot.sandbox.kube.faults import Faults, Hold, Slow
from bot.sandbox.loopback_http import TrackingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opsbot-sandbox-kube/1"
    cluster: SandboxCluster  # set on the per-server subclass
    faults: Faults  # likewise
    wbufsize = -1  # buffer the response: headers and body leave in one segment (no delayed-ACK stall)

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        request = ApiRequest(
            method=self.command,
            path=parts.path,
            query=query,
            body=body,
            content_type=self.headers.get("Content-Type"),
            server_address=host,
        )
        dry_run = _dry_run(query, body)
        delay = self.faults.delay(self.command, parts.path, dry_run)
        if delay:
            time.sleep(delay)  # an injected slow server (`faults.Slow`)
        hold = self.faults.find(self.command, parts.path, dry_run)
        if hold is not None and hold.when == "before_write":
            hold.wait()
            self.close_connection = True  # dropped: no answer, nothing stored
            return
        try:
            response = handle(self.cluster, request)
        except Exception as exc:  # a bug in the sandbox: answer 500 rather than drop the connection
            error = ApiError(500, "InternalError", f"sandbox API server error: {type(exc).__name__}: {exc}")
            response = ApiResponse(500, json.dumps(error.to_status()).encode())
        if hold is not None:
            hold.wait()  # stored; the answer is held
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve
    do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: the mutation record is the audit trail."""


def _dry_run(query: dict[str, str], body: bytes) -> bool:
    """Whether a request asks for a dry run: in the query, or (an eviction) in its deleteOptions."""
    if "dryRun" in query:
        return True
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return False
    options = parsed.get("deleteOptions") if isinstance(parsed, dict) else None
    return isinstance(options, dict) and bool(options.get("dryRun"))


class _Server(TrackingHTTPServer):
    """The sandbox's HTTP server (see `TrackingHTTPServer`)."""


class KubeApiServer:
    """Serves `cluster` over HTTP on `host:port` (port 0: any free port) from a background thread."""

    def __init__(self, cluster: SandboxCluster, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cluster = cluster
        self._host = host
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.faults = Faults()

    def hold(self, method: str, path: str, when: str = "after_write", seconds: float = 60.0, skip: int = 0) -> Hold:
        """Hold a matching non-dry-run request in flight, the first after `skip` (see `faults.Hold`)."""
        return self.faults.add(Hold(method, path, when, seconds, skip))

    def slow(self, method: str, pattern: str, seconds: float) -> Slow:
        """Make every matching non-dry-run request wait `seconds` first (see `faults.Slow`)."""
        return self.faults.add_slow(Slow(method, pattern, seconds))

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Start serving (once); returns the base URL such as `http://127.0.0.1:43127`."""
        with self._lock:
            if self._httpd is not None:
                return self.base_url
            handler = type("SandboxKubeHandler", (_Handler,), {"cluster": self.cluster, "faults": self.faults})
            httpd = _Server((self._host, self._port), handler)
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sandbox-kube-api",
                daemon=True,
            )
            self._thread.start()
            return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        self.faults.release_all()
        if httpd is not None:
            httpd.shutdown()
            httpd.close_connections()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> KubeApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
