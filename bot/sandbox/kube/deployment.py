"""The Deployment controller of the sandbox.

It follows the real rolling-update arithmetic (maxSurge/maxUnavailable, cleanup of unhealthy old
pods first, scale-down bounded by availability) and repeats it until nothing changes. Since a new
pod is Ready at once unless its template is known to fail (see `pods`), a healthy change completes
immediately, while a broken revision stalls exactly as on a real cluster.

Revisions behave as in Kubernetes: a template change gets a ReplicaSet `<name>-<template hash>`
with revision max+1; going back to a template an existing ReplicaSet already has (a rollback)
reuses that ReplicaSet and gives it the next revision, remembering the old number in
`deployment.kubernetes.io/revision-history`.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.sandbox.kube import pods as podlib
from bot.sandbox.kube.reconciler import (
    DEPLOYMENTS,
    REPLICASETS,
    REVISION,
    Reconciler,
    meta_of,
    name_of,
    owned_by,
    replicas_of,
    resolve_int_or_percent,
    revision_of,
)

REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


class DeploymentReconciler(Reconciler):
    """Rolls Deployments: ReplicaSet per template, revisions, rolling scale-up/scale-down, status."""

    def _scale_replicaset(self, deployment: dict[str, Any], rs: dict[str, Any], replicas: int) -> bool:
        before = replicas_of(rs)
        if before == replicas:
            return False
        rs.setdefault("spec", {})["replicas"] = replicas
        meta_of(rs)["generation"] = int(meta_of(rs).get("generation") or 1) + 1
        annotations = meta_of(rs).setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(replicas_of(deployment))
        self._save(REPLICASETS, rs)
        direction = "up" if replicas > before else "down"
        self.event(
            deployment,
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {name_of(rs)} from {before} to {replicas}",
            "deployment-controller",
        )
        self.sync_replicaset(rs)
        return True

    # Deployment ---------------------------------------------------------------------------------

    def _refresh_owner_deployment(self, rs: dict[str, Any]) -> None:
        namespace = meta_of(rs).get("namespace", "")
        for ref in meta_of(rs).get("ownerReferences") or []:
            if ref.get("kind") == "Deployment":
                deployment = self._store.get(DEPLOYMENTS, namespace, ref.get("name", ""))
                if deployment is not None and owned_by(rs, deployment):
                    rss = self._owned(REPLICASETS, deployment)
                    new_rs = self._find_new_rs(deployment, rss) or max(rss, key=revision_of, default=None)
                    self._update_deployment_status(deployment, rss, new_rs, None)

    @staticmethod
    def _find_new_rs(deployment: dict[str, Any], rss: list[dict[str, Any]]) -> dict[str, Any] | None:
        template = (deployment.get("spec") or {}).get("template")
        equal = [rs for rs in rss if podlib.templates_equal((rs.get("spec") or {}).get("template"), template)]
        return max(equal, key=revision_of) if equal else None

    def _create_new_rs(self, deployment: dict[str, Any], revision: int) -> dict[str, Any]:
        spec = deployment.get("spec") or {}
        meta = meta_of(deployment)
        namespace = meta.get("namespace", "default")
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        while True:
            pod_hash = podlib.template_hash(spec.get("template"), collision)
            name = f"{meta['name']}-{pod_hash}"
            if self._store.get(REPLICASETS, namespace, name) is None:
                break
            collision += 1
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[podlib.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[podlib.HASH_LABEL] = pod_hash
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        replicas = replicas_of(deployment)
        surge = resolve_int_or_percent(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge"), replicas, True
        )
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self._naming.uid(),
                "creationTimestamp": self._now(),
                "generation": 1,
                "labels": labels,
                "annotations": {
                    REVISION: str(revision),
                    DESIRED_REPLICAS: str(replicas),
                    MAX_REPLICAS: str(replicas + surge),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta.get("uid"),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        if (change_cause := (meta.get("annotations") or {}).get("kubernetes.io/change-cause")) is not None:
            rs["metadata"]["annotations"]["kubernetes.io/change-cause"] = change_cause
        self._save(REPLICASETS, rs)
        return rs

    def sync_deployment(self, deployment: dict[str, Any], template_changed: bool) -> None:
        """Roll the Deployment towards its template and replica count, then refresh its status."""
        rss = self._owned(REPLICASETS, deployment)
        new_rs = self._find_new_rs(deployment, rss)
        created = False
        if new_rs is None and (template_changed or not rss):
            new_rs = self._create_new_rs(deployment, max((revision_of(rs) for rs in rss), default=0) + 1)
            rss.append(new_rs)
            created = True
        elif new_rs is None:
            # The scenario's newest ReplicaSet does not match its Deployment exactly; trust the revision.
            new_rs = max(rss, key=revision_of)
        old_rss = [rs for rs in rss if rs is not new_rs]
        max_old = max((revision_of(rs) for rs in old_rss), default=0)
        if revision_of(new_rs) <= max_old:
            annotations = meta_of(new_rs).setdefault("annotations", {})
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            history.append(str(revision_of(new_rs)))
            annotations[REVISION_HISTORY] = ",".join(history)
            annotations[REVISION] = str(max_old + 1)
            self._save(REPLICASETS, new_rs)
        if not (deployment.get("spec") or {}).get("paused"):
            self._roll(deployment, new_rs, old_rss)
        rss = self._owned(REPLICASETS, deployment)
        new_rs = self._store.get(REPLICASETS, meta_of(new_rs).get("namespace", ""), name_of(new_rs)) or new_rs
        reason = None
        if template_changed:
            reason = "NewReplicaSetCreated" if created else "FoundNewReplicaSet"
        self._update_deployment_status(deployment, rss, new_rs, reason)

    def _roll(
        self, deployment: dict[str, Any], new_rs: dict[str, Any], old_rss: list[dict[str, Any]]
    ) -> None:
        spec = deployment.get("spec") or {}
        replicas = replicas_of(deployment)
        strategy = spec.get("strategy") or {}
        old_rss = sorted(old_rss, key=lambda rs: (meta_of(rs).get("creationTimestamp") or "", name_of(rs)))
        if strategy.get("type") == "Recreate":
            for rs in old_rss:
                self._scale_replicaset(deployment, rs, 0)
            self._scale_replicaset(deployment, new_rs, replicas)
            return
        rolling = strategy.get("rollingUpdate") or {}
        max_surge = resolve_int_or_percent(rolling.get("maxSurge"), replicas, True)
        max_unavailable = resolve_int_or_percent(rolling.get("maxUnavailable"), replicas, False)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        for _ in range(4 * replicas + 8):
            changed = self._scale_up_new(deployment, new_rs, old_rss, replicas, max_surge)
            changed = self._scale_down_old(deployment, new_rs, old_rss, replicas, max_unavailable) or changed
            if not changed:
                break

    def _available(self, rs: dict[str, Any]) -> int:
        return sum(1 for p in self._active_pods(rs) if podlib.is_ready(p))

    def _scale_up_new(
        self,
        deployment: dict[str, Any],
        new_rs: dict[str, Any],
        old_rss: list[dict[str, Any]],
        replicas: int,
        max_surge: int,
    ) -> bool:
        current = replicas_of(new_rs)
        if current == replicas:
            return False
        if current > replicas:
            return self._scale_replicaset(deployment, new_rs, replicas)
        total = current + sum(replicas_of(rs) for rs in old_rss)
        scale_up = min(replicas + max_surge - total, replicas - current)
        if scale_up <= 0:
            return False
        return self._scale_replicaset(deployment, new_rs, current + scale_up)

    def _scale_down_old(
        self,
        deployment: dict[str, Any],
        new_rs: dict[str, Any],
        old_rss: list[dict[str, Any]],
        replicas: int,
        max_unavailable: int,
    ) -> bool:
        if sum(replicas_of(rs) for rs in old_rss) == 0:
            return False
        all_pods = replicas_of(new_rs) + sum(replicas_of(rs) for rs in old_rss)
        min_available = replicas - max_unavailable
        new_unavailable = replicas_of(new_rs) - self._available(new_rs)
        max_cleanup = all_pods - min_available - new_unavailable
        if max_cleanup <= 0:
            return False
        changed = False
        # First remove old pods that are not available anyway; they count for nothing.
        for rs in old_rss:
            if max_cleanup <= 0:
                break
            unhealthy = replicas_of(rs) - self._available(rs)
            if unhealthy <= 0:
                continue
            step = min(max_cleanup, unhealthy)
            changed = self._scale_replicaset(deployment, rs, replicas_of(rs) - step) or changed
            max_cleanup -= step
        available = self._available(new_rs) + sum(self._available(rs) for rs in old_rss)
        budget = available - min_available
        for rs in old_rss:
            if budget <= 0:
                break
            step = min(replicas_of(rs), budget)
            if step > 0:
                changed = self._scale_replicaset(deployment, rs, replicas_of(rs) - step) or changed
                budget -= step
        return changed

    def _update_deployment_status(
        self,
        deployment: dict[str, Any],
        rss: list[dict[str, Any]],
        new_rs: dict[str, Any] | None,
        reason: str | None,
    ) -> None:
        spec = deployment.get("spec") or {}
        replicas = replicas_of(deployment)
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = (
            0
            if (spec.get("strategy") or {}).get("type") == "Recreate"
            else resolve_int_or_percent(rolling.get("maxUnavailable"), replicas, False)
        )
        actual = sum(len(self._active_pods(rs)) for rs in rss)
        ready = sum(self._available(rs) for rs in rss)
        updated = len(self._active_pods(new_rs)) if new_rs is not None else 0
        spec_total = sum(replicas_of(rs) for rs in rss)
        meta = meta_of(deployment)
        status = dict(deployment.get("status") or {})
        status.update(
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": actual,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
            }
        )
        unavailable = max(spec_total - ready, 0)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        else:
            status.pop("unavailableReplicas", None)
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas"):
            if not status[key]:
                status.pop(key)
        now = self._now()
        conditions = [dict(c) for c in status.get("conditions") or []]
        if ready >= replicas - max_unavailable:
            self._set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
        else:
            self._set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            )
        rs_name = name_of(new_rs) if new_rs is not None else ""
        complete = updated == replicas and actual == replicas and ready == replicas
        if complete:
            self._set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                now,
            )
        elif reason == "NewReplicaSetCreated":
            self._set_condition(
                conditions, "Progressing", "True", reason, f'Created new replica set "{rs_name}"', now
            )
        elif reason == "FoundNewReplicaSet":
            self._set_condition(
                conditions, "Progressing", "True", reason, f'Found new replica set "{rs_name}"', now
            )
        elif reason is not None or not any(c.get("type") == "Progressing" for c in conditions):
            self._set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                now,
            )
        status["conditions"] = conditions
        if new_rs is not None:
            meta.setdefault("annotations", {})[REVISION] = str(revision_of(new_rs))
        if status != deployment.get("status") or reason is not None:
            deployment["status"] = status
            self._save(DEPLOYMENTS, deployment)

    @staticmethod
    def _set_condition(
        conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str, now: str
    ) -> None:
        for condition in conditions:
            if condition.get("type") == kind:
                if condition.get("status") != status:
                    condition["lastTransitionTime"] = now
                if condition.get("reason") != reason or condition.get("message") != message:
                    condition["lastUpdateTime"] = now
                condition.update({"status": status, "reason": reason, "message": message})
                return
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
        )
