"""Writes to the Kubernetes API for the operation registry: typed calls, dry-run first, errors
sorted into what a retry can fix and what it cannot.

Every write goes through `KubeWriter`, which exposes exactly the verbs the built-in runbooks
need (and the ClusterRole grants): patch of deployments, statefulsets, daemonsets, HPAs,
nodes and claims, the scale subresource, pod deletion and eviction, Job creation. Objects
travel as plain dicts in the API's shape (`_preload_content=False`). `dry_run=True` sends
`dryRun=All`: the API server validates and runs admission but persists nothing.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class WriteError(Exception):
    """A failed call; `kind` is conflict, unavailable, timeout, forbidden, not_found, invalid or
    refused (e.g. a PodDisruptionBudget blocks an eviction)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _error(exc: Exception, what: str) -> WriteError:
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except ValueError:
            message = exc.reason
        kind = {409: "conflict", 403: "forbidden", 404: "not_found", 422: "invalid", 429: "refused",
                400: "invalid"}.get(exc.status, "unavailable" if (exc.status or 500) >= 500 else "invalid")
        return WriteError(kind, f"{what}: {exc.status} {message}")
    text = str(exc)
    kind = "timeout" if "timed out" in text.lower() else "unavailable"
    return WriteError(kind, f"{what}: {type(exc).__name__}: {text[:200]}")


class KubeWriter:
    def __init__(self, api_client: k8s.ApiClient, request_seconds: float = 10.0):
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self._timeout = request_seconds

    def _call(self, what: str, method, *args, **kwargs) -> dict[str, Any]:
        try:
            response = method(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sorted into retryable and final below
            raise _error(exc, what) from None
        data = response.data
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        readers = {
            "Deployment": lambda: self.apps.read_namespaced_deployment(name, namespace, **self._opts()),
            "StatefulSet": lambda: self.apps.read_namespaced_stateful_set(name, namespace, **self._opts()),
            "DaemonSet": lambda: self.apps.read_namespaced_daemon_set(name, namespace, **self._opts()),
            "Job": lambda: self.batch.read_namespaced_job(name, namespace, **self._opts()),
            "Pod": lambda: self.core.read_namespaced_pod(name, namespace, **self._opts()),
            "Node": lambda: self.core.read_node(name, **self._opts()),
            "PersistentVolumeClaim": lambda: self.core.read_namespaced_persistent_volume_claim(
                name, namespace, **self._opts()),
            "HorizontalPodAutoscaler": lambda: self.autoscaling.read_namespaced_horizontal_pod_autoscaler(
                name, namespace, **self._opts()),
        }
        if kind not in readers:
            raise WriteError("invalid", f"cannot read a {kind}")
        try:
            return json.loads(readers[kind]().data)
        except Exception as exc:  # noqa: BLE001
            raise _error(exc, f"read {kind} {namespace}/{name}") from None

    def _opts(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self._timeout}

    def list(self, what: str, method, *args, **kwargs) -> list[dict[str, Any]]:
        return list(self._call(what, method, *args, **kwargs).get("items") or [])

    def patch(self, kind: str, namespace: str | None, name: str, body: Any, content_type: str,
              dry_run: bool) -> dict[str, Any]:
        methods = {
            "Deployment": (self.apps.patch_namespaced_deployment, True),
            "StatefulSet": (self.apps.patch_namespaced_stateful_set, True),
            "DaemonSet": (self.apps.patch_namespaced_daemon_set, True),
            "HorizontalPodAutoscaler": (self.autoscaling.patch_namespaced_horizontal_pod_autoscaler, True),
            "PersistentVolumeClaim": (self.core.patch_namespaced_persistent_volume_claim, True),
            "Node": (self.core.patch_node, False),
        }
        if kind not in methods:
            raise WriteError("invalid", f"cannot patch a {kind}")
        method, namespaced = methods[kind]
        args = (name, namespace, body) if namespaced else (name, body)
        return self._call(f"patch {kind} {namespace or ''}/{name}".replace(" /", " "), method, *args,
                          _content_type=content_type, **({"dry_run": "All"} if dry_run else {}))

    def scale(self, kind: str, namespace: str, name: str, replicas: int, dry_run: bool) -> dict[str, Any]:
        method = self.apps.patch_namespaced_deployment_scale if kind == "Deployment" \
            else self.apps.patch_namespaced_stateful_set_scale
        return self._call(f"scale {kind} {namespace}/{name}", method, name, namespace, {"spec": {"replicas": replicas}},
                          _content_type=MERGE, **({"dry_run": "All"} if dry_run else {}))

    def delete_pod(self, namespace: str, name: str, dry_run: bool) -> dict[str, Any]:
        return self._call(f"delete Pod {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace,
                          **({"dry_run": "All"} if dry_run else {}))

    def evict(self, namespace: str, name: str, dry_run: bool) -> dict[str, Any]:
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        if dry_run:
            body["deleteOptions"] = {"dryRun": ["All"]}
        return self._call(f"evict Pod {namespace}/{name}", self.core.create_namespaced_pod_eviction, name, namespace,
                          body)

    def create_job(self, namespace: str, body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        return self._call(f"create Job {namespace}/{body['metadata']['name']}", self.batch.create_namespaced_job,
                          namespace, body, **({"dry_run": "All"} if dry_run else {}))
