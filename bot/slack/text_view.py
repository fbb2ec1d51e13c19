"""Slack messages as terminal text: pure functions from Web API message dicts (as
`conversations.replies` returns them, or as the emulator stores them) to lines of text.

Invariants: no I/O and no imports beyond the standard library, so the command line, the demo and
the tests render a thread the same way; every block kind yields at least one line (an unknown
kind is named, never dropped silently); a message's files are listed after its text.
"""

from __future__ import annotations

import re
from typing import Any

LINK_PATTERN = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))  # &amp; last: "&amp;lt;" stays "&lt;"
RULE_WIDTH = 40
HEADER_RULE_MAX = 72
FIELD_LABEL_WIDTH = 12
REPLY_PREFIX = "  │ "


def mrkdwn_text(text: str) -> str:
    """Slack links `<url|label>` become `label (url)`; the three escaped entities are unescaped."""
    text = LINK_PATTERN.sub(lambda link: f"{link.group(2)} ({link.group(1)})", text)
    for escaped, plain in ENTITIES:
        text = text.replace(escaped, plain)
    return text


def text_object(obj: dict[str, Any] | None) -> str:
    """The words of a Block Kit text object (plain_text as is, mrkdwn with links spelled out)."""
    if not obj:
        return ""
    words = obj.get("text", "")
    return mrkdwn_text(words) if obj.get("type") == "mrkdwn" else words


def _section_lines(block: dict[str, Any]) -> list[str]:
    lines = text_object(block.get("text")).splitlines() if block.get("text") else []
    for field in block.get("fields", []):
        label, _, value = text_object(field).partition("\n")
        lines.append(f"{label.strip('*'):<{FIELD_LABEL_WIDTH}} {value}")
    return lines


def block_lines(block: dict[str, Any]) -> list[str]:
    """One Block Kit block as lines: headers underlined, fields as `label value`, buttons bracketed."""
    kind = block.get("type")
    if kind == "header":
        title = text_object(block.get("text"))
        return [title, "─" * min(HEADER_RULE_MAX, len(title))]
    if kind == "section":
        return _section_lines(block)
    if kind == "context":
        return ["  " + " ".join(text_object(element) for element in block.get("elements", []))]
    if kind == "divider":
        return ["─" * RULE_WIDTH]
    if kind == "actions":
        return ["  [" + "] [".join(text_object(element.get("text")) for element in block.get("elements", [])) + "]"]
    return [f"({kind} block)"]


def file_line(file: dict[str, Any]) -> str:
    return f"[file: {file.get('title') or file.get('name')} ({file.get('name')})]"


def message_text(message: dict[str, Any]) -> str:
    """The blocks when there are any (they are what people see), else the fallback text; then files."""
    blocks = message.get("blocks") or []
    if blocks:
        text = "\n".join(line for block in blocks for line in block_lines(block))
    else:
        text = mrkdwn_text(message.get("text", ""))
    files = [file_line(file) for file in message.get("files") or []]
    return "\n".join(part for part in [text, *files] if part)


def thread_text(messages: list[dict[str, Any]]) -> str:
    """The root message, then each reply indented under a bar, separated by blank lines."""
    if not messages:
        return "(no messages)"
    root, *replies = messages
    parts = [message_text(root)]
    for reply in replies:
        parts.append("\n".join(REPLY_PREFIX + line for line in message_text(reply).splitlines()))
    return "\n\n".join(parts)
