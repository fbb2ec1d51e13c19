"""Grafana unified alerting webhooks: Alertmanager's format (payload version 1) plus Grafana's
own fields. The per-alert links (dashboard, panel, silence) and the evaluated values become
annotations, so the card can link to the dashboard the alert came from."""

from __future__ import annotations

from bot.alerts.alertmanager import parse_compatible
from bot.alerts.model import AlertBatch

SOURCE = "grafana"
# Grafana field -> annotation name (an alert's own annotation of that name wins).
EXTRA_FIELDS = {"dashboardURL": "dashboard_url", "panelURL": "panel_url", "silenceURL": "silence_url",
                "valueString": "value_string"}


def _grafana_annotations(alert) -> dict[str, str]:
    extra = alert.model_extra or {}
    return {name: str(extra[field]) for field, name in EXTRA_FIELDS.items() if extra.get(field)}


def parse(body: bytes) -> AlertBatch:
    return parse_compatible(body, SOURCE, frozenset({"1"}), _grafana_annotations)
