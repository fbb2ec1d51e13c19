"""The postmortem message: a pure function from the postmortem's facts to Block Kit.

Layout: the title with how it was resolved, the key times and durations as fields, the root
cause (or "unknown" and why), the steps with their status, approvers and numbers, the similar
past incidents (hypotheses for the review), and a context line pointing at the full Markdown
(`opsbot postmortem INC-N`); posted by `bot.postmortem.stage`. Every block stays inside Block Kit's
limits; the timeline and the long evidence live in the Markdown (`bot.postmortem.markdown`),
not in the message. Text from outside was redacted when stored and is escaped here.
"""

from __future__ import annotations

from typing import Any

from bot.postmortem.markdown import duration, utc
from bot.slack.render.text import mention, truncate, untrusted

MAX_ACTIONS = 6
RESOLUTION_WORDS = {"bot-mitigated": "mitigated by the bot's verified step",
                    "bot-assisted": "resolved by people, with the bot's RCA or steps",
                    "human-resolved": "resolved by people", "open": "still open"}
KEY_TIMES = (("first_alert", "First alert"), ("acknowledged", "Acknowledged"), ("diagnosed", "Diagnosed"),
             ("mitigated", "Mitigated"), ("resolved", "Resolved"))


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 2900)}}


def _cause(root: dict[str, Any]) -> str:
    if root.get("category") == "unknown" or root.get("inconclusive"):
        return f"*Root cause:* unknown — {untrusted(str(root.get('summary') or root.get('rca') or ''), 600)}"
    confidence = f" ({round((root.get('confidence') or 0) * 100)} %)" if root.get("confidence") is not None else ""
    return (f"*Root cause:* {untrusted(str(root.get('category')), 40)} on "
            f"`{untrusted(str(root.get('resource')), 200)}`{confidence}: {untrusted(str(root.get('summary')), 700)}")




def _reading(value: Any) -> str:
    """A check's value; "—" when Prometheus had none to give at that moment."""
    return "—" if value is None else str(value)


def _action(action: dict[str, Any]) -> str:
    line = f"• `{untrusted(action['runbook'], 63)}` on `{untrusted(action['target'], 120)}`: *{action['status']}*"
    if action.get("approvers"):
        line += f", approved by {', '.join(mention(a) for a in action['approvers'][:3])}"
    verification = action.get("verification") or {}
    if "before" in verification:
        line += f", verification {_reading(verification['before'])} → {_reading(verification.get('after'))}"
    return line


def _similar(item: dict[str, Any]) -> str:
    fix = f", fixed by `{untrusted(str(item['fixed_by']), 63)}`" if item.get("fixed_by") else ""
    held = {True: " (it held)", False: " (it did not hold)"}.get(item.get("fix_held"), "")
    return (f"• *{item['incident']}* {untrusted(str(item.get('title') or ''), 120)} — "
            f"{round(item['score'] * 100)} %: {untrusted(', '.join(item.get('reasons') or []), 200)}; "
            f"{RESOLUTION_WORDS.get(item.get('resolution', ''), item.get('resolution', ''))}{fix}{held}")


def render_postmortem(facts: dict[str, Any], updated: bool = False) -> dict[str, Any]:
    title = untrusted(str(facts.get("title") or ""), 200)
    how = RESOLUTION_WORDS.get(facts.get("resolution", ""), facts.get("resolution", ""))
    head = f":memo: *Postmortem of {facts['incident']}* — {title}\n{how}"
    if updated or facts.get("reopened"):
        head += f" _(updated: reopened {facts.get('reopened', 0)} time(s) and resolved again)_"
    times, durations = facts.get("times") or {}, facts.get("durations") or {}
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{utc(times.get(key))}"} for key, label in KEY_TIMES]
    fields.append({"type": "mrkdwn", "text": "*TTA / TTD / TTM / TTR*\n" + " / ".join(
        duration(durations.get(k)) for k in ("tta", "ttd", "ttm", "ttr"))})
    blocks: list[dict[str, Any]] = [_section(head), {"type": "section", "fields": fields[:10]},
                                    _section(_cause(facts.get("root_cause") or {}))]
    actions = facts.get("actions") or []
    if actions:
        lines = [_action(a) for a in actions[:MAX_ACTIONS]]
        if len(actions) > MAX_ACTIONS:
            lines.append(f"• … and {len(actions) - MAX_ACTIONS} more")
        blocks.append(_section("*Steps*\n" + "\n".join(lines)))
    else:
        blocks.append(_section("*Steps:* none was proposed or run."))
    if facts.get("similar"):
        blocks.append(_section("*Similar past incidents* (to compare in the review, not the cause of this one)\n"
                               + "\n".join(_similar(item) for item in facts["similar"])))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"Built from the database's facts: {len(facts.get('timeline') or [])} timeline entries, "
        f"{(facts.get('alerts') or {}).get('count', 0)} alert(s). The full postmortem with the timeline, as "
        "Markdown: `opsbot postmortem " + facts["incident"] + "`.")}]})
    return {"text": truncate(f"Postmortem of {facts['incident']}: {how}", 3000), "blocks": blocks}
