"""Fixtures: the PagerDuty emulator, a link pointed at it, and a tiny webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.pagerduty import PagerDutyLink
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator

WEBHOOK_SECRET = "whsec-current-0123456789"
OLD_WEBHOOK_SECRET = "whsec-previous-9876543210"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records POSTs; answers the queued statuses first, then 202."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.received.append(Received(headers, body))
            return self.statuses.pop(0) if self.statuses else 202


class SteppedClock:
    """Wall time plus what the test added: the emulator's clock when a person's next action
    in PagerDuty should happen later (people do not resolve and reopen in one millisecond)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def make_link(pd: PagerDutyEmulator, **overrides: Any) -> PagerDutyLink:
    values: dict[str, Any] = dict(
        routing_key=pd.routing_key, api_key=pd.api_token, from_email=pd.from_email,
        events_url=pd.events_url, rest_url=pd.rest_url, verify=pd.client_ssl_context(),
        retry_sleep_seconds=0.01, timeout_seconds=5,
    )
    values.update(overrides)
    return PagerDutyLink(**values)


@pytest.fixture
def pd() -> Iterator[PagerDutyEmulator]:
    with PagerDutyEmulator() as emulator:
        yield emulator


@pytest.fixture
def link(pd: PagerDutyEmulator) -> Iterator[PagerDutyLink]:
    with make_link(pd) as value:
        yield value


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = state.answer({k: v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/pagerduty"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
