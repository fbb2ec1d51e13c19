"""Small Kubernetes objects for analyzer tests, built as the API returns them and turned into
views by the same code the gatherers use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.context import kube_facts as facts
from bot.context.model import AlertView, Context, ObjectRef, Subject

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def stamp(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def container(name="app", *, ready=True, restarts=0, waiting=None, message=None, last=None, last_exit=None,
              last_minutes_ago=3, memory_limit="512Mi", cpu_limit="500m") -> tuple[dict, dict]:
    spec = {"name": name, "image": f"registry.example/{name}:1.0",
            "resources": {"limits": {"memory": memory_limit, "cpu": cpu_limit}}}
    state = {"waiting": {"reason": waiting, "message": message}} if waiting else {"running": {"startedAt": stamp(1)}}
    status: dict[str, Any] = {"name": name, "ready": ready, "restartCount": restarts, "state": state,
                              "image": spec["image"]}
    if last:
        status["lastState"] = {"terminated": {"reason": last, "exitCode": last_exit,
                                              "finishedAt": stamp(last_minutes_ago), "startedAt": stamp(5)}}
    return spec, status


def pod(name: str, namespace="shop", owner=("ReplicaSet", "web-7d9f"), *, phase="Running", ready=True,
        containers=None, node="worker-1", labels=None) -> dict:
    containers = containers or [container(ready=ready)]
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp(60),
                                        "labels": labels or {"app": "web", "pod-template-hash": "7d9f"},
                                        "ownerReferences": [{"kind": owner[0], "name": owner[1], "controller": True}]},
            "spec": {"nodeName": node, "containers": [spec for spec, _ in containers]},
            "status": {"phase": phase, "containerStatuses": [status for _, status in containers],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def deployment(name="web", namespace="shop", replicas=2, available=2, labels=None) -> dict:
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp(9000)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels or {"app": name}},
                     "template": {"metadata": {"labels": labels or {"app": name}}, "spec": {"containers": []}}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available}}


def context(*, alerts: list[AlertView], pods: list[dict] = (), workloads: list[dict] = (), events=(),
            focus: list[ObjectRef] = ()) -> Context:
    workload_of = {ObjectRef("ReplicaSet", "shop", "web-7d9f"): ObjectRef("Deployment", "shop", "web")}
    ctx = Context(now=NOW, cluster=None, alerts=alerts,
                  subject=Subject(namespaces=["shop"], pods=[], workloads=list(focus), nodes=[], claims=[], other=[]),
                  incident_start=NOW - timedelta(minutes=20), focus=list(focus))
    ctx.pods = [facts.pod_view(p, workload_of) for p in pods]
    ctx.workloads = [facts.workload_view(w) for w in workloads]
    ctx.events = [facts.event_view(e, ctx.incident_start) for e in events]
    return ctx


def alert(name="KubePodCrashLooping", status="firing", minutes_ago=5, ended_minutes_ago=None, **labels) -> AlertView:
    return AlertView(name, status, {"alertname": name, "namespace": "shop", **labels}, {},
                     NOW - timedelta(minutes=minutes_ago),
                     NOW - timedelta(minutes=ended_minutes_ago) if ended_minutes_ago is not None else None)


def event(reason: str, message: str, involved=("Pod", "web-7d9f-a"), type_="Warning", count=1, first=10, last=1):
    return {"involvedObject": {"kind": involved[0], "name": involved[1], "namespace": "shop"}, "type": type_,
            "reason": reason, "message": message, "count": count, "firstTimestamp": stamp(first),
            "lastTimestamp": stamp(last)}
