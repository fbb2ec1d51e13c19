"""Fault injection (429 with Retry-After, 5xx, error answers), auth, and wait_for."""

from __future__ import annotations

import threading
import time
from urllib.error import HTTPError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, UPLOAD_PSEUDO_METHOD, SlackEmulator


def test_429_without_retry_handler_raises(emu: SlackEmulator, client: WebClient) -> None:
    emu.inject("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    resp = exc.value.response
    assert resp.status_code == 429 and resp["error"] == "ratelimited"
    assert resp.headers.get("Retry-After", resp.headers.get("retry-after")) == "7"
    assert emu.messages() == []  # a rate-limited call has no effect
    call = emu.calls[-1]
    assert (call.status, call.ok, call.error) == (429, False, "ratelimited")
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")  # the injection was used up
    assert len(emu.messages()) == 1


def test_429_with_rate_limit_retry_handler_succeeds(emu: SlackEmulator) -> None:
    client = WebClient(token=emu.bot_token, base_url=emu.base_url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    emu.inject("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    resp = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="after backoff")
    elapsed = time.monotonic() - started
    assert resp["ok"] and elapsed >= 1.0  # the handler honoured Retry-After: 1
    assert [c.status for c in emu.calls_to("chat.postMessage")] == [429, 200]
    assert [m["text"] for m in emu.messages()] == ["after backoff"]


def test_5xx_injection(emu: SlackEmulator, client: WebClient) -> None:
    emu.inject("chat.update", status=503, times=2)
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    for _ in range(2):
        with pytest.raises(SlackApiError) as exc:
            client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=posted["ts"], text="y")
        assert exc.value.response.status_code == 503
    client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=posted["ts"], text="y")
    retrying = WebClient(token=emu.bot_token, base_url=emu.base_url,
                         retry_handlers=[ServerErrorRetryHandler(
                             max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.01))])
    emu.inject("auth.test", status=500)
    assert retrying.auth_test()["ok"]
    assert [c.status for c in emu.calls_to("auth.test")] == [500, 200]


def test_error_injection_and_wildcard(emu: SlackEmulator, client: WebClient) -> None:
    emu.inject("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    assert exc.value.response.status_code == 200 and exc.value.response["error"] == "channel_not_found"
    emu.inject("*", error="fatal_error")
    with pytest.raises(SlackApiError) as exc:
        client.users_info(user="U0ALICE")
    assert exc.value.response["error"] == "fatal_error"
    assert client.users_info(user="U0ALICE")["ok"]
    with pytest.raises(ValueError):
        emu.inject("auth.test", status=200)


def test_upload_injection_fails_files_upload_v2(emu: SlackEmulator, client: WebClient) -> None:
    emu.inject(UPLOAD_PSEUDO_METHOD, status=500)
    with pytest.raises(HTTPError) as exc:  # slack_sdk posts to the upload URL with plain urllib
        client.files_upload_v2(channel=DEFAULT_CHANNEL_ID, content="x", filename="a.txt")
    assert exc.value.code == 500
    assert emu.files == []
    assert [c.method for c in emu.calls] == ["files.getUploadURLExternal", UPLOAD_PSEUDO_METHOD]


def test_auth_errors(emu: SlackEmulator) -> None:
    wrong = WebClient(token="xoxb-wrong", base_url=emu.base_url)
    with pytest.raises(SlackApiError) as exc:
        wrong.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    assert exc.value.response.status_code == 200 and exc.value.response["error"] == "invalid_auth"
    anonymous = WebClient(base_url=emu.base_url)
    with pytest.raises(SlackApiError) as exc:
        anonymous.auth_test()
    assert exc.value.response["error"] == "not_authed"
    assert emu.messages() == []
    # a legacy form-body token still works, as on Slack
    assert anonymous.api_call("auth.test", data={"token": emu.bot_token})["ok"]


def test_unknown_and_retired_methods(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postMesage", json={"channel": DEFAULT_CHANNEL_ID, "text": "x"})
    assert exc.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as exc:
        client.api_call("files.upload", data={"channels": DEFAULT_CHANNEL_ID, "content": "x"})
    assert exc.value.response["error"] == "method_deprecated"


def test_wait_for_async_effect_and_timeout(emu: SlackEmulator) -> None:
    def later() -> None:
        time.sleep(0.1)
        WebClient(token=emu.bot_token, base_url=emu.base_url).chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="late")

    threading.Thread(target=later).start()
    found = emu.wait_for(lambda e: [m for m in e.messages() if m["text"] == "late"], timeout=5)
    assert found[0]["text"] == "late"
    with pytest.raises(TimeoutError) as exc:
        emu.wait_for(lambda e: e.calls_to("views.open"), timeout=0.1)
    assert "chat.postMessage -> 200 ok" in str(exc.value)


def test_loopback_only_and_lifecycle() -> None:
    with pytest.raises(ValueError):
        SlackEmulator(host="0.0.0.0").start()
    emu = SlackEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    url = emu.start()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api/")
    emu.stop()
    emu.stop()  # idempotent
