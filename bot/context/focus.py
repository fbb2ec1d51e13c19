"""Which workloads an investigation is about, and which of their pods are in trouble. Pure.

The focus starts from what the alerts name and follows ownership the way a person would:
an alerted pod leads to its Deployment (through the ReplicaSet), an alerted HPA to its
target, an alerted PVC to the workloads mounting it, an alerted quota or a bare namespace to
the workloads there that are short of pods. Alert labels never add anything that does not
exist in the snapshot.
"""

from __future__ import annotations

from datetime import datetime

from bot.context.dependencies import backends_of
from bot.context.kube_facts import controller_of
from bot.context.model import Context, ObjectRef, PodView

BENIGN_WAITING = {"ContainerCreating", "PodInitializing"}


def pod_unhealthy(pod: PodView, since: datetime) -> bool:
    """In trouble now, or restarted during the incident."""
    if pod.phase in ("Pending", "Failed", "Unknown") or pod.reason in ("Evicted", "NodeLost", "UnexpectedAdmissionError"):
        return True
    for c in pod.containers:
        if c.state == "waiting" and c.reason not in BENIGN_WAITING:
            return True
        if c.state == "terminated" and c.reason not in ("Completed",) and not c.init:
            return True
        if c.last_finished_at and c.last_finished_at >= since and c.last_reason not in (None, "Completed"):
            return True
    return pod.phase == "Running" and not pod.ready and not pod.deleting


def _add(items: list[ObjectRef], ref: ObjectRef | None) -> None:
    if ref is not None and ref not in items:
        items.append(ref)


def _short_of_pods(ctx: Context, ref: ObjectRef) -> bool:
    workload = ctx.workload(ref)
    if workload is None:
        return False
    if ref.kind == "Job":
        return bool(workload.updated)  # failed pods
    if ref.kind == "CronJob":
        return False
    return workload.desired is not None and (workload.available or 0) < workload.desired


def find_focus(ctx: Context) -> list[ObjectRef]:
    subject = ctx.subject
    known = {w.ref for w in ctx.workloads}
    focus: list[ObjectRef] = []
    for ref in subject.workloads:
        if ref in known:
            _add(focus, ref)
    pods = {p.ref: p for p in ctx.pods}
    for ref in subject.pods:
        pod = pods.get(ref)
        if pod is not None and pod.workload in known:
            _add(focus, pod.workload)
    for ref in subject.other:
        if ref.kind == "Service":  # located from an alert's labels: the workloads behind it
            service = next((s for s in ctx.services if s.ref == ref), None)
            for backend in backends_of(ctx, service) if service is not None else []:
                _add(focus, backend)
        if ref.kind == "HorizontalPodAutoscaler":
            hpa = next((h for h in ctx.hpas if h.ref == ref), None)
            if hpa is not None and hpa.target in known:
                _add(focus, hpa.target)
    for api in ctx.api_services:
        service = next((s for s in ctx.services if s.ref == api.service), None)
        if service is not None:
            for ref in backends_of(ctx, service):
                _add(focus, ref)
    for claim in subject.claims:
        for pod in ctx.pods:
            mounts = any(v.kind == "persistentVolumeClaim" and v.source == claim.name for v in pod.volumes)
            if pod.ref.namespace == claim.namespace and mounts and pod.workload in known:
                _add(focus, pod.workload)
    if not focus:
        for namespace in subject.namespaces:
            for pod in ctx.pods:
                if pod.ref.namespace == namespace and pod_unhealthy(pod, ctx.incident_start) and pod.workload in known:
                    _add(focus, pod.workload)
            for workload in ctx.workloads:
                if workload.ref.namespace == namespace and _short_of_pods(ctx, workload.ref):
                    _add(focus, workload.ref)
    return focus


def focus_pods(ctx: Context, focus: list[ObjectRef]) -> list[PodView]:
    """Pods of the focus workloads (a CronJob's through its Jobs), plus pods the alerts name."""
    wanted = set(focus)
    wanted |= {w.ref for w in ctx.workloads if w.ref.kind == "Job" and controller_of(w.raw) in wanted}
    named = set(ctx.subject.pods)
    return [p for p in ctx.pods if p.workload in wanted or p.owner in wanted or p.ref in named]
