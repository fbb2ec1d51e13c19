"""A pod's fate: which pod specs are known to fail, so that new pods with the same spec fail alike.

The sandbox has no kubelet. A new pod whose spec matches a pod that failed in the same namespace
for a reason the spec would repeat (CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError,
OOMKilled, or left unschedulable) fails the same way: the fault is in the template, so restarting,
deleting or scaling a broken revision stays broken, while a changed image, command, env, resources
or placement starts healthy. `FailureMemory` keeps such failures even after their pods are
deleted (a rollout removes the very pods that showed the fault), and forgets one when a ConfigMap
or Secret its pod referenced is written afterwards (the fix may have been to the configuration).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

FAILING_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_FINGERPRINT_CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "envFrom", "resources")

_FINGERPRINT_CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "envFrom", "resources")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def spec_fingerprint(pod_spec: Mapping[str, Any] | None) -> str:
    """What decides a pod's fate: its containers' images, commands, env and resources, its placement rules."""
    spec = pod_spec or {}
    parts: dict[str, Any] = {}
    for field in ("initContainers", "containers"):
        parts[field] = [
            {k: c.get(k) for k in _FINGERPRINT_CONTAINER_FIELDS if c.get(k) not in (None, [], {})}
            for c in spec.get(field) or []
        ]
    parts["nodeSelector"] = spec.get("nodeSelector") or {}
    parts["affinity"] = spec.get("affinity") or {}
    return _canonical(parts)


def failure_profile(pod: Mapping[str, Any]) -> str | None:
    """`container` or `unschedulable` when the pod fails in a way its spec would repeat, else None."""
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILING_WAITING_REASONS:
            return "container"
        terminated = (cs.get("lastState") or {}).get("terminated") or {}
        if not cs.get("ready") and terminated.get("reason") in ("OOMKilled", "Error"):
            return "container"
    if status.get("phase") == "Pending":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return "unschedulable"
    return None


def _is_active(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def config_references(pod_spec: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """The (kind, name) of every ConfigMap and Secret the pod spec reads."""
    spec = pod_spec or {}
    refs: set[tuple[str, str]] = set()
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if (ref := source.get("configMapKeyRef")) and ref.get("name"):
                refs.add(("ConfigMap", ref["name"]))
            if (ref := source.get("secretKeyRef")) and ref.get("name"):
                refs.add(("Secret", ref["name"]))
        for env_from in container.get("envFrom") or []:
            if (ref := env_from.get("configMapRef")) and ref.get("name"):
                refs.add(("ConfigMap", ref["name"]))
            if (ref := env_from.get("secretRef")) and ref.get("name"):
                refs.add(("Secret", ref["name"]))
    for volume in spec.get("volumes") or []:
        if (cm := volume.get("configMap")) and cm.get("name"):
            refs.add(("ConfigMap", cm["name"]))
        if (secret := volume.get("secret")) and secret.get("secretName"):
            refs.add(("Secret", secret["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (cm := source.get("configMap")) and cm.get("name"):
                refs.add(("ConfigMap", cm["name"]))
            if (secret := source.get("secret")) and secret.get("name"):
                refs.add(("Secret", secret["name"]))
    for pull in spec.get("imagePullSecrets") or []:
        if pull.get("name"):
            refs.add(("Secret", pull["name"]))
    return refs


class FailureMemory:
    """Failing pod specs per namespace, and the configuration writes that may have fixed them.

    Sequence numbers order events: a failure observed at sequence n is stale once a ConfigMap or
    Secret its pod reads is written at a later sequence. Pods loaded from a scenario count as
    observed at 0. The cluster lock guards it.
    """

    def __init__(self) -> None:
        self._sequence = 0
        self._config_writes: dict[tuple[str, str, str], int] = {}
        self._born: dict[str, int] = {}
        self._remembered: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}

    def config_written(self, namespace: str, kind: str, name: str) -> None:
        self._sequence += 1
        self._config_writes[(namespace, kind, name)] = self._sequence

    def pod_created(self, pod: Mapping[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            self._born[uid] = self._sequence

    def pod_deleted(self, pod: Mapping[str, Any]) -> None:
        """Remember a failing pod's spec before it goes."""
        if not failure_profile(pod) or not self._still_valid(pod, self._observed(pod)):
            return
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), spec_fingerprint(pod.get("spec")))
        existing = self._remembered.get(key)
        if existing is None or not self._still_valid(*existing):
            self._remembered[key] = (copy.deepcopy(dict(pod)), self._observed(pod))

    def _observed(self, pod: Mapping[str, Any]) -> int:
        return self._born.get((pod.get("metadata") or {}).get("uid", ""), 0)

    def _still_valid(self, pod: Mapping[str, Any], observed: int) -> bool:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        return all(
            self._config_writes.get((namespace, kind, name), 0) <= observed
            for kind, name in config_references(pod.get("spec"))
        )

    def reference(
        self,
        namespace: str,
        pod_spec: Mapping[str, Any],
        live_pods: Iterable[Mapping[str, Any]],
        owner_uid: str | None,
    ) -> Mapping[str, Any] | None:
        """A failing pod with this spec (live ones first, same owner first), or None; deterministic."""
        wanted = spec_fingerprint(pod_spec)

        def rank(p: Mapping[str, Any]) -> tuple[bool, str]:
            owners = (p.get("metadata") or {}).get("ownerReferences") or []
            return (
                not any(o.get("uid") == owner_uid for o in owners),
                (p.get("metadata") or {}).get("name", ""),
            )

        live = [
            p
            for p in live_pods
            if _is_active(p)
            and failure_profile(p)
            and spec_fingerprint(p.get("spec")) == wanted
            and self._still_valid(p, self._observed(p))
        ]
        if live:
            return min(live, key=rank)
        remembered = self._remembered.get((namespace, wanted))
        if remembered is not None and self._still_valid(remembered[0], remembered[1]):
            return remembered[0]
        return None
