"""Slack's Socket Mode on loopback: the WebSocket end of `apps.connections.open`.

How Slack does it (docs.slack.dev, "Using Socket Mode"): the app calls `apps.connections.open`
with its app-level token (`xapp-`) and gets a short-lived URL with a one-time ticket; it opens a
WebSocket there; Slack sends `{"type": "hello", ...}`, then one envelope per delivery,
`{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload",
"accepts_response_payload"}`; the app acknowledges each by sending back `{"envelope_id"}`, with
a `payload` when the envelope accepts a response (a slash command's immediate answer). Slack
asks the app to reconnect by sending `{"type": "disconnect", "reason": "refresh_requested"}`.

`SocketModeServer` is that end: `issue_url()` mints the ticket URL (`ws://`, not `wss://`:
slack_sdk's built-in client speaks plain WebSocket to any port but 443), `deliver()` sends an
envelope to the newest connection and returns its id, `wait_for_ack()` returns the app's ack.

The WebSocket protocol (RFC 6455) is implemented here, server side, in the part Slack uses:
the opening handshake, text frames both ways (client frames masked, ours not), fragmented
client messages, ping/pong and close. No extensions, no subprotocols. It is small enough to
read, and it keeps the emulator free of dependencies beyond the standard library.

Invariants: a ticket opens at most one connection; every ack is recorded in arrival order and
never changes; `deliver` never sends to a closed connection (it raises instead).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.sandbox.slack_emulator.server import require_loopback

ENVELOPE_TYPES = frozenset({"slash_commands", "interactive", "events_api"})
LINK_PATH = "/link/"
_WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HANDSHAKE_BYTES = 16 * 1024
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_RESPONSE_PAYLOAD_INTERACTIONS = frozenset({"view_submission", "block_suggestion"})


def accept_key(client_key: str) -> str:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((client_key.strip() + _WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(opcode: int, data: bytes) -> bytes:
    """One unfragmented, unmasked frame, as a server sends it."""
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + data


class ProtocolError(Exception):
    """The client broke RFC 6455 (an unmasked frame, an oversized message): the connection closes."""


class _Connection:
    """One accepted WebSocket. Sends are serialised; reading happens on its own thread."""

    def __init__(self, sock: socket.socket, ticket: str) -> None:
        self.sock = sock
        self.ticket = ticket
        self.open = True
        self._send_lock = threading.Lock()

    def send(self, opcode: int, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(encode_frame(opcode, data))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(_OP_TEXT, json.dumps(message).encode("utf-8"))

    def read_exact(self, size: int) -> bytes:
        chunks, missing = [], size
        while missing:
            chunk = self.sock.recv(min(missing, 65536))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, unmasked data) of the next frame."""
        first, second = self.read_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_exact(8))
        if not second & 0x80:
            raise ProtocolError("client frames must be masked")
        if length > _MAX_MESSAGE_BYTES:
            raise ProtocolError(f"frame of {length} bytes is too large")
        mask = self.read_exact(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.read_exact(length)))
        return bool(first & 0x80), first & 0x0F, data

    def close(self, code: int = 1000) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(OSError):
                self.send(_OP_CLOSE, struct.pack("!H", code))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class SocketModeServer:
    """Slack's Socket Mode WebSocket endpoint on loopback. Thread-safe; `start()` before use."""

    def __init__(self, host: str = "127.0.0.1", app_id: str = "A0OPSBOT") -> None:
        self._host = require_loopback(host)
        self._app_id = app_id
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._acks: list[dict[str, Any]] = []
        self._opened = 0
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind a free loopback port and accept connections on a daemon thread."""
        if self._listener is not None:
            raise RuntimeError("the Socket Mode server is already running")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, 0))
        listener.listen(16)
        listener.settimeout(0.05)
        self._stopping.clear()
        self._listener = listener
        self._spawn(self._accept_loop, f"socket-mode-accept-{self.port}")

    def stop(self) -> None:
        """Close every connection (with a close frame) and the listener. Idempotent; acks stay readable."""
        self._stopping.set()
        with self._cond:
            connections, self._connections = self._connections, []
            self._cond.notify_all()
        for connection in connections:
            connection.close(1001)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._cond:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the Socket Mode server has not been started")
        return int(self._listener.getsockname()[1])

    # -- what apps.connections.open and the tests use --------------------------------------------
    def issue_url(self) -> str:
        """A fresh one-time WebSocket URL, shaped like Slack's (`/link/?ticket=...&app_id=...`)."""
        ticket = str(uuid.uuid4())
        with self._cond:
            self._tickets.add(ticket)
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self.port}{LINK_PATH}?ticket={ticket}&app_id={self._app_id}"

    @property
    def open_connections(self) -> int:
        with self._cond:
            return len(self._connections)

    @property
    def connections_opened(self) -> int:
        """Handshakes completed since start, reconnections included."""
        with self._cond:
            return self._opened

    def wait_for_connection(self, timeout: float = 10.0, *, opened: int = 1) -> None:
        """Block until `opened` handshakes have completed and a connection is open."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._opened >= opened and self._connections, timeout):
                raise TimeoutError(f"no Socket Mode connection within {timeout}s "
                                   f"({self._opened} opened, {len(self._connections)} open)")

    def deliver(self, envelope_type: str, payload: dict[str, Any], *,
                accepts_response_payload: bool | None = None) -> str:
        """Send one envelope to the newest open connection; returns its `envelope_id`.

        `accepts_response_payload` defaults to Slack's: true for slash commands and for the
        interactions that take an answer in the ack (`view_submission`, `block_suggestion`).
        Raises ValueError for an unknown type and RuntimeError when no app is connected."""
        if envelope_type not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {sorted(ENVELOPE_TYPES)}, not {envelope_type!r}")
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands" or (
                envelope_type == "interactive" and payload.get("type") in _RESPONSE_PAYLOAD_INTERACTIONS)
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": envelope_type, "payload": payload,
                                    "accepts_response_payload": accepts_response_payload}
        if envelope_type == "events_api":
            envelope.update({"retry_attempt": 0, "retry_reason": ""})
        with self._cond:
            if not self._connections:
                raise RuntimeError("no app is connected over Socket Mode")
            connection = self._connections[-1]
        connection.send_json(envelope)
        return envelope_id

    def request_refresh(self) -> None:
        """Ask every connected app to reconnect, as Slack does before it recycles a connection."""
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            connection.send_json({"type": "disconnect", "reason": "refresh_requested",
                                  "debug_info": {"host": "applink-emulator"}})

    @property
    def acks(self) -> list[dict[str, Any]]:
        """Every ack received, in arrival order: `{"envelope_id", "payload"?}` as the app sent it."""
        with self._cond:
            return [dict(ack) for ack in self._acks]

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The app's first ack of `envelope_id`; TimeoutError when none arrives in time."""
        def found() -> dict[str, Any] | None:
            return next((ack for ack in self._acks if ack.get("envelope_id") == envelope_id), None)

        with self._cond:
            ack = self._cond.wait_for(found, timeout)
        if ack is None:
            raise TimeoutError(f"envelope {envelope_id} was not acknowledged within {timeout}s")
        return dict(ack)

    # -- connections -----------------------------------------------------------------------------
    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._cond:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            self._spawn(self._serve, f"socket-mode-conn-{self.port}", sock)

    def _serve(self, sock: socket.socket) -> None:
        connection = self._handshake(sock)
        if connection is None:
            return
        try:
            self._read_messages(connection)
        except ProtocolError:
            connection.close(1002)
        except OSError:
            pass  # the app went away (ConnectionError included)
        finally:
            with self._cond:
                if connection in self._connections:
                    self._connections.remove(connection)
                self._cond.notify_all()
            connection.close()

    def _handshake(self, sock: socket.socket) -> _Connection | None:
        """Answer the opening handshake; a bad request or ticket gets an HTTP error and None."""
        sock.settimeout(5)
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = sock.recv(4096)
                if not chunk or len(request) > _MAX_HANDSHAKE_BYTES:
                    raise ConnectionError("incomplete handshake")
                request += chunk
        except OSError:
            sock.close()
            return None
        lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        url = urlsplit(target)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._cond:
            valid_ticket = ticket in self._tickets
            self._tickets.discard(ticket)
        problem = None
        if method != "GET" or url.path != LINK_PATH or headers.get("upgrade", "").lower() != "websocket":
            problem = "400 Bad Request"
        elif not valid_ticket:
            problem = "401 Unauthorized"
        elif not headers.get("sec-websocket-key"):
            problem = "400 Bad Request"
        if problem:
            with contextlib.suppress(OSError):
                sock.sendall(f"HTTP/1.1 {problem}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            sock.close()
            return None
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n").encode())
        sock.settimeout(None)
        connection = _Connection(sock, ticket)
        with self._cond:
            if self._stopping.is_set():  # stop() raced the handshake: never leave a connection behind
                connection.close(1001)
                return None
            self._connections.append(connection)
            self._opened += 1
            count = len(self._connections)
            self._cond.notify_all()
        connection.send_json({"type": "hello", "num_connections": count,
                              "debug_info": {"host": "applink-emulator", "build_number": 1,
                                             "approximate_connection_time": 18060},
                              "connection_info": {"app_id": self._app_id}})
        return connection

    def _read_messages(self, connection: _Connection) -> None:
        """Read until the app closes: record acks, answer pings, echo a close."""
        parts: list[bytes] = []
        while not self._stopping.is_set():
            fin, opcode, data = connection.read_frame()
            if opcode == _OP_PING:
                connection.send(_OP_PONG, data)
            elif opcode == _OP_CLOSE:
                connection.close(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1000)
                return
            elif opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
                parts.append(data)
                if sum(map(len, parts)) > _MAX_MESSAGE_BYTES:
                    raise ProtocolError("message too large")
                if fin:
                    self._received(b"".join(parts))
                    parts = []

    def _received(self, raw: bytes) -> None:
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return  # Slack ignores what it cannot parse; so does the emulator
        if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
            ack = {"envelope_id": message["envelope_id"]}
            if "payload" in message:
                ack["payload"] = message["payload"]
            with self._cond:
                self._acks.append(ack)
                self._cond.notify_all()
