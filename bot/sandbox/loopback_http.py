"""Pieces shared by the loopback emulators (Kubernetes, Slack, PagerDuty).

`TrackingHTTPServer` remembers its open connections so that stopping an emulator also ends
keep-alive connections (a real client pools them; otherwise their threads outlive the test).
`write_response` sends one response with its length, so keep-alive clients never wait.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can close its keep-alive connections when it stops."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every connection thread blocked on a keep-alive read, so it ends."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Response(Protocol):
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


def write_response(handler: BaseHTTPRequestHandler, response: Response) -> None:
    handler.send_response(response.status)
    handler.send_header("Content-Type", response.content_type)
    handler.send_header("Content-Length", str(len(response.body)))
    for name, value in response.headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(response.body)
    handler.wfile.flush()
