"""A bot serving one replayed scenario: the composition the demo and `opsbot eval` share.

The bot runs at the scenario's clock, reads the scenario's cluster from a sandbox API server
URL and its metrics from a Prometheus URL, posts to a Slack emulator, and keeps its state in a
SQLite file under `data_dir`. Everything it starts is registered on `stop`, which the caller
calls (in reverse order) when done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_time import scenario_clock


def start_scenario_bot(scenario: Scenario, data_dir: Path, stop: Callable[[Callable[[], None]], None], *,
                       slack_url: str, slack_token: str, webhook_token: str, kube_url: str, prometheus_url: str,
                       poll_seconds: float = 0.1, log_level: str = "WARNING", policies_dir: Path | None = None):
    """Start the bot; returns (runtime, base URL). `stop(callable)` registers a clean-up.
    `policies_dir`: the policies to run with (default: the shipped ones)."""
    from bot.db import migrate
    from bot.runtime import build_runtime
    from bot.web import HttpServer, create_web_app

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, slack_api_url=slack_url, slack_bot_token=slack_token,
                        slack_signing_secret=secrets.token_hex(16), webhook_token=webhook_token, http_port=0,
                        worker_poll_seconds=poll_seconds, log_level=log_level, log_format="text", kube_mode="url",
                        kube_api_url=kube_url, prometheus_url=prometheus_url, card_min_interval_seconds=0,
                        intake_processes=0,  # the scenario's clock runs in this process only
                        **({"policies_dir": policies_dir} if policies_dir else {}))
    runtime = build_runtime(settings, clock=scenario_clock(scenario.now))
    stop(runtime.close)
    migrate.upgrade(runtime.engine)
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=4)
    url = server.start()
    stop(server.stop)
    runtime.workers.start()
    return runtime, url
