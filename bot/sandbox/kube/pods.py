"""Pods as the controllers create them: template hashing, scheduling and the pod's fate.

The sandbox has no kubelet, so a new pod's status is predicted:
- a pod whose spec is known to fail (see `fate`) fails the same way;
- otherwise it is Running and Ready on the least-loaded schedulable node (cordoned, NotReady,
  tainted or selector-mismatched nodes are skipped; with no schedulable node it stays Pending and
  Unschedulable; a cluster that holds no Node objects at all runs pods without a node).

Everything here is a pure function of its inputs plus the `Naming` it is given, so the same
requests always produce the same pods.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from bot.sandbox.kube.fate import FailureMemory, failure_profile
from bot.sandbox.kube.store import Naming, safe_encode

HASH_LABEL = "pod-template-hash"
DEFAULT_TOLERATIONS: tuple[Mapping[str, Any], ...] = (
    MappingProxyType(
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    ),
    MappingProxyType(
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    ),
)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def normalized_template(template: Mapping[str, Any] | None) -> dict[str, Any]:
    """A pod template without the pod-template-hash label and null fields, for comparisons."""
    result = _drop_nulls(copy.deepcopy(dict(template or {})))
    labels = (result.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            result["metadata"].pop("labels")
    if "metadata" in result and not result["metadata"]:
        result.pop("metadata")
    return result


def _drop_nulls(value: Any) -> Any:
    """Drop null, empty-map and empty-list fields: a client round trip may add or remove them."""
    if isinstance(value, dict):
        cleaned = {k: _drop_nulls(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def templates_equal(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal ignoring the pod-template-hash label, as the deployment controller compares them."""
    return canonical(normalized_template(a)) == canonical(normalized_template(b))


def template_hash(template: Mapping[str, Any] | None, collision_count: int = 0) -> str:
    """A stable short hash of a pod template, in Kubernetes' safe alphabet (like `7d9f8b6c5`)."""
    text = canonical(normalized_template(template)) + f"/{collision_count}"
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    return safe_encode(number)


