"""PagerDuty settings: the per-install dedup key prefix, and when REST writes are possible."""

from __future__ import annotations

import os

import pytest

from bot.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OPSBOT_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)


def test_the_dedup_prefix_defaults_to_opsbot_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().pagerduty_dedup_prefix == "opsbot"
    monkeypatch.setenv("OPSBOT_PAGERDUTY_DEDUP_PREFIX", "opsbot-eu")
    assert load_settings().pagerduty_dedup_prefix == "opsbot-eu"


@pytest.mark.parametrize("value", ["Opsbot", "ops_bot", "ops bot", "x" * 33, "opsbot-", ""])
def test_a_bad_dedup_prefix_is_named_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OPSBOT_PAGERDUTY_DEDUP_PREFIX", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.startswith("OPSBOT_PAGERDUTY_DEDUP_PREFIX: must be 1 to 32 lower-case letters")


@pytest.mark.parametrize(("values", "writable"), [
    ({}, False),
    ({"pagerduty_routing_key": "r" * 32}, False),
    ({"pagerduty_api_key": "k", "pagerduty_from_email": "opsbot@example.com"}, False),  # no stage runs
    ({"pagerduty_routing_key": "r" * 32, "pagerduty_api_key": "k", "pagerduty_from_email": "opsbot@example.com"},
     True),
])
def test_rest_writes_need_the_stage_a_key_and_a_from_email(values: dict, writable: bool) -> None:
    assert load_settings(**values).pagerduty_rest_writable is writable
