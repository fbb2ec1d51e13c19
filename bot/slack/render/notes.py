"""Thread notes: one short line for what changed since the last note (debounced by the card
worker, so a storm of batches becomes one line per interval, not one per batch)."""

from __future__ import annotations

from typing import Any

from bot.slack.render.text import untrusted

COUNTERS = ("new_firing", "resolved")
FLAGS = ("reopened", "escalated", "acknowledged", "reassigned", "annotated", "merged", "resolved_in_pagerduty",
         "acknowledged_here", "rca_failed")


def note_is_loud(note: dict[str, Any]) -> bool:
    """Reopening and escalation are broadcast to the channel, not only the thread."""
    return bool(note.get("reopened") or note.get("escalated"))


def render_note(note: dict[str, Any], firing: int, total: int) -> str | None:
    """The line for a pending note, or None when there is nothing to say."""
    parts = []
    if note.get("reopened"):
        parts.append(":rotating_light: Firing again")
    if note.get("escalated"):
        parts.append(f":arrow_double_up: Severity raised to *{note['escalated']}*")
    if note.get("acknowledged_here"):
        parts.append(f":eyes: Acknowledged by {untrusted(str(note['acknowledged_here']), 100)}")
    if note.get("merged"):
        parts.append(f":twisted_rightwards_arrows: {untrusted(str(note['merged']), 100)} merged into this incident")
    if note.get("new_firing"):
        parts.append(f":heavy_plus_sign: {note['new_firing']} new firing")
    if note.get("resolved"):
        parts.append(f":white_check_mark: {note['resolved']} resolved")
    for flag, label in (("acknowledged", "Acknowledged"), ("reassigned", "Reassigned"), ("annotated", "Note added"),
                        ("resolved_in_pagerduty", "Resolved")):
        if note.get(flag):
            by = f" {'to' if flag == 'reassigned' else 'by'} {untrusted(note[flag], 100)}" \
                if isinstance(note[flag], str) else ""
            parts.append(f":pager: {label} in PagerDuty{by}")
    if note.get("rca_failed"):
        parts.append(rca_failed_text(str(note["rca_failed"])))
    if not parts:
        return None
    return " · ".join(parts) + f" — now {firing} firing / {total}"


def rca_failed_text(reason: str) -> str:
    """The line saying the incident gets no root cause analysis, and why (`reason`, plain words,
    redacted and escaped here too: it quotes an error message)."""
    return f":warning: No root cause analysis: {untrusted(reason, 400)}"


def subtract_note(current: dict[str, Any], posted: dict[str, Any]) -> dict[str, Any]:
    """What is still pending after `posted` went out (counters that grew meanwhile keep the
    difference; flags posted are cleared unless they changed)."""
    remaining: dict[str, Any] = {}
    for key in COUNTERS:
        left = current.get(key, 0) - posted.get(key, 0)
        if left > 0:
            remaining[key] = left
    for key in FLAGS:
        if key in current and current[key] != posted.get(key):
            remaining[key] = current[key]
    return remaining
