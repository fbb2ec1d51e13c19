"""A digest (`bot.digests.model.DigestReport`) as one Slack message, and its long tail as a file.

`render_digest(report, scope, when)` returns {"text", "blocks", "shown", "truncated"}: a header,
the headline said plainly (also when there is nothing to report), what could not be checked,
the findings grouped under their sections (most important first, at most `MAX_SHOWN`), a
"Propose fix" button on each finding that has a safe fix, what was fixed since the last digest,
how the digest was made and the queries behind its figures. `render_markdown(report)` is the
whole report as Markdown (redacted, as the message is), attached in the message's thread.

Pure: no I/O. Every text from a report is untrusted (names, values and messages come from the
cluster or a database): escaped and redacted. Stays inside Block Kit's limits (50 blocks, 3000
characters a section, 25 elements an actions block). A button's value names the finding
(scope and key), never the fix: the click handler looks the fix up in the database.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.digests.model import SEVERITY_ORDER, DigestReport, Finding
from bot.redaction import redact
from bot.slack.render.text import plain, truncate, untrusted

MAX_SHOWN = 15  # findings in the message; the rest are in the attached file
MAX_QUERIES_SHOWN = 8
SECTION_LIMIT = 2900
FIX_ACTION = "digest_fix"
ICONS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":white_circle:"}
STILL = {"drift": "still drifted since"}  # how a repeated finding is worded; default below
TITLES = {"drift": ":twisted_rightwards_arrows:", "credentials": ":key:", "cost": ":moneybag:",
          "database": ":card_file_box:"}


def _day(value: datetime) -> str:
    return f"{value:%d %b %Y}"


def _when(finding: Finding, still: str) -> str:
    """"since 02 Dec 13:00 UTC" when the evidence dates it, and "still drifted since 05 Dec" for a
    finding an earlier digest reported."""
    parts = []
    if finding.since is not None:
        parts.append(f"since {finding.since:%d %b %Y %H:%M} UTC")
    if finding.reported_since is not None:
        parts.append(f"{still} {_day(finding.reported_since)}")
    return f" _({'; '.join(parts)})_" if parts else ""


def _line(finding: Finding, still: str) -> str:
    return (f"{ICONS.get(finding.severity, '')} *{untrusted(finding.subject, 200)}*: "
            f"{untrusted(finding.detail, 600)}{_when(finding, still)}")


def _ordered(report: DigestReport) -> list[Finding]:
    """Sections in order of their most severe finding; findings keep the builder's order."""
    first: dict[str, int] = {}
    for index, finding in enumerate(report.findings):
        rank = SEVERITY_ORDER.get(finding.severity, 3) * 10_000 + index
        first[finding.section] = min(first.get(finding.section, rank), rank)
    return sorted(report.findings, key=lambda f: first[f.section])


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}]}


def fix_value(scope: str, key: str) -> str:
    return json.dumps({"scope": scope, "key": key}, separators=(",", ":"))[:2000]


def _fix_buttons(findings: list[Finding], scope: str) -> list[dict[str, Any]]:
    buttons = []
    for index, finding in enumerate(f for f in findings if f.fix is not None):
        buttons.append({"type": "button", "action_id": f"{FIX_ACTION}_{index}",
                        "text": {"type": "plain_text", "text": plain(f"Propose fix: {finding.fix.title}", 75)},
                        "value": fix_value(scope, finding.key)})
    return buttons[:25]


