"""Thread notes: one short line for what changed since the last note (debounced by the card
worker, so a storm of batches becomes one line per interval, not one per batch)."""

from __future__ import annotations

from typing import Any

from bot.slack.render.text import untrusted

COUNTERS = ("new_firing", "resolved")
FLAGS = ("reopened", "escalated", "acknowledged", "reassigned", "annotated", "merged", "resolved_in_pagerduty",
         "acknowledged_here", "rca_failed", "resolved_here", "resolution_note", "reopened_here", "severity_here",
         "commander_here")


# What a person did in Slack (or merged in), in this order: the flag's value is who (or what).
PEOPLE_LINES = (
    ("reopened_here", ":arrows_counterclockwise: Reopened by {}"),
    ("severity_here", ":level_slider: Severity set to {}"),
    ("commander_here", ":admission_tickets: {} is the incident commander"),
    ("acknowledged_here", ":eyes: Acknowledged by {}"),
    ("merged", ":twisted_rightwards_arrows: {} merged into this incident"),
)


LOUD_SEVERITY = "critical"  # a raise to this is said in the channel; a lesser one only on the card and thread


def note_is_loud(note: dict[str, Any]) -> bool:
    """Reopening, a raise to critical and a person's resolution are broadcast to the channel, not
    only the thread. A raise to high stays in the thread (the card in the channel shows it): in a
    storm, one broadcast per escalating incident was most of what the channel had to read."""
    return bool(note.get("reopened") or note.get("escalated") == LOUD_SEVERITY or note.get("reopened_here")
                or note.get("resolved_here"))


def render_note(note: dict[str, Any], firing: int, total: int) -> str | None:
    """The line for a pending note, or None when there is nothing to say."""
    parts = []
    if note.get("reopened"):
        parts.append(":rotating_light: Firing again")
    if note.get("escalated"):
        parts.append(f":arrow_double_up: Severity raised to *{note['escalated']}*")
    if note.get("resolved_here"):
        why = f": {untrusted(str(note['resolution_note']), 300)}" if note.get("resolution_note") else ""
        parts.append(f":white_check_mark: Resolved by {untrusted(str(note['resolved_here']), 150)}{why}")
    parts += [line.format(untrusted(str(note[flag]), 150)) for flag, line in PEOPLE_LINES if note.get(flag)]
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
