"""pytest fixtures for the real Prometheus stack (import them from a conftest.py).

- ``prometheus_binary``, ``promtool_binary``, ``alertmanager_binary`` (session): the binary's
  path. When it is missing the test is skipped with an install hint, or fails under ``CI=true``
  (a missing real part must not pass silently in CI).
- ``prometheus_factory`` / ``alertmanager_factory`` (function): start processes in ``tmp_path``
  and stop every one of them at teardown, whatever the test's outcome.
- ``webhook_receiver`` (function): a stdlib HTTP server on 127.0.0.1:0 that records every
  request it gets (Alertmanager's webhooks in the tests).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.promstack import (
    INSTALL_HINT,
    AlertmanagerProcess,
    BinaryMissing,
    PrometheusProcess,
    find_binary,
)
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_metrics import load_metrics_into

__all__ = [
    "RecordedRequest",
    "WebhookReceiver",
    "alertmanager_binary",
    "alertmanager_factory",
    "prometheus_binary",
    "prometheus_factory",
    "promtool_binary",
    "webhook_receiver",
]


def _require_binary(name: str) -> str:
    """The binary's path; skip (or fail under CI=true) with the install hint when missing."""
    try:
        return find_binary(name)
    except BinaryMissing as exc:
        message = f"{exc} (the whole stack: {INSTALL_HINT})"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and a real part is missing: {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return _require_binary("prometheus")


@pytest.fixture(scope="session")
def promtool_binary() -> str:
    return _require_binary("promtool")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return _require_binary("alertmanager")


PrometheusFactory = Callable[..., PrometheusProcess]
AlertmanagerFactory = Callable[..., AlertmanagerProcess]


@pytest.fixture
def prometheus_factory(
    prometheus_binary: str, promtool_binary: str, tmp_path: Path
) -> Iterator[PrometheusFactory]:
    """``factory(scenario=None, *, openmetrics=None, start=True, timeout=30.0, **kwargs)``.

    ``scenario`` may be one `Scenario` or a sequence of them; their metrics are backfilled
    before the start. ``kwargs`` go to `PrometheusProcess` (retention, rule_files, ...).
    """
    started: list[PrometheusProcess] = []

    def factory(
        scenario: Scenario | Sequence[Scenario] | None = None,
        *,
        openmetrics: str | None = None,
        start: bool = True,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> PrometheusProcess:
        prom = PrometheusProcess(
            tmp_path / f"prometheus-{len(started)}",
            binary=prometheus_binary,
            promtool=promtool_binary,
            **kwargs,
        )
        started.append(prom)
        scenarios = [scenario] if isinstance(scenario, Scenario) else list(scenario or ())
        for item in scenarios:
            load_metrics_into(prom, item)
        if openmetrics:
            prom.backfill(openmetrics)
        if start:
            prom.start(timeout=timeout)
        return prom

    yield factory
    for prom in reversed(started):
        prom.stop()


@pytest.fixture
def alertmanager_factory(alertmanager_binary: str, tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    """``factory(config, *, start=True, timeout=30.0, **kwargs)``; config is a dict or YAML text."""
    started: list[AlertmanagerProcess] = []

    def factory(
        config: Mapping[str, Any] | str, *, start: bool = True, timeout: float = 30.0, **kwargs: Any
    ) -> AlertmanagerProcess:
        am = AlertmanagerProcess(
            tmp_path / f"alertmanager-{len(started)}", config, binary=alertmanager_binary, **kwargs
        )
        started.append(am)
        if start:
            am.start(timeout=timeout)
        return am

    yield factory
    for am in reversed(started):
        am.stop()


@dataclass(frozen=True)
class RecordedRequest:
    """One request the receiver got: method, path, headers (case-insensitive lookup), body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class WebhookReceiver:
    """A loopback HTTP server that answers 200 to every POST and records it in arrival order."""

    def __init__(self) -> None:
        self._requests: queue.Queue[RecordedRequest] = queue.Queue()
        received = self._requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received.put(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def wait(self, timeout: float = 10.0) -> RecordedRequest:
        """The next recorded request; raises AssertionError when none comes within ``timeout``."""
        try:
            return self._requests.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no webhook request within {timeout:g}s") from None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
