"""What the alerts are about: Kubernetes references read from alert labels. Pure.

Label conventions are those of kube-state-metrics, cAdvisor, kubelet and node-exporter as the
kubernetes-mixin rules keep them (`namespace`, `pod`, `container`, `deployment`,
`statefulset`, `daemonset`, `job_name`, `cronjob`, `horizontalpodautoscaler`,
`persistentvolumeclaim`, `node`, `resourcequota`). Labels are untrusted: a value that is not a
valid Kubernetes name is ignored rather than used in an API path.

Caveat handled here: on alerts computed from kube-state-metrics or node-exporter, a `pod` label
may name the exporter's own pod (a scrape target label) rather than the subject, under a Helm
release prefix too (`kube-prometheus-stack-prometheus-node-exporter-8t2rq`). Such values are
dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.alerts.classify import AlertView as ClassifyView
from bot.alerts.classify import is_heartbeat
from bot.context.model import AlertView, ObjectRef, Subject

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_WORKLOAD_LABELS = (
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("job_name", "Job"),
    ("cronjob", "CronJob"),
)
# labels that lead to an object without naming it by the mixin's conventions (application
# metrics, blackbox probes, Prometheus targets): `bot.context.locate` maps them
# (Prometheus targets, blackbox probes, Sloth SLOs, OpenTelemetry and Istio metrics)
HINT_LABELS = ("service", "job", "app", "app_kubernetes_io_name", "k8s_app", "application", "service_name",
               "sloth_service", "k8s_deployment_name", "destination_workload", "destination_service_name",
               "deployment", "container", "instance", "target", "url")
# where a namespace hides when the scrape renamed it or the metric comes from OpenTelemetry / Istio
NAMESPACE_LABELS = ("namespace", "exported_namespace", "k8s_namespace_name", "destination_workload_namespace")
_EXPORTER_PODS = ("kube-state-metrics", "prometheus-node-exporter", "node-exporter", "blackbox-exporter")
# The mixin's alerts fire after their `for:` window (mostly 15 minutes): the problem began before.
RULE_FOR_WINDOW = timedelta(minutes=15)


def valid_name(value: str | None) -> bool:
    return bool(value) and len(value) <= 253 and bool(_NAME.fullmatch(value))


def _append(items: list, item) -> None:
    if item not in items:
        items.append(item)


def resolve_subject(alerts: Iterable[AlertView]) -> Subject:
    """The namespaces, pods, workloads, nodes and claims the alerts name (firing ones first)."""
    subject = Subject(namespaces=[], pods=[], workloads=[], nodes=[], claims=[], other=[])
    ordered = sorted(alerts, key=lambda a: a.status != "firing")
    if ordered and all(is_heartbeat(ClassifyView(a.name, a.status, a.labels, a.annotations)) for a in ordered):
        subject.heartbeat = True
        return subject
    for alert in ordered:
        labels = alert.labels
        namespace = next((labels[k] for k in NAMESPACE_LABELS if valid_name(labels.get(k))), None)
        if namespace:
            _append(subject.namespaces, namespace)
            pod = labels.get("pod")
            if valid_name(pod) and not any(exporter in pod for exporter in _EXPORTER_PODS):
                _append(subject.pods, ObjectRef("Pod", namespace, pod))
            for label, kind in _WORKLOAD_LABELS:
                if valid_name(labels.get(label)):
                    _append(subject.workloads, ObjectRef(kind, namespace, labels[label]))
            if valid_name(labels.get("persistentvolumeclaim")):
                _append(subject.claims, ObjectRef("PersistentVolumeClaim", namespace, labels["persistentvolumeclaim"]))
            if valid_name(labels.get("horizontalpodautoscaler")):
                _append(subject.other, ObjectRef("HorizontalPodAutoscaler", namespace,
                                                 labels["horizontalpodautoscaler"]))
            if valid_name(labels.get("resourcequota")):
                _append(subject.other, ObjectRef("ResourceQuota", namespace, labels["resourcequota"]))
        if alert.name.startswith("KubeAggregatedAPI") and labels.get("name") and len(labels["name"]) <= 253 \
                and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", labels["name"]):
            _append(subject.other, ObjectRef("APIService", None, labels["name"]))
        node = labels.get("node")
        if valid_name(node):
            _append(subject.nodes, node)
        for label in HINT_LABELS:
            value = labels.get(label)
            if value and len(value) <= 253 and value not in subject.hints.get(label, []):
                subject.hints.setdefault(label, []).append(value)
    return subject


def incident_start(alerts: Iterable[AlertView], now: datetime) -> datetime:
    """When the trouble most likely began: the earliest firing alert's start minus the rules'
    usual `for:` window (all alerts when none fires), never after `now`."""
    alerts = list(alerts)
    firing = [a.starts_at for a in alerts if a.status == "firing" and a.starts_at]
    starts = firing or [a.starts_at for a in alerts if a.starts_at]
    earliest = min(starts, default=now)
    return min(earliest, now) - RULE_FOR_WINDOW
