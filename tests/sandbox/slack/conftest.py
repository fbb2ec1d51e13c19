"""Fixtures: a fresh emulator per test and a real slack_sdk WebClient pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.sandbox.slack_emulator import SlackEmulator


@pytest.fixture
def emu() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> WebClient:
    """No retry handlers beyond slack_sdk's default (connection errors only)."""
    return WebClient(token=emu.bot_token, base_url=emu.base_url, timeout=10)
