"""Render a Slack thread (as the emulator stores it) as terminal text, for the demo."""

from __future__ import annotations

import re
from typing import Any

_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")


def _mrkdwn(text: str) -> str:
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: dict[str, Any] | None) -> str:
    if not obj:
        return ""
    return _mrkdwn(obj.get("text", "")) if obj.get("type") == "mrkdwn" else obj.get("text", "")


def block_lines(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [_text_of(block.get("text")), "─" * min(72, len(_text_of(block.get("text"))))]
    if kind == "section":
        lines = _text_of(block.get("text")).splitlines() if block.get("text") else []
        for field in block.get("fields", []):
            label, _, value = _text_of(field).partition("\n")
            lines.append(f"{label.strip('*'):<12} {value}")
        return lines
    if kind == "context":
        return ["  " + " ".join(_text_of(element) for element in block.get("elements", []))]
    if kind == "divider":
        return ["─" * 40]
    if kind == "actions":
        return ["  [" + "] [".join(_text_of(e.get("text")) for e in block.get("elements", [])) + "]"]
    return [f"({kind} block)"]


def message_text(message: dict[str, Any]) -> str:
    blocks = message.get("blocks") or []
    text = "\n".join(line for block in blocks for line in block_lines(block)) if blocks \
        else _mrkdwn(message.get("text", ""))
    files = [f"[file: {f.get('title') or f.get('name')} ({f.get('name')})]" for f in message.get("files") or []]
    return "\n".join(part for part in [text, *files] if part)


def thread_text(messages: list[dict[str, Any]]) -> str:
    """The root message, then each reply indented."""
    if not messages:
        return "(no messages)"
    root, *replies = messages
    parts = [message_text(root)]
    for reply in replies:
        parts.append("\n".join("  │ " + line for line in message_text(reply).splitlines()))
    return "\n\n".join(parts)
