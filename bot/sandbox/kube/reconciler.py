"""Shared machinery of the sandbox's controllers, and the ReplicaSet, StatefulSet and Job controllers.

`Reconciler` reads and writes the store directly; its caller (the API layer, through
`Controller`) holds the cluster lock. Every change it makes takes a new resourceVersion, and every
pod it creates or deletes is announced with a core/v1 Event the way the real controllers do
(`SuccessfulCreate`, `SuccessfulDelete`), so a responder reading events sees what happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bot.sandbox.kube import pods as podlib
from bot.sandbox.kube.fate import FailureMemory
from bot.sandbox.kube.selectors import match_label_selector
from bot.sandbox.kube.store import Naming, ObjectStore

PODS = ("", "pods")
NODES = ("", "nodes")
EVENTS = ("", "events")
REPLICASETS = ("apps", "replicasets")
DEPLOYMENTS = ("apps", "deployments")
STATEFULSETS = ("apps", "statefulsets")
JOBS = ("batch", "jobs")

REVISION = "deployment.kubernetes.io/revision"


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def name_of(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def revision_of(rs: dict[str, Any]) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def replicas_of(obj: dict[str, Any], default: int = 1) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return default if value is None else int(value)


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    """True when `obj` names `owner` in its ownerReferences (by kind and name, and uid when both have one)."""
    owner_meta = owner.get("metadata") or {}
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") != owner.get("kind") or ref.get("name") != owner_meta.get("name"):
            continue
        if ref.get("uid") and owner_meta.get("uid") and ref["uid"] != owner_meta["uid"]:
            continue
        return True
    return False


def ordinal_of(set_name: str, pod_name: str) -> int:
    """The ordinal of a StatefulSet pod (`web-3` -> 3); -1 when the name does not follow the pattern."""
    suffix = pod_name[len(set_name) + 1 :] if pod_name.startswith(f"{set_name}-") else ""
    return int(suffix) if suffix.isdigit() else -1


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        fraction = float(value[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


class Reconciler:
    """Store helpers plus the ReplicaSet, StatefulSet and Job controllers."""

    def __init__(
        self,
        store: ObjectStore,
        naming: Naming,
        now: Callable[[], str],
        forget_pod: Callable[[dict[str, Any]], None],
    ) -> None:
        self._store = store
        self._naming = naming
        self._now = now
        self._forget_pod = forget_pod
        self._memory = FailureMemory()

    # Helpers ------------------------------------------------------------------------------------

    def _save(self, key: tuple[str, str], obj: dict[str, Any]) -> None:
        self._store.put(key, obj)

    def _owned(self, key: tuple[str, str], owner: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = meta_of(owner).get("namespace")
        return [o for o in self._store.items(key, namespace) if owned_by(o, owner)]

    def _active_pods(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for p in self._owned(PODS, owner) if podlib.is_active(p)]

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        meta = meta_of(pod)
        self._memory.pod_deleted(pod)
        self._store.remove(PODS, meta.get("namespace", ""), meta["name"])
        self._forget_pod(pod)

    def _create_pod(
        self, owner: dict[str, Any], name: str, template: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        namespace = meta_of(owner).get("namespace", "default")
        pod = podlib.build_pod(
            name=name,
            namespace=namespace,
            template=template,
            owner=owner,
            now=self._now(),
            naming=self._naming,
            nodes=self._store.items(NODES),
            namespace_pods=self._store.items(PODS, namespace),
            memory=self._memory,
            **extra,
        )
        self._memory.pod_created(pod)
        self._save(PODS, pod)
        return pod

    def _unique_pod_name(self, prefix: str, namespace: str) -> str:
        while True:
            name = f"{prefix}-{self._naming.suffix()}"
            if self._store.get(PODS, namespace, name) is None:
                return name

    def event(
        self, obj: dict[str, Any], reason: str, message: str, component: str, kind: str = "Normal"
    ) -> None:
        """Record a core/v1 Event about `obj`, as the real controllers do."""
        meta = meta_of(obj)
        now = self._now()
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{self._naming.hex()}",
                "namespace": namespace,
                "uid": self._naming.uid(),
                "creationTimestamp": now,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "",
        }
        self._save(EVENTS, event)

    # ReplicaSet ---------------------------------------------------------------------------------

    def sync_replicaset(self, rs: dict[str, Any]) -> bool:
        """Create or delete pods until the ReplicaSet has `spec.replicas` active pods; True if it changed any."""
        want = replicas_of(rs)
        active = self._active_pods(rs)
        changed = False
        template = (rs.get("spec") or {}).get("template") or {}
        namespace = meta_of(rs).get("namespace", "default")
        for _ in range(want - len(active)):
            pod = self._create_pod(
                rs, self._unique_pod_name(name_of(rs), namespace), template, generate_name=f"{name_of(rs)}-"
            )
            self.event(rs, "SuccessfulCreate", f"Created pod: {name_of(pod)}", "replicaset-controller")
            changed = True
        if len(active) > want:
            for pod in sorted(active, key=podlib.deletion_rank)[: len(active) - want]:
                self._delete_pod(pod)
                self.event(rs, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}", "replicaset-controller")
                changed = True
        self._update_replicaset_status(rs)
        return changed

    def _update_replicaset_status(self, rs: dict[str, Any]) -> None:
        active = self._active_pods(rs)
        ready = sum(1 for p in active if podlib.is_ready(p))
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta_of(rs).get("generation", 1),
        }
        current = rs.get("status") or {}
        merged = {**current, **status}
        if merged != current:
            rs["status"] = merged
            self._save(REPLICASETS, rs)

    # StatefulSet --------------------------------------------------------------------------------

    def sync_statefulset(
        self, sts: dict[str, Any], template_changed: bool, create_missing: bool = True
    ) -> None:
        """Pods `<name>-<ordinal>` for ordinals below spec.replicas; a template change recreates them."""
        spec = sts.get("spec") or {}
        meta = meta_of(sts)
        status = dict(sts.get("status") or {})
        update_revision = status.get("updateRevision")
        if template_changed or not update_revision:
            update_revision = f"{meta['name']}-{podlib.template_hash(spec.get('template'))}"
        replicas = replicas_of(sts)
        pods = {name_of(p): p for p in self._active_pods(sts)}
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "OnDelete"
        for ordinal, pod_name in sorted(((ordinal_of(meta["name"], n), n) for n in pods), reverse=True):
            if ordinal >= replicas:
                pod = pods.pop(pod_name)
                self._delete_pod(pod)
                self.event(
                    sts,
                    "SuccessfulDelete",
                    f"delete Pod {name_of(pod)} in StatefulSet {meta['name']} successful",
                    "statefulset-controller",
                )
        for ordinal in range(replicas):
            name = f"{meta['name']}-{ordinal}"
            pod = pods.get(name)
            outdated = (
                pod is not None
                and rolling
                and template_changed
                and (meta_of(pod).get("labels") or {}).get("controller-revision-hash") != update_revision
            )
            if outdated and pod is not None:
                self._delete_pod(pod)
                pod = None
            if pod is None and (create_missing or template_changed):
                labels = {
                    "controller-revision-hash": update_revision,
                    "statefulset.kubernetes.io/pod-name": name,
                    "apps.kubernetes.io/pod-index": str(ordinal),
                }
                overrides = {"hostname": name}
                if spec.get("serviceName"):
                    overrides["subdomain"] = spec["serviceName"]
                self._create_pod(
                    sts, name, spec.get("template") or {}, extra_labels=labels, spec_overrides=overrides
                )
                self.event(
                    sts,
                    "SuccessfulCreate",
                    f"create Pod {name} in StatefulSet {meta['name']} successful",
                    "statefulset-controller",
                )
        active = self._active_pods(sts)
        ready = sum(1 for p in active if podlib.is_ready(p))
        updated = sum(
            1
            for p in active
            if (meta_of(p).get("labels") or {}).get("controller-revision-hash") == update_revision
        )
        status.update(
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": len(active),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": updated,
                "updatedReplicas": updated,
                "updateRevision": update_revision,
                "currentRevision": update_revision
                if updated == len(active)
                else status.get("currentRevision", update_revision),
            }
        )
        sts["status"] = status
        self._save(STATEFULSETS, sts)

    # Job ----------------------------------------------------------------------------------------

    def sync_job(self, job: dict[str, Any]) -> None:
        """Start pods up to the Job's parallelism unless it already finished; they stay Running."""
        status = dict(job.get("status") or {})
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if finished or (job.get("spec") or {}).get("suspend"):
            return
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        succeeded = int(status.get("succeeded") or 0)
        target = (
            parallelism if completions is None else max(0, min(parallelism, int(completions) - succeeded))
        )
        active = self._active_pods(job)
        namespace = meta_of(job).get("namespace", "default")
        template = spec.get("template") or {}
        for _ in range(target - len(active)):
            name = self._unique_pod_name(name_of(job), namespace)
            self._create_pod(job, name, template, generate_name=f"{name_of(job)}-")
            self.event(job, "SuccessfulCreate", f"Created pod: {name}", "job-controller")
        active = self._active_pods(job)
        status.update({"active": len(active), "ready": sum(1 for p in active if podlib.is_ready(p))})
        status.setdefault("startTime", self._now())
        status.setdefault("uncountedTerminatedPods", {})
        status.setdefault("terminating", 0)
        job["status"] = status
        self._save(JOBS, job)


def pods_selected_by(pods: list[dict[str, Any]], selector: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pods a LabelSelector object selects (PodDisruptionBudgets, Services)."""
    return [p for p in pods if match_label_selector(selector, (p.get("metadata") or {}).get("labels"))]
