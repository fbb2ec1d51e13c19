"""Real Prometheus and Alertmanager processes for the sandbox, the demo and the tests.

The binaries are Debian's (``prometheus``, ``promtool``, ``prometheus-alertmanager``). Each
process object owns one child process on a free loopback port, its configuration, its storage
and one log file inside its ``workdir``. Invariants:

- a process is either stopped (no child) or started and answered ``/-/ready`` with 200;
- a start that fails raises `ProcessStartError` whose message ends with the log tail, and leaves
  no child behind; a lost port race (another process took the port between our probe and the
  child's bind) is retried on a new port;
- `stop` always ends the child (SIGTERM, then SIGKILL); a `weakref.finalize` per child is the
  safety net when a test forgets to stop it or the interpreter exits. There is no module-level
  registry of processes.

Backfill: ``promtool tsdb create-blocks-from openmetrics`` writes blocks into the data directory
while Prometheus is stopped (a running server is stopped, backfilled and started again on the
same port when it is still free). promtool cuts 2-hour blocks aligned to the epoch, so a few hours
of scenario data become one or a few blocks; nothing needs tuning. Prometheus deletes blocks that
lie further than the retention behind the newest block when it starts, so scenarios from
different months in one server need a long retention: the default here is ``100y``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import yaml

__all__ = [
    "AlertmanagerError",
    "AlertmanagerProcess",
    "BackfillError",
    "BinaryMissing",
    "INSTALL_HINT",
    "PrometheusProcess",
    "ProcessStartError",
    "find_binary",
    "free_port",
    "http_request",
    "webhook_config",
]

INSTALL_HINT = "sudo apt-get install prometheus prometheus-alertmanager"

_CANDIDATES: Mapping[str, tuple[str, ...]] = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "prometheus-alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}
_PACKAGES: Mapping[str, str] = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}
_EXTRA_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin")
_POLL_SECONDS = 0.05
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 30


class BinaryMissing(RuntimeError):
    """A Prometheus-stack binary is not installed; the message says how to install it."""


class ProcessStartError(RuntimeError):
    """A process died or did not become ready; the message ends with its log tail."""


class BackfillError(RuntimeError):
    """promtool refused the OpenMetrics input; the message holds promtool's output."""


class AlertmanagerError(RuntimeError):
    """The Alertmanager API answered with an error status."""


