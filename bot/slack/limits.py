"""Block Kit limits, enforced on every payload the gateway sends.

Renderers aim to stay inside the limits; this guard makes it an invariant, so that an
unexpectedly long annotation can never turn a card into an `invalid_blocks` error.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.slack.render.text import truncate

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT = 40_000


def _cut_text(obj: dict[str, Any], limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = truncate(obj["text"], limit)


def fit_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `blocks` cut to Slack's limits (texts truncated, extra blocks dropped)."""
    fitted = copy.deepcopy(blocks)
    if len(fitted) > MAX_BLOCKS:
        fitted = fitted[: MAX_BLOCKS - 1] + [{
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"{len(blocks) - MAX_BLOCKS + 1} more blocks left out"}],
        }]
    for block in fitted:
        kind = block.get("type")
        if kind == "section":
            _cut_text(block.get("text", {}), MAX_SECTION_TEXT)
            block["fields"] = block.get("fields", [])[:MAX_FIELDS] or None
            if block["fields"] is None:
                del block["fields"]
            for item in block.get("fields", []):
                _cut_text(item, MAX_FIELD_TEXT)
        elif kind == "header":
            _cut_text(block.get("text", {}), MAX_HEADER_TEXT)
        elif kind == "context":
            block["elements"] = block.get("elements", [])[:MAX_CONTEXT_ELEMENTS]
            for item in block["elements"]:
                _cut_text(item, MAX_SECTION_TEXT)
    return fitted


def fit_text(text: str) -> str:
    return truncate(text, MAX_MESSAGE_TEXT)
