"""The week's numbers as Block Kit (`bot.slack.render.weekly`): a golden file, and an empty week."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.incidents.weekly import Times, WeekNumbers
from bot.slack.render.weekly import render_week
from tests.slack.test_card_render import check_golden, valid_blocks

MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
WEEK = WeekNumbers(
    week="2026-W47", start=MONDAY, end=MONDAY + timedelta(days=7), so_far=True, opened=12, resolved=10, alerts=87,
    noise_reduction=87 / 12, tta=Times(11, 412.5, 240.0), ttd=Times(9, 95.0, 61.0), ttr=Times(10, 9000.0, 2730.0),
    steps={"proposed": 9, "approved": 5, "auto_run": 2, "rejected": 1, "succeeded": 5, "rolled_back": 1, "failed": 1},
    resolutions={"bot-mitigated": 4, "bot-assisted": 5, "human-resolved": 1},
)


def test_week_golden():
    blocks = render_week(WEEK)
    check_golden("weekly_numbers", {"blocks": blocks})
    assert valid_blocks(blocks)
    text = json.dumps(blocks)
    assert "40 % bot-mitigated (4)" in text and "2 auto-run" in text and "7.2 alerts per incident" in text


def test_an_empty_past_week_shows_dashes_not_zeros():
    empty = replace(WEEK, so_far=False, opened=0, resolved=0, alerts=0, noise_reduction=None, tta=Times(0, None, None),
                    ttd=Times(0, None, None), ttr=Times(0, None, None), steps=dict.fromkeys(WEEK.steps, 0),
                    resolutions=dict.fromkeys(WEEK.resolutions, 0))
    blocks = render_week(empty)
    assert valid_blocks(blocks)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "so far" not in text and "alerts per incident" not in text
    assert "*MTTR*\\n— (none resolved)" in text and "— bot-mitigated" in text and "0 opened" in text
