"""`/ops risk`: the deploy verdict and its reasons. Pure: a `Verdict` in, Block Kit out."""

from __future__ import annotations

from typing import Any

from bot.ask.risk import Verdict
from bot.slack.render.text import truncate, untrusted

HEADLINES = {"go": ":large_green_circle: *Go*", "wait": ":large_yellow_circle: *Wait*",
             "no-go": ":red_circle: *No-go*"}
LEVEL_ICONS = {"no-go": ":no_entry:", "wait": ":hourglass_flowing_sand:", "unknown": ":grey_question:",
               "ok": ":white_check_mark:"}


def render_risk(verdict: Verdict) -> dict[str, Any]:
    lines = [f"{LEVEL_ICONS.get(f.level, '•')} *{f.check}*: {untrusted(f.text, 300)}" for f in verdict.findings]
    head = f"{HEADLINES[verdict.verdict]} for `{untrusted(verdict.workload, 300)}`"
    when = verdict.checked_at.strftime("%Y-%m-%d %H:%M UTC")
    return {"text": truncate(f"{verdict.verdict} for {verdict.workload}", 300), "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate("\n".join(lines), 2900)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"Checked {when}; recorded as R-{verdict.check_id}. Pipelines ask the same with "
            "`POST /api/deploy-check`.")}]}]}