def is_active(pod: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def restart_count(pod: Mapping[str, Any]) -> int:
    return sum(
        int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


# Scheduling -------------------------------------------------------------------------------------


def _node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions")
    if not conditions:
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration.get("key") == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def _unfit_reason(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> str | None:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return "node(s) were unschedulable"
    if not _node_ready(node):
        return "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    tolerations = list(pod_spec.get("tolerations") or [])
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return "node(s) didn't match Pod's node affinity/selector"
    return None


def choose_node(
    nodes: list[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], pod_spec: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """(node name, None) for the least-loaded fitting node; (None, message) when none fits.

    (None, None) when the cluster holds no nodes: the sandbox then runs pods without placement.
    """
    if not nodes:
        return None, None
    load: dict[str, int] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and is_active(pod):
            load[node_name] = load.get(node_name, 0) + 1
    reasons: dict[str, int] = {}
    fitting: list[str] = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        reason = _unfit_reason(node, pod_spec)
        if reason is None:
            fitting.append(name)
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    if fitting:
        return min(fitting, key=lambda n: (load.get(n, 0), n)), None
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return (
        None,
        f"0/{len(nodes)} nodes are available: {summary}. preemption: 0/{len(nodes)} nodes are available: {len(nodes)} Preemption is not helpful for scheduling.",
    )


def node_internal_ip(node: Mapping[str, Any] | None) -> str | None:
    for address in ((node or {}).get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


# Building pods ----------------------------------------------------------------------------------


def qos_class(pod_spec: Mapping[str, Any]) -> str:
    containers = list(pod_spec.get("containers") or [])
    requests_any = limits_any = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        requests_any = requests_any or bool(requests)
        limits_any = limits_any or bool(limits)
        for resource in ("cpu", "memory"):
            if resource not in limits or requests.get(resource, limits[resource]) != limits[resource]:
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any or limits_any else "BestEffort"


def _condition(
    kind: str, status: str, now: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _healthy_status(spec: Mapping[str, Any], now: str, naming: Naming, host_ip: str | None) -> dict[str, Any]:
    pod_ip = naming.pod_ip()
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [
            _condition("PodReadyToStartContainers", "True", now),
            _condition("Initialized", "True", now),
            _condition("Ready", "True", now),
            _condition("ContainersReady", "True", now),
            _condition("PodScheduled", "True", now),
        ],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "qosClass": qos_class(spec),
        "containerStatuses": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": "",
                "containerID": f"containerd://{naming.hex(64)}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
                "lastState": {},
            }
            for c in spec.get("containers") or []
        ],
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": "",
                "containerID": f"containerd://{naming.hex(64)}",
                "ready": True,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
                },
                "lastState": {},
            }
            for c in spec["initContainers"]
        ]
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    return status


def _restamp(value: Any, now: str, replacements: Mapping[str, str]) -> Any:
    """Copy a status fragment with fresh timestamps and the new pod's name and uid in messages."""
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("startedAt", "finishedAt", "lastTransitionTime", "startTime") and item:
                result[key] = now
            else:
                result[key] = _restamp(item, now, replacements)
        return result
    if isinstance(value, list):
        return [_restamp(v, now, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements.items():
            if old:
                value = value.replace(old, new)
        return value
    return value


def _copied_status(
    reference: Mapping[str, Any], name: str, uid: str, now: str, naming: Naming, host_ip: str | None
) -> dict[str, Any]:
    ref_meta = reference.get("metadata") or {}
    replacements = {ref_meta.get("name", ""): name, ref_meta.get("uid", ""): uid}
    status = _restamp(copy.deepcopy(reference.get("status") or {}), now, replacements)
    for field in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(field) or []:
            cs["restartCount"] = min(int(cs.get("restartCount") or 0), 1)
            if cs.get("containerID"):
                cs["containerID"] = f"containerd://{naming.hex(64)}"
    for field in ("podIP", "podIPs", "hostIP", "hostIPs", "nominatedNodeName"):
        status.pop(field, None)
    if status.get("phase") != "Pending":
        pod_ip = naming.pod_ip()
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
        if host_ip:
            status["hostIP"] = host_ip
            status["hostIPs"] = [{"ip": host_ip}]
    return status


def build_pod(
    *,
    name: str,
    namespace: str,
    template: Mapping[str, Any],
    owner: Mapping[str, Any],
    now: str,
    naming: Naming,
    nodes: list[Mapping[str, Any]],
    namespace_pods: list[Mapping[str, Any]],
    generate_name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    spec_overrides: Mapping[str, Any] | None = None,
    memory: FailureMemory | None = None,
) -> dict[str, Any]:
    """A pod for `owner` from `template`, scheduled and given its predicted status (module docstring)."""
    template_meta = template.get("metadata") or {}
    owner_meta = owner.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    labels.update(extra_labels or {})
    uid = naming.uid()
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "creationTimestamp": now,
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": owner.get("apiVersion"),
                "kind": owner.get("kind"),
                "name": owner_meta.get("name"),
                "uid": owner_meta.get("uid"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if generate_name:
        meta["generateName"] = generate_name
    if template_meta.get("annotations"):
        meta["annotations"] = dict(template_meta["annotations"])
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    spec.update(copy.deepcopy(dict(spec_overrides or {})))
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    tolerations = list(spec.get("tolerations") or [])
    for default in DEFAULT_TOLERATIONS:
        if not any(
            t.get("key") == default["key"] and t.get("effect") == default["effect"] for t in tolerations
        ):
            tolerations.append(dict(default))
    spec["tolerations"] = tolerations

    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    reference = memory.reference(namespace, spec, namespace_pods, owner_meta.get("uid")) if memory else None
    start_pod(pod, now=now, naming=naming, nodes=nodes, namespace_pods=namespace_pods, reference=reference)
    return pod


def start_pod(
    pod: dict[str, Any],
    *,
    now: str,
    naming: Naming,
    nodes: list[Mapping[str, Any]],
    namespace_pods: list[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
) -> None:
    """Schedule `pod` (unless it already names a node) and set its predicted status, in place.

    `reference`: a failing pod with the same spec (see `fate`) whose failure the new pod repeats.
    """
    meta = pod.setdefault("metadata", {})
    spec = pod.setdefault("spec", {})
    profile = failure_profile(reference) if reference is not None else None
    node_name: str | None = spec.get("nodeName")
    unschedulable_message: str | None = None
    if profile == "unschedulable":
        node_name = None
    elif not node_name:
        node_name, unschedulable_message = choose_node(nodes, namespace_pods, spec)
    node = next((n for n in nodes if (n.get("metadata") or {}).get("name") == node_name), None)
    host_ip = node_internal_ip(node)
    if node_name:
        spec["nodeName"] = node_name
    else:
        spec.pop("nodeName", None)
    if reference is not None and profile is not None:
        pod["status"] = _copied_status(
            reference, meta.get("name", ""), meta.get("uid", ""), now, naming, host_ip
        )
    elif unschedulable_message is not None:
        pod["status"] = {
            "phase": "Pending",
            "conditions": [_condition("PodScheduled", "False", now, "Unschedulable", unschedulable_message)],
            "qosClass": qos_class(spec),
        }
    else:
        pod["status"] = _healthy_status(spec, now, naming, host_ip)


def deletion_rank(pod: Mapping[str, Any]) -> tuple[int, int, int, int, str, str]:
    """Sort key: pods a ReplicaSet deletes first come first (unscheduled, pending, unready, restarts, newest)."""
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    return (
        1 if spec.get("nodeName") else 0,
        phase_rank,
        1 if is_ready(pod) else 0,
        -restart_count(pod),
        _invert(meta.get("creationTimestamp") or ""),
        meta.get("name", ""),
    )


def _invert(text: str) -> str:
    """Make a lexicographic sort on timestamps run newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)
