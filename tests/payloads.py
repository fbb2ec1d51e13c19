"""Alertmanager v4 webhook bodies, shaped as Alertmanager 0.25 sends them."""

from __future__ import annotations

import json
from typing import Any

from bot.alerts.fingerprints import label_fingerprint

EXTERNAL_URL = "http://alertmanager.example:9093"


def am_alert(alertname: str = "KubePodCrashLooping", status: str = "firing", *,
             starts_at: str = "2026-11-21T09:55:00Z", ends_at: str = "0001-01-01T00:00:00Z",
             annotations: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    labels = {"alertname": alertname, **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations if annotations is not None else {"summary": "Pod is crash looping."},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": label_fingerprint(labels),
    }


def am_payload(alerts: list[dict[str, Any]], group_key: str = '{}:{alertname="KubePodCrashLooping"}',
               **extra: Any) -> dict[str, Any]:
    common = dict(set.intersection(*(set(a["labels"].items()) for a in alerts))) if alerts else {}
    firing = any(alert["status"] == "firing" for alert in alerts)
    payload = {
        "receiver": "opsbot",
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": EXTERNAL_URL,
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
    payload.update(extra)
    return payload


def am_body(alerts: list[dict[str, Any]], **kwargs: Any) -> bytes:
    return json.dumps(am_payload(alerts, **kwargs)).encode()
