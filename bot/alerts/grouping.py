"""Grouping keys: Alertmanager's groupKey by default, or a label template.

A template such as `{cluster}/{namespace}/{service}` names labels in braces; a missing label
renders as `-`. `{service}` falls back to the service derived from the alert (see
`bot.alerts.service_name`). One notification may then split into several groups, each becoming
its own batch; batches are returned sorted by key so that a worker locks incidents in one
global order (no deadlock between two deliveries touching the same incidents).
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.alerts.model import AlertBatch, NormalizedAlert
from bot.alerts.service_name import derived_service

_FIELD = re.compile(r"\{([^{}]+)\}")
MISSING = "-"


def validate_template(template: str) -> str:
    if not _FIELD.search(template):
        raise ValueError(f"group key template {template!r} names no label (use e.g. '{{namespace}}/{{service}}')")
    return template


def render_key(template: str, labels: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name == "service" and not labels.get("service"):
            return derived_service(labels) or MISSING
        return labels.get(name) or MISSING

    return "template:" + _FIELD.sub(value, template)


def _common(alerts: list[NormalizedAlert]) -> dict[str, str]:
    shared = set(alerts[0].labels.items())
    for alert in alerts[1:]:
        shared &= set(alert.labels.items())
    return dict(shared)


def regroup(batch: AlertBatch, template: str | None) -> list[AlertBatch]:
    """The batch split by grouping key (the batch itself when no template is configured)."""
    if not template:
        return [batch]
    groups: dict[str, list[NormalizedAlert]] = {}
    for alert in batch.alerts:
        groups.setdefault(render_key(template, alert.labels), []).append(alert)
    return [
        replace(batch, group_key=key, alerts=tuple(alerts), common_labels=_common(alerts),
                status="firing" if any(a.status == "firing" for a in alerts) else "resolved")
        for key, alerts in sorted(groups.items())
    ]
