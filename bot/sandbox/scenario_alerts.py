"""A scenario's alerts as Alertmanager sends them: the API's post shape and the webhook body.

The scenario cluster's name becomes the `cluster` label (as an external label would add it);
a resolved alert without `endsAt` ends at the scenario's `now`; fingerprints are Alertmanager's
(a hash of the sorted labels), so the bot sees exactly what the real Alertmanager would send.
"""

from __future__ import annotations

import json
from typing import Any

from bot.alerts.fingerprints import label_fingerprint
from bot.sandbox.scenario import Scenario

ZERO_TIME = "0001-01-01T00:00:00Z"


def _rfc3339(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def alerts_for_alertmanager(scenario: Scenario) -> list[dict[str, Any]]:
    """The alerts to POST to Alertmanager's API (/api/v2/alerts)."""
    alerts = []
    for alert in scenario.alerts:
        labels = dict(alert.labels)
        if scenario.cluster.name:
            labels.setdefault("cluster", scenario.cluster.name)
        item = {"labels": labels, "annotations": dict(alert.annotations), "startsAt": alert.starts_at}
        if alert.ends_at is not None:
            item["endsAt"] = alert.ends_at
        elif alert.status == "resolved":
            item["endsAt"] = scenario.now
        if alert.generator_url:
            item["generatorURL"] = alert.generator_url
        alerts.append(item)
    return alerts


def webhook_body(scenario: Scenario, receiver: str = "opsbot") -> bytes:
    """One Alertmanager webhook (payload version 4) carrying every alert of the scenario, as a
    route grouping by cluster and namespace would send its first notification."""
    alerts = []
    for item in alerts_for_alertmanager(scenario):
        ends = item.get("endsAt")
        status = "resolved" if ends is not None and ends <= scenario.now else "firing"
        alerts.append({"status": status, "labels": item["labels"], "annotations": item["annotations"],
                       "startsAt": _rfc3339(item["startsAt"]), "endsAt": _rfc3339(ends) if ends else ZERO_TIME,
                       "generatorURL": item.get("generatorURL", ""), "fingerprint": label_fingerprint(item["labels"])})
    common = dict(set.intersection(*(set(a["labels"].items()) for a in alerts))) if alerts else {}
    group = {k: common[k] for k in ("cluster", "namespace") if k in common}
    key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return json.dumps({
        "version": "4", "receiver": receiver, "status": "firing" if any(a["status"] == "firing" for a in alerts)
        else "resolved", "alerts": alerts, "groupLabels": group, "commonLabels": common, "commonAnnotations": {},
        "externalURL": "http://alertmanager.scenario:9093", "groupKey": key + f"/{scenario.id}", "truncatedAlerts": 0,
    }).encode()
