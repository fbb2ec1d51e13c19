"""Process hygiene: lost port races are retried, forgotten processes die, CI never skips."""

from __future__ import annotations

import gc
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bot.sandbox.promstack as promstack
from bot.sandbox.promstack import PrometheusProcess
from tests.promstack_fixtures import _require_binary

pytestmark = pytest.mark.prometheus


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_lost_port_race_is_retried(
    prometheus_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process takes the probed port before Prometheus binds it: start on another."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = promstack.free_port
        ports: Iterator[int] = iter([taken])
        monkeypatch.setattr(promstack, "free_port", lambda: next(ports, None) or real_free_port())
        with PrometheusProcess(tmp_path, binary=prometheus_binary) as prom:
            assert prom.port != taken
            log = prom.log_path.read_text()
            assert f"127.0.0.1:{taken}" in log and "address already in use" in log


def test_a_forgotten_process_is_killed_when_collected(prometheus_binary: str, tmp_path: Path) -> None:
    prom = PrometheusProcess(tmp_path, binary=prometheus_binary)
    prom.start()
    pid = prom.pid
    assert pid is not None and _alive(pid)
    del prom
    gc.collect()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_missing_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match="sudo apt-get install prometheus prometheus-alertmanager"
    ):
        _require_binary("no-such-prometheus-tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and a real part is missing"):
        _require_binary("no-such-prometheus-tool")
