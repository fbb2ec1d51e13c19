"""The incident card: the thread's root message. Pure: domain data in, Block Kit dict out.

The input is the plain `IncidentCardView`, never the ORM row: the caller builds it
(`bot.incidents.card.card_view`), so this module does not import the database models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.slack.render.text import link, plain, untrusted

SEVERITY_ICON = {"critical": ":red_circle:", "high": ":large_orange_circle:", "warning": ":large_yellow_circle:",
                 "info": ":large_blue_circle:", "unknown": ":white_circle:"}
STATUS_LABEL = {"open": "Open", "resolved": "Resolved", "closed": "Closed", "merged": "Merged"}
LINK_LABELS = (("alertmanager", "Alertmanager"), ("source", "Prometheus"), ("runbook", "Runbook"),
               ("dashboard", "Dashboard"), ("pagerduty", "PagerDuty"))
HEADER_MAX = 150
MERGE_ACTION_ID = "incident_merge"
ACK_ACTION_ID = "incident_ack"
RESOLVE_ACTION_ID = "incident_resolve"
REOPEN_ACTION_ID = "incident_reopen"
COMMAND_ACTION_ID = "incident_take_command"
UPDATE_ACTION_ID = "incident_update"
SEVERITY_ACTION_ID = "incident_severity"
SEVERITY_CHOICES = ("critical", "high", "warning", "info")
MAX_UPDATE_SHOWN = 600


@dataclass(frozen=True)
class IncidentCardView:
    reference: str
    title: str
    severity: str
    status: str
    cluster: str | None
    namespace: str | None
    service: str | None
    alert_count: int
    firing_count: int
    links: dict[str, str]
    created_at: datetime
    updated_at: datetime
    category: str = "other"
    acknowledged_by: str | None = None
    incident_id: int = 0
    related_id: int | None = None
    previous_id: int | None = None
    merged_into_id: int | None = None
    commander: str | None = None
    latest_update: str | None = None
    latest_update_by: str | None = None
    latest_update_at: datetime | None = None
    resolved_by: str | None = None


def _field(label: str, value: str | None) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{untrusted(value, 1900) if value else '—'}"}


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _status(view: IncidentCardView) -> str:
    if view.status == "merged" and view.merged_into_id:
        return f"Merged into INC-{view.merged_into_id}"
    status = STATUS_LABEL.get(view.status, view.status.title())
    if view.status == "resolved":
        return f"{status} by {view.resolved_by}" if view.resolved_by else status
    return f"{status}, acknowledged by {view.acknowledged_by}" if view.acknowledged_by else status


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button = {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}, "value": value}
    return {**button, "style": style} if style else button


def _severity_menu(view: IncidentCardView) -> dict[str, Any]:
    options = [{"text": {"type": "plain_text", "text": grade.title()}, "value": f"{view.incident_id}:{grade}"}
               for grade in SEVERITY_CHOICES]
    menu = {"type": "static_select", "action_id": SEVERITY_ACTION_ID,
            "placeholder": {"type": "plain_text", "text": "Change severity"}, "options": options}
    current = next((o for o in options if o["value"].endswith(f":{view.severity}")), None)
    return {**menu, "initial_option": current} if current else menu


def _action_blocks(view: IncidentCardView) -> list[dict[str, Any]]:
    """While open: Acknowledge (until someone has), Resolve, Take command, Post update, the
    severity menu and, for a "possibly related" suggestion, Merge (a suggestion only, merged
    when a person clicks). Once resolved: Reopen and nothing else that changes state. Closed
    or merged: nothing."""
    incident = str(view.incident_id)
    if view.status == "resolved":
        return [{"type": "actions", "block_id": "incident_actions",
                 "elements": [_button(REOPEN_ACTION_ID, "Reopen", incident)]}]
    if view.status != "open":
        return []
    blocks: list[dict[str, Any]] = []
    buttons: list[dict[str, Any]] = []
    if not view.acknowledged_by:
        buttons.append(_button(ACK_ACTION_ID, "Acknowledge", incident, "primary"))
    buttons.append(_button(RESOLVE_ACTION_ID, "Resolve", incident))
    if not view.commander:
        buttons.append(_button(COMMAND_ACTION_ID, "Take command", incident))
    buttons.append(_button(UPDATE_ACTION_ID, "Post update", incident))
    buttons.append(_severity_menu(view))
    if view.related_id:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":link: Possibly related to *INC-{view.related_id}* (same scope, opened close together). "
            f"Merge folds this incident's alerts into INC-{view.related_id}.")}})
        buttons.append({
            "type": "button", "action_id": MERGE_ACTION_ID, "text": {"type": "plain_text", "text": "Merge"},
            "value": f"{view.incident_id}:{view.related_id}",
            "confirm": {
                "title": {"type": "plain_text", "text": "Merge incidents?"},
                "text": {"type": "plain_text", "text": f"Fold {view.reference} into INC-{view.related_id}."},
                "confirm": {"type": "plain_text", "text": "Merge"},
                "deny": {"type": "plain_text", "text": "Cancel"},
            },
        })
    if buttons:
        blocks.append({"type": "actions", "block_id": "incident_actions", "elements": buttons})
    return blocks


def render_card(view: IncidentCardView) -> dict[str, Any]:
    """`{"text": fallback, "blocks": [...]}` for chat.postMessage / chat.update."""
    icon = SEVERITY_ICON.get(view.severity, SEVERITY_ICON["unknown"])
    status = _status(view)
    header = plain(f"{icon} {view.reference} · {view.title}", HEADER_MAX)
    alerts = f"{view.firing_count} firing / {view.alert_count} total"
    fields = [
        _field("Severity", view.severity),
        _field("Status", status),
        _field("Category", view.category),
        _field("Alerts", alerts),
        _field("Namespace", view.namespace),
        _field("Service", view.service),
        _field("Cluster", view.cluster),
    ]
    if view.commander:
        fields.append(_field("Commander", view.commander))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": fields},
    ]
    if view.latest_update:
        when = f" ({_time(view.latest_update_at)})" if view.latest_update_at else ""
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":loudspeaker: *Latest update*{when} by {untrusted(view.latest_update_by or 'someone', 100)}: "
            f"{untrusted(view.latest_update, MAX_UPDATE_SHOWN)}")}})
    blocks += _action_blocks(view)
    links = [link(view.links[key], label) for key, label in LINK_LABELS if view.links.get(key)]
    context = [f"Opened {_time(view.created_at)}", f"updated {_time(view.updated_at)}"]
    if view.previous_id:
        context.append(f"follows INC-{view.previous_id}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context + links)}]})
    scope = "/".join(part for part in (view.namespace, view.service) if part)
    fallback = f"{view.reference} [{view.severity}] {status}: {view.title}" + (f" ({scope})" if scope else "")
    return {"text": untrusted(fallback, 3000), "blocks": blocks}
