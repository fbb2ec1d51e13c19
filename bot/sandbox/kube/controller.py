"""The sandbox's controllers as one object: what reacts to each committed write.

They run synchronously inside the write that triggers them, under the cluster lock, and are
deterministic: the same requests give the same ReplicaSets, pods and events. They only react to
writes made through the API; loading a scenario never runs them, so a scenario's stuck rollouts
and crash loops stay exactly as written until someone acts.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.kube import pods as podlib
from bot.sandbox.kube.deployment import DeploymentReconciler
from bot.sandbox.kube.reconciler import (
    JOBS,
    NODES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    meta_of,
    owned_by,
    pods_selected_by,
)

__all__ = ["Controller", "owned_by", "pods_selected_by"]


class Controller(DeploymentReconciler):
    """Reconciles workloads after writes (Deployment, ReplicaSet, StatefulSet, Job, Pod, PVC)."""

    # Entry points -------------------------------------------------------------------------------

    def after_write(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """React to a committed create/update of an object of `kind`."""
        template_changed = old is None or not podlib.templates_equal(
            (old.get("spec") or {}).get("template"), (new.get("spec") or {}).get("template")
        )
        if kind == "Deployment":
            self.sync_deployment(new, template_changed=template_changed)
        elif kind == "ReplicaSet":
            self.sync_replicaset(new)
            self._refresh_owner_deployment(new)
        elif kind == "StatefulSet":
            self.sync_statefulset(new, template_changed=template_changed and old is not None)
        elif kind == "Job" and old is None:
            self.sync_job(new)
        elif kind == "Pod":
            if old is None:
                self._start_pod(new)
            self._refresh_pod_owner(new, replace_missing=False)
        elif kind == "PersistentVolumeClaim" and old is not None:
            self._resize_pvc(new)
        elif kind in ("ConfigMap", "Secret"):
            meta = meta_of(new)
            self._memory.config_written(meta.get("namespace", ""), kind, meta.get("name", ""))

    def after_status_write(self, kind: str, obj: dict[str, Any]) -> None:
        """A write to `/status` is stored as given; only a pod's owners refresh their counts."""
        if kind == "Pod":
            self._refresh_pod_owner(obj, replace_missing=False)

    def after_delete(self, kind: str, obj: dict[str, Any]) -> None:
        """React to a committed deletion: a pod's controller replaces it when it still wants one."""
        if kind == "Pod":
            self._memory.pod_deleted(obj)
            self._forget_pod(obj)
            self._refresh_pod_owner(obj, replace_missing=True)

    def dependents(self, owner: dict[str, Any]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """Objects that name `owner` in their ownerReferences (same namespace, or any for cluster-scoped owners)."""
        namespace = (owner.get("metadata") or {}).get("namespace")
        found: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for key in self._store.storage_keys():
            for obj in self._store.items(key, namespace):
                if owned_by(obj, owner):
                    found.append((key, obj))
        return found

    def _refresh_pod_owner(self, pod: dict[str, Any], replace_missing: bool) -> None:
        namespace = meta_of(pod).get("namespace", "")
        for ref in meta_of(pod).get("ownerReferences") or []:
            if not ref.get("controller"):
                continue
            key = {"ReplicaSet": REPLICASETS, "StatefulSet": STATEFULSETS, "Job": JOBS}.get(
                ref.get("kind", "")
            )
            if key is None:
                continue
            owner = self._store.get(key, namespace, ref.get("name", ""))
            if owner is None or not owned_by(pod, owner):
                continue
            if ref["kind"] == "ReplicaSet":
                if replace_missing:
                    self.sync_replicaset(owner)
                else:
                    self._update_replicaset_status(owner)
                self._refresh_owner_deployment(owner)
            elif ref["kind"] == "StatefulSet":
                self.sync_statefulset(owner, template_changed=False, create_missing=replace_missing)
            elif replace_missing:
                self.sync_job(owner)

    def _start_pod(self, pod: dict[str, Any]) -> None:
        """A pod created directly: the scheduler and kubelet would place and start it."""
        meta = meta_of(pod)
        namespace = meta.get("namespace", "default")
        live = [p for p in self._store.items(PODS, namespace) if p is not pod]
        owner_uid = next(
            (o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")), None
        )
        podlib.start_pod(
            pod,
            now=self._now(),
            naming=self._naming,
            nodes=self._store.items(NODES),
            namespace_pods=live,
            reference=self._memory.reference(namespace, pod.get("spec") or {}, live, owner_uid),
        )
        self._memory.pod_created(pod)
        self._save(PODS, pod)

    def _resize_pvc(self, pvc: dict[str, Any]) -> None:
        """A bound claim whose request grew is resized at once (admission already checked the class)."""
        requested = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        status = pvc.get("status") or {}
        capacity = (status.get("capacity") or {}).get("storage")
        if status.get("phase") == "Bound" and requested and requested != capacity:
            status.setdefault("capacity", {})["storage"] = requested
            pvc["status"] = status
            self._save(("", "persistentvolumeclaims"), pvc)
