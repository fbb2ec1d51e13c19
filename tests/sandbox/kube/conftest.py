"""Fixtures for the sandbox Kubernetes API server tests: a cluster at a fixed time, served over HTTP.

Every test talks to the server through the real `kubernetes` client (no mocks); `cluster` is
there to load state and to inspect what the requests did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client

NOW = datetime(2026, 9, 3, 16, 20, tzinfo=UTC)


@pytest.fixture
def cluster() -> SandboxCluster:
    return SandboxCluster(now=NOW)


@pytest.fixture
def server(cluster: SandboxCluster) -> Iterator[KubeApiServer]:
    with KubeApiServer(cluster) as running:
        yield running


@pytest.fixture
def api(server: KubeApiServer) -> Iterator[k8s.ApiClient]:
    client = sandbox_api_client(server.base_url)
    yield client
    client.close()


@pytest.fixture
def core(api: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api)


@pytest.fixture
def apps(api: k8s.ApiClient) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(api)


def status_of(error: ApiException) -> dict[str, Any]:
    """The Status object a failed request answered."""
    return json.loads(error.body)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(
    name: str = "web",
    ns: str = "shop",
    replicas: int = 3,
    image: str = "registry.example/web:1.0.0",
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Deployment manifest as a client would create it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "env": env if env is not None else [{"name": "LOG_LEVEL", "value": "info"}],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }


def pod(
    name: str,
    ns: str = "shop",
    labels: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("app",),
    node: str | None = "node-a",
    phase: str = "Running",
    ready: bool = True,
) -> dict[str, Any]:
    """A running pod manifest as a scenario holds it (status included)."""
    spec: dict[str, Any] = {"containers": [{"name": c, "image": f"example/{c}:1"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"}},
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": c,
                    "image": f"example/{c}:1",
                    "imageID": "",
                    "ready": ready,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-09-03T16:00:00Z"}},
                }
                for c in containers
            ],
        },
    }


def node(name: str, ready: bool = True, unschedulable: bool = False) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "addresses": [{"type": "InternalIP", "address": f"10.0.0.{len(name)}"}],
        },
    }
    if unschedulable:
        manifest["spec"]["unschedulable"] = True
    return manifest
