"""The incident card: the thread's root message. Pure: domain data in, Block Kit dict out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.db.models import Incident
from bot.slack.render.text import link, plain, untrusted

SEVERITY_ICON = {"critical": ":red_circle:", "high": ":large_orange_circle:", "warning": ":large_yellow_circle:",
                 "info": ":large_blue_circle:", "unknown": ":white_circle:"}
STATUS_LABEL = {"open": "Open", "resolved": "Resolved by source", "closed": "Closed"}
LINK_LABELS = (("alertmanager", "Alertmanager"), ("source", "Prometheus"), ("runbook", "Runbook"),
               ("dashboard", "Dashboard"))
HEADER_MAX = 150


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


def card_view(incident: Incident) -> IncidentCardView:
    return IncidentCardView(
        reference=incident.reference, title=incident.title, severity=incident.severity, status=incident.status,
        cluster=incident.cluster, namespace=incident.namespace, service=incident.service,
        alert_count=incident.alert_count, firing_count=incident.firing_count, links=dict(incident.links),
        created_at=incident.created_at, updated_at=incident.updated_at,
    )


def _field(label: str, value: str | None) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{untrusted(value, 1900) if value else '—'}"}


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def render_card(view: IncidentCardView) -> dict[str, Any]:
    """`{"text": fallback, "blocks": [...]}` for chat.postMessage / chat.update."""
    icon = SEVERITY_ICON.get(view.severity, SEVERITY_ICON["unknown"])
    status = STATUS_LABEL.get(view.status, view.status.title())
    header = plain(f"{icon} {view.reference} · {view.title}", HEADER_MAX)
    alerts = f"{view.firing_count} firing / {view.alert_count} total"
    fields = [
        _field("Severity", f"{view.severity}"),
        _field("Status", status),
        _field("Namespace", view.namespace),
        _field("Service", view.service),
        _field("Cluster", view.cluster),
        _field("Alerts", alerts),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": fields},
    ]
    links = [link(view.links[key], label) for key, label in LINK_LABELS if view.links.get(key)]
    context = [f"Opened {_time(view.created_at)}", f"updated {_time(view.updated_at)}", *links]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    scope = "/".join(part for part in (view.namespace, view.service) if part)
    fallback = f"{view.reference} [{view.severity}] {status}: {view.title}" + (f" ({scope})" if scope else "")
    return {"text": untrusted(fallback, 3000), "blocks": blocks}  # notifications parse `text` as mrkdwn
