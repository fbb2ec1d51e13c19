"""Shared fixtures: databases (SQLite and PostgreSQL), the Slack emulator, a running bot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import requests

from bot.clock import Clock, utc_now
from bot.config import Settings
from bot.runtime import Runtime, build_runtime
from bot.sandbox.slack_emulator import SlackEmulator
from bot.web import HttpServer, create_web_app
from tests.db_fixtures import database_url, engine  # noqa: F401 - fixtures
from tests.promstack_fixtures import *  # noqa: F401,F403 - Prometheus/Alertmanager fixtures

SIGNING_SECRET = "test-signing-secret"


def pytest_sessionstart(session) -> None:
    """The shared material (scenarios, Slack's OpenAPI description) is part of the set-up:
    without it, tests would quietly check less, so the run stops with the fix instead."""
    from bot.sandbox.paths import shared_dir, shared_scenarios_dir, slack_openapi_path

    missing = [path for path in (shared_scenarios_dir(), slack_openapi_path()) if not path.exists()]
    if missing:
        pytest.exit(f"shared material not found ({', '.join(map(str, missing))}): clone the repository with "
                    f"shared/ beside it ({shared_dir()}) or set OPSBOT_SHARED_DIR", returncode=4)
WEBHOOK_TOKEN = "test-webhook-token"


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        yield emulator


def make_settings(database_url: str, slack: SlackEmulator, **overrides) -> Settings:
    values = dict(
        database_url=database_url, slack_api_url=slack.base_url, slack_bot_token=slack.bot_token,
        slack_signing_secret=SIGNING_SECRET, slack_channel="#incidents", webhook_token=WEBHOOK_TOKEN,
        http_port=0, worker_poll_seconds=0.05, log_format="text", card_min_interval_seconds=0,
        intake_processes=0,  # in-process: tests drive the clock (child processes have their own tests)
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url, slack) -> Settings:
    return make_settings(database_url, slack)


@pytest.fixture
def runtime(settings, engine) -> Iterator[Runtime]:  # noqa: F811 - `engine` migrates the database
    runtime = build_runtime(settings)
    yield runtime
    runtime.close()


@dataclass
class RunningBot:
    runtime: Runtime
    url: str
    slack: SlackEmulator

    def post_webhook(self, source: str, body: bytes | str, token: str | None = WEBHOOK_TOKEN,
                     headers: dict[str, str] | None = None) -> requests.Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data = body.encode() if isinstance(body, str) else body
        return requests.post(f"{self.url}/webhooks/{source}", data=data, headers=all_headers, timeout=10)


def serve_on(stack: ExitStack, settings: Settings, slack: SlackEmulator, clock: Clock = utc_now) -> RunningBot:
    """Build a runtime from `settings`, serve it on a free loopback port and start its workers;
    `stack` closes all three, in reverse order, when it unwinds."""
    runtime = build_runtime(settings, clock=clock)
    stack.callback(runtime.close)
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=4)
    url = server.start()
    stack.callback(server.stop)
    runtime.workers.start()
    return RunningBot(runtime, url, slack)


@pytest.fixture
def bot(runtime, slack) -> Iterator[RunningBot]:
    """The bot serving HTTP on a free loopback port, with its workers running."""
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=4)
    url = server.start()
    runtime.workers.start()
    yield RunningBot(runtime, url, slack)
    runtime.workers.stop()
    server.stop()
