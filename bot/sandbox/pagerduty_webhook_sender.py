"""Outbound V3 webhooks of the PagerDuty emulator: one daemon thread, in order, retried like
PagerDuty (429, 5xx and network errors; any other status is final), never raising.

Bodies and signatures come from `bot.sandbox.pagerduty_webhooks`, the one definition of the
shape; a delivery is signed when it is sent, with the secrets current when its change
happened, and keeps its `X-Webhook-Id` across attempts so a receiver can de-duplicate.
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from bot.sandbox import pagerduty_webhooks as wh
from bot.sandbox.pagerduty_state import Change


@dataclass(frozen=True)
class WebhookDelivery:
    """One V3 webhook and the outcome of its last attempt: `status` is the receiver's HTTP
    status (None when it could not be reached), `error` says why it failed (None when 2xx)."""

    event_type: str
    incident_id: str
    event_id: str
    webhook_id: str
    body: bytes
    headers: dict[str, str]
    status: int | None
    error: str | None
    attempts: int
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300



class WebhookSender:
    """Delivers queued webhooks one at a time from a daemon thread, in queue order.

    A delivery is retried on 429, 5xx and network errors (up to `max_attempts`, waits doubling
    from `retry_seconds`), reusing its `X-Webhook-Id` as PagerDuty does; any other status is
    final. `idle()` waits until nothing is queued or in flight.
    """

    def __init__(self, max_attempts: int, retry_seconds: float, timeout_seconds: float) -> None:
        self._max_attempts = max(1, max_attempts)
        self._retry_seconds = retry_seconds
        self._timeout_seconds = timeout_seconds
        self._queue: queue.Queue[tuple[Change, str, list[str]] | None] = queue.Queue()
        self._done = threading.Condition()
        self._pending = 0
        self._deliveries: list[WebhookDelivery] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="pagerduty-emulator-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread; what is still queued is dropped (and no longer pending)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._queue.put(None)
            thread.join(timeout=10)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def enqueue(self, change: Change, url: str, secrets: list[str]) -> None:
        with self._done:
            self._pending += 1
        self._queue.put((change, url, secrets))

    def idle(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def deliveries(self) -> list[WebhookDelivery]:
        with self._done:
            return list(self._deliveries)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if not self._stopping.is_set():
                    delivery = self._deliver(*item)
                    with self._done:
                        self._deliveries.append(delivery)
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def _deliver(self, change: Change, url: str, secrets: list[str]) -> WebhookDelivery:
        payload = wh.webhook_event(change.event_type, change.incident, change.agent, note=change.note,
                                   note_id=change.note_id, occurred_at=change.occurred_at)
        raw, headers = wh.signed(payload, secrets)
        status: int | None = None
        error: str | None = None
        attempt = 0
        while attempt < self._max_attempts and not self._stopping.is_set():
            attempt += 1
            status, error = _post(url, raw, headers, self._timeout_seconds)
            if error is None or (status is not None and 400 <= status < 500 and status != 429):
                break
            if attempt < self._max_attempts:
                self._stopping.wait(self._retry_seconds * 2 ** (attempt - 1))
        return WebhookDelivery(change.event_type, change.incident["id"], payload["event"]["id"],
                               headers["X-Webhook-Id"], raw, headers, status, error, attempt, time.time())


def _post(url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> tuple[int | None, str | None]:
    """POST once, header names exactly as given (never through a proxy): (status, None) on
    2xx, (status, reason) on another status, (None, reason) when unreachable. Credentials in
    the URL (`https://user:pass@host/...`) become Basic auth, as PagerDuty does."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    send = dict(headers)
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        send["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_seconds)
    try:
        connection.request("POST", target, body=body, headers=send)
        response = connection.getresponse()
        text = response.read()[:200].decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return response.status, None
    return response.status, f"HTTP {response.status}: {text}"
