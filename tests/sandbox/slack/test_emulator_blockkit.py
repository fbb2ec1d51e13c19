"""Block Kit validation: every limit at its boundary (accepted) and one past it (rejected)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID, SlackEmulator

Blocks = list[dict[str, Any]]


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def section(text: str = "x", **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text), **extra}


def button(action_id: str, value: str = "v") -> dict[str, Any]:
    return {"type": "button", "text": plain("Approve"), "action_id": action_id, "value": value}


def actions(*elements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements), **extra}


# name -> (builder(n) giving blocks, the limit n, what the error must mention)
LIMITS: dict[str, tuple[Callable[[int], Blocks], int, list[str]]] = {
    "blocks per message": (lambda n: [section() for _ in range(n)], 50, ["no more than 50 blocks"]),
    "section text": (lambda n: [section("a" * n)], 3000, ["blocks[0] (section)", "3000"]),
    "section field length": (
        lambda n: [{"type": "section", "fields": [mrkdwn("ok"), mrkdwn("f" * n)]}], 2000,
        ["blocks[0] (section)", "fields[1]", "2000"]),
    "section field count": (
        lambda n: [{"type": "section", "fields": [mrkdwn(str(i)) for i in range(n)]}], 10,
        ["blocks[0] (section)", "10"]),
    "header text": (lambda n: [{"type": "header", "text": plain("h" * n)}], 150, ["blocks[0] (header)", "150"]),
    "context elements": (
        lambda n: [section(), {"type": "context", "elements": [mrkdwn(str(i)) for i in range(n)]}], 10,
        ["blocks[1] (context)", "10"]),
    "actions elements": (
        lambda n: [actions(*[button(f"a{i}") for i in range(n)])], 25, ["blocks[0] (actions)", "25"]),
    "block_id length": (lambda n: [section(block_id="b" * n)], 255, ["blocks[0] (section)", "255"]),
    "action_id length": (lambda n: [actions(button("a" * n))], 255, ["blocks[0] (actions)", "255"]),
    "button value": (lambda n: [section(accessory=button("ack", "v" * n))], 2000,
                     ["blocks[0] (section)", "accessory", "2000"]),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_boundary_accepted_and_exceeded_rejected(name: str, emu: SlackEmulator, client: WebClient) -> None:
    build, limit, fragments = LIMITS[name]
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="at limit", blocks=build(limit))
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="over", blocks=build(limit + 1))
    body = exc.value.response
    assert body["error"] == "invalid_blocks"
    messages = body["response_metadata"]["messages"]
    assert len(messages) == 1, messages  # reported once, not by both the model and the emulator
    assert messages[0].startswith("[ERROR] ") and "[json-pointer:/blocks" in messages[0]
    for fragment in fragments:
        assert fragment in messages[0], messages[0]
    last = emu.calls[-1]
    assert last.method == "chat.postMessage" and last.ok is False and last.error == "invalid_blocks"
    assert [m["text"] for m in emu.messages()] == ["at limit"]


def test_message_text_limit_is_msg_too_long(client: WebClient) -> None:
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="t" * 40_000)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="t" * 40_001)
    assert exc.value.response["error"] == "msg_too_long"


@pytest.mark.parametrize(
    ("blocks", "fragment"),
    [
        ([section(block_id="same"), section(block_id="same")], "duplicate block_id 'same'"),
        ([actions(button("approve")), section(accessory=button("approve"))], "duplicate action_id 'approve'"),
        ([{"type": "actions", "elements": [{"type": "button", "action_id": "a"}]}], "missing 1 required"),
        ([{"type": "section"}], "text or fields attribute must be specified"),
        ([{"type": "secton", "text": mrkdwn("x")}], "unsupported block type 'secton'"),
        ([actions({"type": "buton", "action_id": "a"})], "unsupported element type 'buton'"),
        ([{"type": "section", "text": mrkdwn("x"), "acessory": button("a")}], "unknown field(s) acessory"),
        ([section("")], "empty mrkdwn text"),
        ([{"type": "header", "text": mrkdwn("*bold*")}], "must be of type plain_text"),
        ([{"type": "section", "text": "bare string"}], "must be a text object"),
        (["not an object"], "must be a JSON object"),
    ],
    ids=["dup-block-id", "dup-action-id", "button-no-text", "section-empty", "unknown-block", "unknown-element",
         "unknown-field", "empty-text", "header-mrkdwn", "bare-string", "not-object"],
)
def test_structural_violations_rejected(blocks: Blocks, fragment: str, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x", blocks=blocks)
    body = exc.value.response
    assert body["error"] == "invalid_blocks"
    assert any(fragment in m for m in body["response_metadata"]["messages"]), body
    assert body["errors"] and not body["errors"][0].startswith("[ERROR]")


def test_update_and_ephemeral_are_validated_too(client: WebClient) -> None:
    posted = client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    too_long = [section("a" * 3001)]
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=posted["ts"], text="x", blocks=too_long)
    assert exc.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as exc:
        client.chat_postEphemeral(channel=DEFAULT_CHANNEL_ID, user="U0ALICE", text="x", blocks=too_long)
    assert exc.value.response["error"] == "invalid_blocks"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_no_text(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID)
    assert exc.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="")
    assert exc.value.response["error"] == "no_text"
    client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, blocks=[section()])  # blocks alone are enough


def test_modal_block_limit_and_view_model(emu: SlackEmulator, client: WebClient) -> None:
    def modal(n: int) -> dict[str, Any]:
        return {"type": "modal", "title": plain("Approve step"), "blocks": [section(str(i)) for i in range(n)]}

    client.views_open(trigger_id=emu.new_trigger_id(), view=modal(100))
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=emu.new_trigger_id(), view=modal(101))
    body = exc.value.response
    assert body["error"] == "invalid_arguments"
    assert "100 blocks" in body["response_metadata"]["messages"][0]
    long_title = {**modal(1), "title": plain("t" * 25)}
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=emu.new_trigger_id(), view=long_title)
    assert "title" in exc.value.response["response_metadata"]["messages"][0]
    bad_block = {**modal(1), "blocks": [{"type": "header", "text": plain("h" * 151)}]}
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=emu.new_trigger_id(), view=bad_block)
    assert "[json-pointer:/view/blocks/0]" in exc.value.response["response_metadata"]["messages"][0]
