"""Raw Kubernetes objects (dicts in the API's shape) to the typed views analyzers read. Pure.

Nothing here calls the API; every function tolerates missing fields, because objects come
from many server versions and controllers, and a partial object must still yield what it can.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.context.model import (
    ClaimView,
    ContainerView,
    EventView,
    HpaView,
    LimitRangeView,
    NetworkPolicyView,
    NodeView,
    ObjectRef,
    PodView,
    QuotaView,
    ServiceView,
    VolumeView,
    WorkloadView,
)

STALE_EVENT_MARGIN = timedelta(minutes=30)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def ref_of(obj: dict[str, Any], kind: str | None = None) -> ObjectRef:
    meta = _meta(obj)
    return ObjectRef(kind or obj.get("kind") or "?", meta.get("namespace"), meta.get("name", "?"))


def controller_of(obj: dict[str, Any]) -> ObjectRef | None:
    """The owner reference marked `controller: true` (else the first one)."""
    owners = _meta(obj).get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return None
    namespace = _meta(obj).get("namespace") if owner.get("kind") != "Node" else None
    return ObjectRef(owner.get("kind", "?"), namespace, owner.get("name", "?"))


# markers a GitOps controller leaves on what it applies: (where, key, controller)
GITOPS_MARKERS = (
    ("annotations", "argocd.argoproj.io/tracking-id", "Argo CD"),
    ("labels", "argocd.argoproj.io/instance", "Argo CD"),
    ("labels", "kustomize.toolkit.fluxcd.io/name", "Flux"),
    ("labels", "helm.toolkit.fluxcd.io/name", "Flux"),
)
GITOPS_MANAGERS = {"argocd-controller": "Argo CD", "argocd-application-controller": "Argo CD",
                   "kustomize-controller": "Flux", "helm-controller": "Flux"}


def gitops_owner(obj: dict[str, Any]) -> str | None:
    """Which GitOps controller applies this object ("Argo CD (tracking-id ...)"), if any."""
    meta = _meta(obj)
    for where, key, controller in GITOPS_MARKERS:
        value = (meta.get(where) or {}).get(key)
        if value:
            return f"{controller} ({key}={value})"
    for entry in meta.get("managedFields") or []:
        controller = GITOPS_MANAGERS.get(entry.get("manager", ""))
        if controller:
            return f"{controller} (field manager {entry['manager']})"
    return None


def conditions_of(obj: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
    return {c.get("type", "?"): (str(c.get("status", "Unknown")), c.get("reason"), c.get("message"))
            for c in (obj.get("status") or {}).get("conditions") or []}


def _container_view(spec: dict[str, Any], status: dict[str, Any] | None, init: bool) -> ContainerView:
    status = status or {}
    state = status.get("state") or {}
    kind = next((k for k in ("running", "waiting", "terminated") if k in state), "unknown")
    current = state.get(kind) or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    resources = spec.get("resources") or {}
    return ContainerView(
        name=spec.get("name", "?"), image=status.get("image") or spec.get("image", ""), init=init,
        ready=bool(status.get("ready")), restarts=int(status.get("restartCount") or 0), state=kind,
        reason=current.get("reason"), message=current.get("message"), exit_code=current.get("exitCode"),
        started_at=parse_time(current.get("startedAt")), finished_at=parse_time(current.get("finishedAt")),
        last_reason=last.get("reason"), last_exit_code=last.get("exitCode"), last_message=last.get("message"),
        last_started_at=parse_time(last.get("startedAt")), last_finished_at=parse_time(last.get("finishedAt")),
        limits={k: str(v) for k, v in (resources.get("limits") or {}).items()},
        requests={k: str(v) for k, v in (resources.get("requests") or {}).items()},
        mounts={m.get("mountPath", ""): m.get("name", "") for m in spec.get("volumeMounts") or []},
    )


def _volume_view(volume: dict[str, Any]) -> VolumeView:
    name = volume.get("name", "?")
    if "secret" in volume:
        return VolumeView(name, "secret", (volume["secret"] or {}).get("secretName"))
    if "configMap" in volume:
        return VolumeView(name, "configMap", (volume["configMap"] or {}).get("name"))
    if "persistentVolumeClaim" in volume:
        return VolumeView(name, "persistentVolumeClaim", (volume["persistentVolumeClaim"] or {}).get("claimName"))
    for kind in ("emptyDir", "projected", "hostPath"):
        if kind in volume:
            return VolumeView(name, kind, None)
    return VolumeView(name, "other", None)


def pod_view(pod: dict[str, Any], workload_of: dict[ObjectRef, ObjectRef]) -> PodView:
    """`workload_of` maps a controller (ReplicaSet, Job) to its own owner (Deployment, CronJob)."""
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    owner = controller_of(pod)
    # a bare pod (no controller) is its own workload: it is the object a person edits
    workload = workload_of.get(owner, owner) if owner else ref_of(pod, "Pod")
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    init_statuses = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
    containers = [_container_view(c, init_statuses.get(c.get("name")), True) for c in spec.get("initContainers") or []]
    containers += [_container_view(c, statuses.get(c.get("name")), False) for c in spec.get("containers") or []]
    labels = meta.get("labels") or {}
    return PodView(
        ref=ref_of(pod, "Pod"), phase=status.get("phase", "Unknown"), reason=status.get("reason"),
        message=status.get("message"), node=spec.get("nodeName"), owner=owner, workload=workload,
        revision_hash=labels.get("pod-template-hash") or labels.get("controller-revision-hash"),
        created_at=parse_time(meta.get("creationTimestamp")), deleting=bool(meta.get("deletionTimestamp")),
        conditions=conditions_of(pod), containers=containers,
        volumes=[_volume_view(v) for v in spec.get("volumes") or []], labels=labels, spec=spec,
        ip=status.get("podIP"),
    )


def workload_view(obj: dict[str, Any]) -> WorkloadView:
    """A Deployment, StatefulSet, DaemonSet, Job, CronJob, a ReplicaSet that no Deployment owns,
    or a bare Pod (its own template, one replica)."""
    kind = obj.get("kind") or "?"
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        ready = int(conditions_of(obj).get("Ready", ("False",))[0] == "True")
        return WorkloadView(
            ref=ref_of(obj), desired=1, ready=ready, available=ready, updated=None, conditions=conditions_of(obj),
            created_at=parse_time(_meta(obj).get("creationTimestamp")),
            template={"metadata": _meta(obj), "spec": spec}, selector={},
            annotations=_meta(obj).get("annotations") or {}, raw=obj)
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    else:
        template = spec.get("template") or {}
    if kind == "DaemonSet":
        desired, ready = status.get("desiredNumberScheduled"), status.get("numberReady")
        available, updated = status.get("numberAvailable"), status.get("updatedNumberScheduled")
    elif kind == "Job":
        desired, ready = spec.get("completions", 1), status.get("succeeded")
        available, updated = status.get("active"), status.get("failed")
    else:
        desired, ready = spec.get("replicas", 1 if kind != "CronJob" else None), status.get("readyReplicas")
        available, updated = status.get("availableReplicas"), status.get("updatedReplicas")
    return WorkloadView(
        ref=ref_of(obj), desired=desired, ready=ready or 0 if desired is not None else ready,
        available=available, updated=updated, conditions=conditions_of(obj),
        created_at=parse_time(_meta(obj).get("creationTimestamp")), template=template,
        selector=((spec.get("selector") or {}).get("matchLabels") or {}),
        annotations=_meta(obj).get("annotations") or {}, raw=obj,
    )


def network_policy_view(policy: dict[str, Any]) -> NetworkPolicyView:
    spec = policy.get("spec") or {}
    types = list(spec.get("policyTypes") or [])
    if not types:  # the API server's defaulting: Ingress always, Egress when egress rules exist
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return NetworkPolicyView(ref=ref_of(policy, "NetworkPolicy"), pod_selector=spec.get("podSelector") or {},
                             policy_types=types, ingress=list(spec.get("ingress") or []),
                             egress=list(spec.get("egress") or []),
                             created_at=parse_time(_meta(policy).get("creationTimestamp")))


def event_view(event: dict[str, Any], incident_start: datetime) -> EventView:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    kind = involved.get("kind", "?")
    namespace = involved.get("namespace") if kind != "Node" else None
    last = parse_time(event.get("lastTimestamp")) or parse_time(event.get("eventTime")) \
        or parse_time((event.get("series") or {}).get("lastObservedTime"))
    first = parse_time(event.get("firstTimestamp")) or last
    return EventView(
        involved=ObjectRef(kind, namespace, involved.get("name", "?")), type=event.get("type", "Normal"),
        reason=event.get("reason", ""), message=event.get("message") or event.get("note") or "",
        count=int(event.get("count") or (event.get("series") or {}).get("count") or 1),
        first_at=first, last_at=last,
        stale=bool(last and last < incident_start - STALE_EVENT_MARGIN),
    )


def node_view(node: dict[str, Any]) -> NodeView:
    status, spec = node.get("status") or {}, node.get("spec") or {}
    conditions = {c.get("type", "?"): (str(c.get("status", "Unknown")), c.get("reason"), c.get("message"),
                                       parse_time(c.get("lastTransitionTime")))
                  for c in status.get("conditions") or []}
    return NodeView(
        name=_meta(node).get("name", "?"), conditions=conditions, taints=list(spec.get("taints") or []),
        unschedulable=bool(spec.get("unschedulable")),
        allocatable={k: str(v) for k, v in (status.get("allocatable") or {}).items()},
        labels=_meta(node).get("labels") or {},
        addresses=[str(a["address"]) for a in status.get("addresses") or [] if isinstance(a, dict) and a.get("address")],
    )


def claim_view(claim: dict[str, Any], classes: dict[str, dict[str, Any]] | None) -> ClaimView:
    spec, status = claim.get("spec") or {}, claim.get("status") or {}
    name = spec.get("storageClassName")
    sc = (classes or {}).get(name) if name else None
    return ClaimView(
        ref=ref_of(claim, "PersistentVolumeClaim"), phase=status.get("phase", "Unknown"), storage_class=name,
        storage_class_exists=None if classes is None or not name else sc is not None,
        expandable=bool(sc.get("allowVolumeExpansion")) if sc else None,
        requested=str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "") or None,
        capacity=str((status.get("capacity") or {}).get("storage") or "") or None, volume=spec.get("volumeName"),
    )


def quota_view(quota: dict[str, Any]) -> QuotaView:
    status = quota.get("status") or {}
    return QuotaView(ref_of(quota, "ResourceQuota"), {k: str(v) for k, v in (status.get("hard") or {}).items()},
                     {k: str(v) for k, v in (status.get("used") or {}).items()})


def limit_range_view(obj: dict[str, Any]) -> LimitRangeView:
    return LimitRangeView(ref_of(obj, "LimitRange"), list((obj.get("spec") or {}).get("limits") or []))


def hpa_view(hpa: dict[str, Any]) -> HpaView:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    target = spec.get("scaleTargetRef") or {}
    namespace = _meta(hpa).get("namespace")
    return HpaView(
        ref=ref_of(hpa, "HorizontalPodAutoscaler"),
        target=ObjectRef(target["kind"], namespace, target["name"]) if target.get("kind") and target.get("name")
        else None,
        min_replicas=spec.get("minReplicas"), max_replicas=spec.get("maxReplicas"),
        current=status.get("currentReplicas"), desired=status.get("desiredReplicas"), conditions=conditions_of(hpa),
    )


def service_view(service: dict[str, Any], endpoints: dict[str, Any] | None) -> ServiceView:
    spec = service.get("spec") or {}
    ready = not_ready = None
    if endpoints is not None:
        ready = sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])
        not_ready = sum(len(s.get("notReadyAddresses") or []) for s in endpoints.get("subsets") or [])
    return ServiceView(
        ref=ref_of(service, "Service"), selector=dict(spec.get("selector") or {}),
        ports=[int(p.get("port")) for p in spec.get("ports") or [] if isinstance(p.get("port"), int)],
        ready_endpoints=ready, not_ready_endpoints=not_ready, external_name=spec.get("externalName"),
        cluster_ip=spec.get("clusterIP") if spec.get("clusterIP") not in (None, "None") else None,
        target_ports={int(p["port"]): p.get("targetPort", p["port"]) for p in spec.get("ports") or []
                      if isinstance(p.get("port"), int)},
    )


def parse_quantity(text: str | None) -> float | None:
    """A Kubernetes quantity ("512Mi", "250m", "1.5", "2G") as a float in base units."""
    if not text:
        return None
    text = str(text).strip()
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3, "n": 1e-9,
                "u": 1e-6}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * suffixes[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def bytes_quantity(value: float) -> str:
    """Bytes as the Kubernetes quantity people write: whole Gi when exact, else Mi."""
    mebibytes = int(-(-value // 2**20))  # round up
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


def cpu_quantity(cores: float) -> str:
    """Cores as a quantity: whole cores when exact, else millicores."""
    millicores = int(round(cores * 1000))
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"
