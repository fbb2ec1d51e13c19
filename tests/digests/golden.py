"""Golden Block Kit of a digest built from real parts: the message as Slack receives it.

`check_digest_golden(name, report, mask_numbers)` renders the report exactly as the runner posts
it and compares it with `tests/slack/golden/<name>.json` (`OPSBOT_UPDATE_GOLDEN=1` rewrites it).
Digests whose figures depend on the moment (a certificate issued relative to now, a
statement's measured time) mask digits, so the golden still pins the layout, sections,
wording, buttons and order; the others compare exactly."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bot.digests.model import DigestReport
from bot.sandbox.thread_text import message_text
from bot.slack.render.digest import render_digest
from tests.slack.test_card_render import check_golden, valid_blocks

DIGITS = re.compile(r"\d+")
LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:\d+")  # the test servers' free ports


def _masked(value, digits: bool):
    if isinstance(value, str):
        value = LOOPBACK_PORT.sub("127.0.0.1:PORT", value)
        return DIGITS.sub("N", value) if digits else value
    if isinstance(value, list):
        return [_masked(item, digits) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item, digits) for key, item in value.items()}
    return value


def check_digest_golden(name: str, report: DigestReport, mask_numbers: bool = False) -> dict:
    rendered = render_digest(report, f"digest:{report.name}:C0PLATFORM")
    assert valid_blocks(rendered["blocks"]) and len(rendered["blocks"]) <= 50
    samples = os.environ.get("OPSBOT_DIGEST_SAMPLES")  # a folder: the message as text, for the README
    if samples:
        Path(samples, f"{name}.txt").write_text(message_text({"blocks": _masked(rendered["blocks"], False)}))
    check_golden(name, _masked(rendered, mask_numbers))
    return rendered
