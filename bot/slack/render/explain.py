"""`/ops explain`'s answer in Block Kit: a pure function from an `Explanation` to blocks.

One section for the headline, then one per part: its heading in bold and each line as a
bullet. Every line is untrusted text (titles, log lines, annotations came from outside):
redacted and escaped, so nothing in it can mention, link or format. A part too long for one
section (3,000 characters) is cut with an ellipsis; there are never more than a dozen blocks.
The terminal shows the same lines (`bot.ask.explain_cli.explanation_text`).
"""

from __future__ import annotations

from typing import Any

from bot.ask.explain import Explanation
from bot.slack.render.text import truncate, untrusted

SECTION_CHARS = 3000
LINE_CHARS = 600
BULLET = "•"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_CHARS)}}


def render_explanation(explanation: Explanation) -> dict[str, Any]:
    blocks = [_section(f":mag: *{untrusted(explanation.headline, 600)}*")]
    for part in explanation.parts:
        lines = "\n".join(f"{BULLET} {untrusted(line, LINE_CHARS)}" for line in part.lines)
        blocks.append(_section(f"*{untrusted(part.heading, 200)}*\n{lines}"))
    return {"text": untrusted(explanation.headline, 3000), "blocks": blocks}
