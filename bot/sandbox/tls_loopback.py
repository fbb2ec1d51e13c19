"""An HTTPS server on loopback with a throw-away self-signed certificate.

Some real clients refuse plain HTTP (the `pagerduty` client accepts only `https://` base
URLs), so their emulators speak TLS. `LoopbackHttpsServer` generates a fresh certificate for
`127.0.0.1`/`localhost` with the `openssl` command (valid two days, key never leaves the
temporary directory), serves every method through one application callable, and exposes
`ca_file` and `client_ssl_context()` so a client trusts exactly this server.

Each connection is served on its own thread; the TLS handshake happens on that thread, not
in the accept loop, so one slow client cannot stall the others. `stop()` closes the listening
socket and every keep-alive connection, then deletes the key and certificate.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.loopback_http import TrackingHTTPServer, write_response
from bot.sandbox.slack_emulator.server import App, HttpRequest, HttpResponse, require_loopback

MAX_BODY_BYTES = 8 * 1024 * 1024


def make_self_signed_certificate(directory: Path, common_name: str = "opsbot-sandbox") -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (P-256, SAN 127.0.0.1, ::1, localhost) into `directory`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the sandbox HTTPS emulators need the `openssl` command to make their "
                           "certificate (install the openssl package)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={common_name}",
        "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl could not make the sandbox certificate: {result.stderr.strip()[-500:]}")
    return cert, key


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "opsbot-sandbox-https/1"
    wbufsize = -1  # headers and body leave together

    handshake_failed = False

    def setup(self) -> None:
        self.request.settimeout(30)  # an idle keep-alive connection ends after 30 s
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):  # e.g. a client that does not trust the certificate
            self.handshake_failed = True
        super().setup()

    def handle(self) -> None:
        if self.handshake_failed:
            return
        with contextlib.suppress(OSError, ssl.SSLError):
            super().handle()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(HttpResponse.text(413, "request body too large"))
            return
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        request = HttpRequest(method=self.command, path=url.path, query=url.query,
                              headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        try:
            response = self.server.app(request)
        except Exception as exc:  # an emulator bug must show as a 500, not a hung client
            response = HttpResponse.json(500, {"error": {"message": f"emulator error: {exc!r}"}})
        self._write(response)

    def _write(self, response: HttpResponse) -> None:
        write_response(self, response)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
        return  # the emulators record calls; stderr stays quiet


class _Server(TrackingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str, port: int, app: App, context: ssl.SSLContext) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self._context = context
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # handshake later, on the connection's own thread (see _Handler.setup)
        return self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-request is not the emulator's problem to print


class LoopbackHttpsServer:
    """Serves `app` over HTTPS on a loopback `host:port` (0: any free port)."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, *, name: str = "sandbox-https") -> None:
        self._app = app
        self._host = require_loopback(host)
        self._port = port
        self._name = name
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None
        self._root = ""

    def start(self) -> str:
        """Make the certificate, bind, serve from a daemon thread; returns `https://host:port`."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"{self._name} is already running")
            directory = Path(tempfile.mkdtemp(prefix="opsbot-tls-"))
            try:
                cert, key = make_self_signed_certificate(directory, self._name)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(cert, key)
                server = _Server(self._host, self._port, self._app, context)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            host, port = server.server_address[:2]
            self._root = f"https://[{host}]:{port}" if ":" in str(host) else f"https://{host}:{port}"
            self._directory, self._server = directory, server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"{self._name}-{port}", daemon=True)
            self._thread.start()
            return self._root

    def stop(self) -> None:
        """Stop serving, close every connection, delete the key material. Idempotent."""
        with self._lock:
            server, thread, directory = self._server, self._thread, self._directory
            self._server = self._thread = self._directory = None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def root(self) -> str:
        """`https://127.0.0.1:PORT` of the running server."""
        if not self._root:
            raise RuntimeError(f"{self._name} has not been started")
        return self._root

    @property
    def ca_file(self) -> Path:
        """The server's self-signed certificate: the one CA a client should trust for it.
        Deleted by `stop()`."""
        if self._directory is None:
            raise RuntimeError(f"{self._name} is not running")
        return self._directory / "cert.pem"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context trusting only this server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))
