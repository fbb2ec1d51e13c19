"""The service an alert is about, guessed from its labels only: pure, no database.

Lives with the alerts because grouping (`bot.alerts.grouping`) and the incident summary
(`bot.incidents.summary`) must derive the same name from the same labels; the incident layer
imports it from here, never the other way round. A guess from names only: the RCA stage
resolves ownerReferences.
"""

from __future__ import annotations

import re

# Labels naming the service an alert is about, most specific first. Prometheus' own `job`
# label names the scrape job (often kube-state-metrics), so it is deliberately absent.
SERVICE_LABELS = (
    "service", "app.kubernetes.io/name", "app_kubernetes_io_name", "app", "deployment",
    "statefulset", "daemonset", "job_name", "cronjob",
)
# Pod names of Deployments (name-<template hash>-<5 chars>) and StatefulSets (name-<ordinal>).
_DEPLOYMENT_POD = re.compile(r"^(?P<name>[a-z0-9-]+?)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_STATEFUL_POD = re.compile(r"^(?P<name>[a-z0-9-]+?)-\d+$")


def derived_service(labels: dict[str, str]) -> str | None:
    """The service an alert is about: an explicit label, else the workload a pod name implies,
    else the container. A guess from names only; the RCA stage resolves ownerReferences."""
    explicit = next((labels[key] for key in SERVICE_LABELS if labels.get(key)), None)
    if explicit:
        return explicit
    pod = labels.get("pod", "")
    match = _DEPLOYMENT_POD.match(pod) or _STATEFUL_POD.match(pod)
    return match.group("name") if match else labels.get("container") or None
