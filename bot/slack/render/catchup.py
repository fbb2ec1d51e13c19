"""The catch-up message: where an incident stands, for someone who just arrived. Pure: a
`CatchUpView` in, Block Kit out. Edited in place as the incident moves (never re-posted), and
shown ephemerally by `/ops catchup INC-N`."""

from __future__ import annotations

from typing import Any

from bot.incidents.catchup import CatchUpView
from bot.slack.render.text import mention, truncate, untrusted

STATUS_WORDS = {"open": "open", "resolved": "resolved", "closed": "closed", "merged": "merged"}


def _time(view: CatchUpView) -> str:
    return f" ({view.latest_update_at.strftime('%H:%M UTC')})" if view.latest_update_at else ""


def render_catchup(view: CatchUpView) -> dict[str, Any]:
    status = STATUS_WORDS.get(view.status, view.status)
    if view.status == "resolved" and view.resolved_by:
        status += f" by {untrusted(view.resolved_by, 100)}"
    lead = untrusted(view.commander, 100) if view.commander else "nobody yet (Take command on the card)"
    lines = [
        f":compass: *Catch-up on {view.reference}* — {untrusted(view.title, 200)}",
        f"*Status:* {status} · *Severity:* {untrusted(view.severity, 20)} · *Commander:* {lead}"
        + (f" · *Acknowledged by:* {untrusted(view.acknowledged_by, 100)}" if view.acknowledged_by else ""),
        f"*Cause:* {untrusted(view.cause, 500)}",
    ]
    lines.append("*Steps:* " + ("; ".join(untrusted(step, 200) for step in view.steps) if view.steps
                                else "none run"))
    if view.latest_update:
        lines.append(f"*Latest update*{_time(view)} by {untrusted(view.latest_update_by or 'someone', 100)}: "
                     f"{untrusted(view.latest_update, 600)}")
    if view.follow_ups:
        more = view.open_follow_ups - len(view.follow_ups)
        lines.append("*Open follow-ups:* " + "; ".join(untrusted(item, 200) + (f" ({mention(owner)})" if owner else "")
                                                       for item, owner in view.follow_ups)
                     + (f"; and {more} more" if more > 0 else ""))
    else:
        lines.append("*Open follow-ups:* none")
    text = truncate("\n".join(lines), 2900)
    return {"text": truncate(f"Catch-up on {view.reference}: {status}", 300),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                       {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                           "Kept up to date in place as the incident moves. "
                           f"`/ops catchup {view.reference}` shows it to you alone.")}]}]}
