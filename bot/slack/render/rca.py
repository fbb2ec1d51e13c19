"""The RCA message in the incident thread: a pure function from a stored report to Block Kit.

Layout: the most likely cause in one sentence (with the resource and the numbers), how sure
and why (inconclusive said plainly; an unknown cause says so first and lists the unexplained
symptoms, with the weak leads after it), the evidence as bullets each followed by where it comes
from, what speaks against it, the ranking rules that moved it, the next step, the other hypotheses, similar past
incidents (hypotheses to check, worded as such, never as the cause), workloads also broken
nearby that the evidence does not connect, and what could not be checked. Every untrusted string (log lines, event messages, annotations) goes through
`untrusted` (redacted, escaped); every block stays inside Block Kit's limits, and long
material goes in a file instead (see `bot.incidents.rca_stage`).
"""

from __future__ import annotations

from typing import Any

from bot.diagnosis.model import CATEGORY_TITLES
from bot.slack.render.text import truncate, untrusted

SECTION_CHARS = 2900
MAX_BULLETS = 8
MAX_OTHERS = 3
MAX_SIMILAR = 3
HOW_RESOLVED = {"bot-mitigated": "mitigated by the bot's step", "bot-assisted": "resolved by people with the bot's help",
                "human-resolved": "resolved by people"}
HELD = {True: "the fix held", False: "the fix did not hold", None: "nothing verified the fix"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_CHARS)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_CHARS)}]}


def _bullets(items: list[dict[str, str]], limit: int = MAX_BULLETS) -> str:
    lines = [f"• {untrusted(e['text'], 600)}  _({untrusted(e['ref'], 160)})_" for e in items[:limit]]
    if len(items) > limit:
        lines.append(f"• … and {len(items) - limit} more")
    return "\n".join(lines)


def _confidence_words(confidence: float) -> str:
    if confidence >= 0.85:
        return "high confidence"
    if confidence >= 0.6:
        return "medium confidence"
    return "low confidence"


def _past(item: dict[str, Any]) -> str:
    """One similar past incident: how similar and why, what it was, how it ended."""
    how = HOW_RESOLVED.get(item.get("resolution", ""), untrusted(str(item.get("resolution")), 40))
    if item.get("fixed_by"):
        how += f" `{untrusted(item['fixed_by'], 63)}`" if item.get("resolution") == "bot-mitigated" else \
            f", step `{untrusted(item['fixed_by'], 63)}`"
    cause = CATEGORY_TITLES.get(item.get("category", ""), untrusted(str(item.get("category")), 40))
    where = f" on `{untrusted(item['resource'], 120)}`" if item.get("resource") else ""
    line = (f"• *{untrusted(item['incident'], 20)}* ({item['score'] * 100:.0f} % similar: "
            f"{untrusted('; '.join(item.get('reasons') or []), 400)}) — {untrusted(item.get('title') or '', 150)}. "
            f"Was: {cause}{where}; {how}; {HELD.get(item.get('fix_held'), HELD[None])}.")
    if item.get("note"):
        line += f" Note: {untrusted(item['note'], 200)}"
    return line


def render_rca(report: dict[str, Any], reference: str) -> dict[str, Any]:
    hypotheses = report.get("hypotheses") or []
    blocks: list[dict[str, Any]] = []
    subject = untrusted(report.get("subject", ""), 300)
    if not hypotheses:
        text = f"{reference}: no cause found"
        blocks.append(_section(f":mag: *Root cause analysis of {reference}*\nNo analyzer found a cause in the "
                               f"evidence about {subject}."))
    else:
        top = hypotheses[0]
        title = CATEGORY_TITLES.get(top["category"], top["category"])
        unknown = top["category"] == "unknown"
        sure = ("no rule explains the symptoms" if unknown else
                "inconclusive — the evidence points several ways" if report.get("inconclusive")
                else _confidence_words(top["confidence"]))
        text = f"{reference} RCA: {truncate(top['summary'], 300)}"
        blocks.append(_section(f":mag: *Root cause analysis of {reference}* — {title} ({sure})\n"
                               f"*{untrusted(top['summary'], 900)}*"))
        if top.get("supporting"):
            heading = "Unexplained symptoms" if unknown else "Evidence"
            blocks.append(_section(f"*{heading}*\n" + _bullets(top["supporting"])))
        if top.get("contradicting"):
            blocks.append(_section("*Against it*\n" + _bullets(top["contradicting"], 3)))
        if top.get("rules"):
            blocks.append(_context("Ranked by: " + ", ".join(untrusted(rule, 80) for rule in top["rules"][:6])))
        if top.get("action"):
            blocks.append(_section(f"*Next step:* {untrusted(top['action'], 600)}"))
        others = hypotheses[1:1 + MAX_OTHERS]
        if others:
            heading = "Weak leads (not enough evidence)" if unknown else "Other hypotheses"
            lines = [f"{i + 2}. {CATEGORY_TITLES.get(h['category'], h['category'])} — `{untrusted(h['resource'], 120)}` "
                     f"({h['confidence'] * 100:.0f} %): {untrusted(h['summary'], 300)}" for i, h in enumerate(others)]
            blocks.append(_section(f"*{heading}*\n" + "\n".join(lines)))
    similar = report.get("similar") or []
    if similar:
        blocks.append(_section("*Similar past incidents* — hypotheses to check, not the cause of this one\n"
                               + "\n".join(_past(item) for item in similar[:MAX_SIMILAR])))
    nearby = report.get("nearby") or []
    if nearby:
        blocks.append(_context("*Also broken nearby* (not connected to this incident by the evidence): "
                               + "; ".join(untrusted(line, 200) for line in nearby)))
    gaps = report.get("gaps") or []
    if gaps:
        blocks.append(_context("*Could not check:* " + "; ".join(
            f"{untrusted(g['what'], 120)} ({untrusted(g['why'], 160)})" for g in gaps[:8])
            + (f"; and {len(gaps) - 8} more" if len(gaps) > 8 else "")))
    timings = report.get("timings") or {}
    if timings:
        spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        blocks.append(_context(f"Investigated {subject}. Time spent: {spent}. Nothing was changed in the cluster."))
    return {"text": truncate(text, 3000), "blocks": blocks}