def find_binary(name: str) -> str:
    """Path of ``prometheus``, ``promtool``, ``alertmanager`` (Debian: ``prometheus-alertmanager``)
    or ``amtool``. ``OPSBOT_<NAME>_BINARY`` (e.g. ``OPSBOT_ALERTMANAGER_BINARY``) overrides the
    search. Raises `BinaryMissing` with an install hint.
    """
    package = _PACKAGES.get(name, name)
    env = f"OPSBOT_{name.upper().replace('-', '_')}_BINARY"
    override = os.environ.get(env)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise BinaryMissing(f"{env}={override} is not an executable file")
    candidates = _CANDIDATES.get(name, (name,))
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
        for folder in _EXTRA_DIRS:
            path = os.path.join(folder, candidate)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    raise BinaryMissing(
        f"{name} not found (looked for {', '.join(candidates)} on PATH and in {', '.join(_EXTRA_DIRS)}); "
        f"install it with: sudo apt-get install {package}"
    )


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, read it, release it).

    Another process may take it before our child binds it: callers retry on a bind failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def http_request(
    method: str, url: str, body: Any = None, *, timeout_seconds: float = 5.0
) -> tuple[int, bytes]:
    """Plain HTTP to loopback without any proxy from the environment; returns (status, body)."""
    data = None if body is None else json.dumps(body, default=_json_default).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _terminate(popen: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``; always reaps the child."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.terminate()
        try:
            popen.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait()


class _PortTaken(Exception):
    """The child could not bind its port: try another one."""


class _ManagedProcess:
    """One child process on a loopback port, with a log file and a readiness probe."""

    label = "process"

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.log_path = self.workdir / f"{self.label}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._port: int | None = None

    # -- subclass hooks
    def _prepare(self) -> None:
        """Write configuration and create directories before each start."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    # -- state
    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def port(self) -> int:
        if self._popen is None or self._port is None:
            raise RuntimeError(f"{self.label} is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running process."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def log_tail(self, lines: int = _LOG_TAIL_LINES, *, offset: int = 0) -> str:
        """The last ``lines`` lines the process wrote (from byte ``offset`` on)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle
    def start(self, timeout: float = 30.0) -> str:
        """Start (or keep running) and wait for ``/-/ready``; return the base URL."""
        if self.running:
            return self.url
        self.stop()
        self._prepare()
        deadline = time.monotonic() + timeout
        preferred = self._port if self._port is not None and _port_is_free(self._port) else None
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = preferred if (attempt == 1 and preferred) else free_port()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.log_path.open("ab") as log:
                log.write(f"--- opsbot: starting {' '.join(self._command(port))}\n".encode())
                log.flush()
                popen = subprocess.Popen(
                    self._command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            finalizer = weakref.finalize(self, _terminate, popen)
            try:
                self._wait_ready(popen, port, deadline, timeout, offset)
            except _PortTaken:
                finalizer()
                if attempt == _PORT_ATTEMPTS:
                    raise ProcessStartError(
                        f"{self.label}: no free port after {attempt} attempts; log tail "
                        f"({self.log_path}):\n{self.log_tail(offset=offset)}"
                    ) from None
                continue
            except BaseException:
                finalizer()
                raise
            self._popen, self._finalizer, self._port = popen, finalizer, port
            return self.url
        raise AssertionError("unreachable")

    def _wait_ready(
        self, popen: subprocess.Popen[bytes], port: int, deadline: float, timeout: float, offset: int
    ) -> None:
        ready_url = f"http://127.0.0.1:{port}/-/ready"
        while True:
            code = popen.poll()
            if code is not None:
                tail = self.log_tail(offset=offset)
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise ProcessStartError(
                    f"{self.label} exited with code {code} during start-up; log tail ({self.log_path}):\n{tail}"
                )
            with contextlib.suppress(OSError):
                status, _ = http_request("GET", ready_url, timeout_seconds=0.5)
                if status == 200 and popen.poll() is None:
                    return
            if time.monotonic() > deadline:
                _terminate(popen)
                raise ProcessStartError(
                    f"{self.label} was not ready within {timeout:g}s; log tail ({self.log_path}):\n"
                    f"{self.log_tail(offset=offset)}"
                )
            time.sleep(_POLL_SECONDS)

    def stop(self) -> None:
        """End the child (idempotent). The port is remembered for a later restart."""
        popen, finalizer = self._popen, self._finalizer
        self._popen, self._finalizer = None, None
        if finalizer is not None:
            finalizer()  # runs _terminate once and detaches the exit-time safety net
        elif popen is not None:
            _terminate(popen)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} workdir={self.workdir}>"


class PrometheusProcess(_ManagedProcess):
    """A Prometheus server with its own config, TSDB directory and optional backfilled series."""

    label = "prometheus"

    def __init__(
        self,
        workdir: Path,
        retention: str = "100y",
        rule_files: Sequence[Path] = (),
        alertmanager_url: str | None = None,
        scrape_configs: Sequence[Mapping[str, Any]] | None = None,
        *,
        evaluation_interval: str = "15s",
        alert_resend_delay: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        promtool: str | None = None,
    ) -> None:
        """``alert_resend_delay`` (Prometheus default 1m) matters in tests: alerts that fire
        before the Alertmanager target is discovered (up to 5 s) are only sent again after it.
        """
        super().__init__(workdir, binary or find_binary("prometheus"))
        self._promtool = promtool
        self.retention = retention
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.alertmanager_url = alertmanager_url
        self.scrape_configs = [dict(c) for c in scrape_configs or ()]
        self.evaluation_interval = evaluation_interval
        self.alert_resend_delay = alert_resend_delay
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "prometheus.yml"
        self.data_dir = self.workdir / "prometheus-data"
        self._backfills = 0

    def config(self) -> dict[str, Any]:
        """The configuration written to ``prometheus.yml`` at each start."""
        config: dict[str, Any] = {
            "global": {"scrape_interval": "15s", "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": self.scrape_configs,
        }
        if self.alertmanager_url:
            parts = urlsplit(self.alertmanager_url)
            config["alerting"] = {
                "alertmanagers": [
                    {
                        "scheme": parts.scheme or "http",
                        "path_prefix": parts.path or "/",
                        "api_version": "v2",
                        "static_configs": [{"targets": [parts.netloc]}],
                    }
                ]
            }
        return config

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")

    def _command(self, port: int) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *([f"--rules.alert.resend-delay={self.alert_resend_delay}"] if self.alert_resend_delay else []),
            *self.extra_args,
        ]

    def backfill(self, openmetrics_text: str, *, timeout: float = 120.0) -> None:
        """Write OpenMetrics samples into the TSDB as blocks (``promtool tsdb create-blocks-from``).

        A running server is stopped first and started again afterwards (same port when free),
        because Prometheus only picks up new blocks reliably at start-up. Text without samples
        is a no-op. Raises `BackfillError` with promtool's output when it fails.
        """
        if not any(line and not line.startswith("#") for line in openmetrics_text.splitlines()):
            return
        promtool = self._promtool or find_binary("promtool")
        was_running = self.running
        if was_running:
            self.stop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._backfills += 1
        source = self.workdir / f"backfill-{self._backfills:03d}.om"
        source.write_text(openmetrics_text if openmetrics_text.endswith("\n") else openmetrics_text + "\n")
        command = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.data_dir)]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.workdir, check=False
        )
        (self.workdir / f"backfill-{self._backfills:03d}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:])
            raise BackfillError(f"promtool exited with code {result.returncode} for {source}:\n{output}")
        if was_running:
            self.start()


class AlertmanagerProcess(_ManagedProcess):
    """An Alertmanager with clustering disabled (no gossip port) and its own storage."""

    label = "alertmanager"

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any] | str,
        *,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, binary or find_binary("alertmanager"))
        self.config_text = (
            config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        )
        self.extra_args = list(extra_args)
        self.config_path = self.workdir / "alertmanager.yml"
        self.data_dir = self.workdir / "alertmanager-data"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text, encoding="utf-8")

    def _command(self, port: int) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/",
            "--cluster.listen-address=",
            *self.extra_args,
        ]

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST ``/api/v2/alerts``; datetimes become RFC 3339. Raises `AlertmanagerError`."""
        status, body = http_request("POST", f"{self.url}/api/v2/alerts", [dict(a) for a in alerts])
        if status != 200:
            raise AlertmanagerError(f"POST /api/v2/alerts answered {status}: {body.decode(errors='replace')}")

    def alerts(self) -> list[dict[str, Any]]:
        """GET ``/api/v2/alerts``: the alerts Alertmanager currently holds."""
        status, body = http_request("GET", f"{self.url}/api/v2/alerts")
        if status != 200:
            raise AlertmanagerError(f"GET /api/v2/alerts answered {status}: {body.decode(errors='replace')}")
        result: list[dict[str, Any]] = json.loads(body)
        return result


def webhook_config(
    url: str,
    bearer_token: str | None = None,
    basic_auth: tuple[str, str] | Mapping[str, str] | None = None,
    group_by: Sequence[str] = ("alertname", "namespace"),
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
    *,
    receiver: str = "opsbot",
) -> dict[str, Any]:
    """An Alertmanager 0.25 config routing every alert to one webhook (``send_resolved: true``).

    ``bearer_token`` becomes ``http_config.authorization`` (type Bearer); ``basic_auth`` is a
    (username, password) pair or mapping. Alertmanager refuses both at once, and so does this.
    """
    if bearer_token is not None and basic_auth is not None:
        raise ValueError("use bearer_token or basic_auth, not both (Alertmanager refuses both)")
    webhook: dict[str, Any] = {"url": url, "send_resolved": True, "max_alerts": 0}
    if bearer_token is not None:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer_token}}
    elif basic_auth is not None:
        username, password = (
            (basic_auth["username"], basic_auth["password"])
            if isinstance(basic_auth, Mapping)
            else basic_auth
        )
        webhook["http_config"] = {"basic_auth": {"username": username, "password": password}}
    return {
        "route": {
            "receiver": receiver,
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": receiver, "webhook_configs": [webhook]}],
    }