def render_digest(report: DigestReport, scope: str, when: datetime | None = None) -> dict[str, Any]:
    """The digest message (see the module docstring). `scope` names the digest's job for the buttons."""
    when = when or report.generated_at
    icon = TITLES.get(report.name, ":clipboard:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": plain(f"{report.title} digest · {_day(when)}", 150)}},
        _section(f"{icon} *{untrusted(report.headline, 1000)}*"),
    ]
    if report.problems:
        lines = "\n".join(f"• {untrusted(problem, 400)}" for problem in report.problems[:10])
        more = f"\n…and {len(report.problems) - 10} more (attached file)" if len(report.problems) > 10 else ""
        blocks.append(_section(f":warning: *Could not check*\n{lines}{more}"))
    ordered = _ordered(report)
    shown = ordered[:MAX_SHOWN]
    section = None
    lines: list[str] = []

    def flush() -> None:
        if section is not None and lines:
            blocks.append(_section(f"*{untrusted(section, 120)}*\n" + "\n".join(lines)))

    for finding in shown:
        if finding.section != section:
            flush()
            section, lines = finding.section, []
        lines.append(_line(finding, STILL.get(report.name, "reported since")))
    flush()
    buttons = _fix_buttons(shown, scope)
    if buttons:
        blocks.append({"type": "actions", "block_id": "digest_fixes", "elements": buttons})
    if len(ordered) > MAX_SHOWN:
        blocks.append(_context(f"{len(ordered) - MAX_SHOWN} more findings in the attached file."))
    if report.fixed:
        fixed = "\n".join(f":white_check_mark: *{untrusted(f.subject, 200)}*: {untrusted(f.detail, 300)}"
                          f" (reported since {_day(f.reported_since)})" if f.reported_since else
                          f":white_check_mark: *{untrusted(f.subject, 200)}*: {untrusted(f.detail, 300)}"
                          for f in report.fixed[:10])
        blocks.append(_section(f"*Fixed since the last digest*\n{fixed}"))
    if report.notes:
        blocks.append(_context(" · ".join(untrusted(note, 300) for note in report.notes[:6])))
    if report.queries:
        queries = "\n".join(untrusted(query, 400) for query in report.queries[:MAX_QUERIES_SHOWN])
        more = (f"\n…{len(report.queries) - MAX_QUERIES_SHOWN} more in the attached file"
                if len(report.queries) > MAX_QUERIES_SHOWN else "")
        blocks.append(_section(f"*Queries behind these figures*\n```{queries}```{more}"))
    truncated = len(ordered) > MAX_SHOWN or len(report.queries) > MAX_QUERIES_SHOWN or len(report.problems) > 10
    return {"text": truncate(f"{report.title} digest: {report.headline}", 3000), "blocks": blocks[:50],
            "shown": len(shown), "truncated": truncated}


def render_markdown(report: DigestReport) -> str:
    """The whole report as Markdown (the attached file): every finding, problem and query."""
    out = [f"# {report.title} digest, {report.generated_at:%Y-%m-%d %H:%M} UTC", "", report.headline, ""]
    if report.problems:
        out += ["## Could not check", ""] + [f"- {p}" for p in report.problems] + [""]
    section = None
    for finding in _ordered(report):
        if finding.section != section:
            section = finding.section
            out += ["", f"## {section}", ""]
        when = []
        if finding.since is not None:
            when.append(f"since {finding.since:%Y-%m-%d %H:%M} UTC")
        if finding.reported_since is not None:
            when.append(f"still reported since {finding.reported_since:%Y-%m-%d}")
        fix = f" Fix: {finding.fix.title} (runbook {finding.fix.runbook})." if finding.fix else ""
        out.append(f"- **{finding.subject}** [{finding.severity}]: {finding.detail}"
                   f"{' (' + '; '.join(when) + ')' if when else ''}{fix}")
    if report.fixed:
        out += ["", "## Fixed since the last digest", ""] + [f"- {f.subject}: {f.detail}" for f in report.fixed]
    if report.notes:
        out += ["", "## How this digest was made", ""] + [f"- {n}" for n in report.notes]
    if report.queries:
        out += ["", "## Queries", ""] + [f"```\n{q}\n```" for q in report.queries]
    return redact("\n".join(out).strip()) + "\n"


def render_text(report: DigestReport) -> str:
    """The digest for a terminal (`opsbot digest`): the Markdown without emphasis marks."""
    return render_markdown(report).replace("**", "")
