"""Subresources: `scale` (a real autoscaling/v1 Scale), pod `eviction` and pod `log`.

- Reading `.../scale` answers a `Scale` built from the workload; writing it (PUT or any patch
  format) changes only `spec.replicas` of the workload, checked against the workload's
  resourceVersion, and the controllers then scale ReplicaSets and pods.
- An eviction deletes the pod unless a PodDisruptionBudget selecting it would drop below its
  budget, which answers 429 TooManyRequests as a real API server does. Budgets are evaluated on the
  live pods (Ready pods are healthy; expected pods are the pods the budget selects).
- The log subresource answers plain text (see `logs`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from bot.sandbox.kube.cluster import SandboxCluster
from bot.sandbox.kube.controller import pods_selected_by
from bot.sandbox.kube.errors import ApiError, bad_request, invalid, too_many_requests
from bot.sandbox.kube.logs import LogOptions, read_log
from bot.sandbox.kube.patch import apply_patch
from bot.sandbox.kube.pods import is_active, is_ready
from bot.sandbox.kube.resources import ResourceType
from bot.sandbox.kube.selectors import match_label_selector, selector_to_string
from bot.sandbox.kube.verbs import commit_update, remove, require

_SCALE_RT = ResourceType(group="autoscaling", version="v1", kind="Scale", plural="scale", namespaced=True)


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale view of a Deployment, StatefulSet or ReplicaSet."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    scale_meta = {
        k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
    }
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": int((obj.get("status") or {}).get("replicas") or 0),
            "selector": selector_to_string(spec.get("selector")),
        },
    }


def read_scale(cluster: SandboxCluster, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    return scale_of(require(cluster, rt, namespace, name))


def write_scale(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    body: Any,
    content_type: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """PUT (content_type None) or PATCH of the Scale; returns the resulting Scale."""
    current = require(cluster, rt, namespace, name)
    scale = apply_patch(scale_of(current), body, content_type) if content_type is not None else body
    if not isinstance(scale, dict):
        raise bad_request("the body of the request must be a Scale object")
    meta = scale.get("metadata") or {}
    if meta.get("name") not in (None, name):
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
        )
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            _SCALE_RT, name, "spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0"
        )
    updated = copy.deepcopy(current)
    updated.setdefault("spec", {})["replicas"] = replicas
    updated["metadata"]["resourceVersion"] = meta.get("resourceVersion") or current["metadata"].get(
        "resourceVersion"
    )
    result = commit_update(cluster, rt, current, updated, None, dry_run)
    return scale_of(result)


# Eviction ---------------------------------------------------------------------------------------


def _desired_healthy(pdb: dict[str, Any], expected: int) -> int:
    spec = pdb.get("spec") or {}
    if spec.get("minAvailable") is not None:
        value = spec["minAvailable"]
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(float(value[:-1]) * expected / 100)
        return int(value)
    if spec.get("maxUnavailable") is not None:
        value = spec["maxUnavailable"]
        if isinstance(value, str) and value.endswith("%"):
            return expected - math.ceil(float(value[:-1]) * expected / 100)
        return expected - int(value)
    return expected


def _check_budgets(cluster: SandboxCluster, pod: dict[str, Any]) -> None:
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    pods = [p for p in cluster.store.items(("", "pods"), namespace) if is_active(p)]
    for pdb in cluster.store.items(("policy", "poddisruptionbudgets"), namespace):
        selector = (pdb.get("spec") or {}).get("selector")
        if not match_label_selector(selector, meta.get("labels")):
            continue
        selected = pods_selected_by(pods, selector)
        healthy = sum(1 for p in selected if is_ready(p))
        desired = _desired_healthy(pdb, len(selected))
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
        if not is_ready(pod) and (policy == "AlwaysAllow" or healthy >= desired):
            continue
        if healthy - desired > 0:
            continue
        pdb_name = (pdb.get("metadata") or {}).get("name")
        raise too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently",
                }
            ],
        )


def evict(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    body: Any,
    dry_run: bool,
) -> dict[str, Any]:
    """POST policy/v1 Eviction: delete the pod unless a disruption budget forbids it (429)."""
    pod = require(cluster, rt, namespace, name)
    if body is not None and not isinstance(body, dict):
        raise bad_request("the body of the request must be an Eviction object")
    eviction_name = ((body or {}).get("metadata") or {}).get("name")
    if eviction_name not in (None, name):
        raise bad_request(f"name in URL does not match name in Eviction object: {eviction_name} != {name}")
    _check_budgets(cluster, pod)
    if not dry_run:
        remove(cluster, rt, pod)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def eviction_dry_run(body: Any) -> bool:
    """Whether the Eviction's deleteOptions ask for a dry run."""
    options = ((body or {}).get("deleteOptions") or {}) if isinstance(body, dict) else {}
    dry = options.get("dryRun") or []
    if dry and dry != ["All"]:
        raise ApiError(400, "BadRequest", f'dryRun: Unsupported value: "{dry}": supported values: "All"')
    return dry == ["All"]


def pod_log(
    cluster: SandboxCluster, rt: ResourceType, namespace: str | None, name: str, options: LogOptions
) -> str:
    return read_log(cluster.logs, require(cluster, rt, namespace, name), options, cluster.now())
