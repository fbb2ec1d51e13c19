"""Concurrent clients, and how new pods inherit the known fate of their spec."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kubernetes import client as k8s

from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client
from tests.sandbox.kube.conftest import deployment, namespace


def test_concurrent_writers_get_distinct_resource_versions(
    cluster: SandboxCluster, server: KubeApiServer
) -> None:
    cluster.load([namespace("shop")])

    def work(index: int) -> list[int]:
        with sandbox_api_client(server.base_url) as api:
            core = k8s.CoreV1Api(api)
            created = core.create_namespaced_config_map(
                "shop", {"metadata": {"name": f"cm-{index}"}, "data": {"n": "0"}}
            )
            versions = [int(created.metadata.resource_version)]
            for step in range(5):
                patched = core.patch_namespaced_config_map(f"cm-{index}", "shop", {"data": {"n": str(step)}})
                versions.append(int(patched.metadata.resource_version))
                core.list_namespaced_config_map("shop")
            return versions

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    every = [v for versions in results for v in versions]
    assert len(every) == len(set(every)) == 48, "each write took its own resourceVersion"
    assert all(versions == sorted(versions) for versions in results)
    assert len(cluster.mutations) == 48 and all(m.code in (200, 201) for m in cluster.mutations)
    assert len(cluster.list("configmaps", "shop")) == 8


def _failing_deployment(cluster: SandboxCluster) -> None:
    """A Deployment whose pods cannot start: they read a Secret that does not exist."""
    manifest = deployment(
        "worker",
        replicas=2,
        env=[{"name": "REGION", "valueFrom": {"secretKeyRef": {"name": "region", "key": "id"}}}],
    )
    manifest["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    template = manifest["spec"]["template"]
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "worker-abc",
            "namespace": "shop",
            "labels": {"app": "worker", "pod-template-hash": "abc"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker", "controller": True}
            ],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "worker", "pod-template-hash": "abc"}},
            "template": {
                "metadata": {"labels": {"app": "worker", "pod-template-hash": "abc"}},
                "spec": template["spec"],
            },
        },
    }
    pods = []
    for suffix in ("aaaaa", "bbbbb"):
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"worker-abc-{suffix}",
                    "namespace": "shop",
                    "labels": {"app": "worker", "pod-template-hash": "abc"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": "worker-abc",
                            "controller": True,
                        }
                    ],
                },
                "spec": template["spec"],
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {
                            "name": "app",
                            "image": "registry.example/worker:1.0.0",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {
                                "waiting": {
                                    "reason": "CreateContainerConfigError",
                                    "message": 'secret "region" not found',
                                }
                            },
                        }
                    ],
                },
            }
        )
    cluster.load([namespace("shop"), manifest, rs, *pods])


def _waiting_reasons(core: k8s.CoreV1Api) -> list[str | None]:
    pods = core.list_namespaced_pod("shop", label_selector="app=worker").items
    return sorted(
        (
            (
                p.status.container_statuses[0].state.waiting.reason
                if p.status.container_statuses[0].state.waiting
                else None
            )
            for p in pods
        ),
        key=str,
    )


def test_replacements_repeat_a_known_failure_until_the_config_is_fixed(
    cluster: SandboxCluster, core: k8s.CoreV1Api, apps: k8s.AppsV1Api
) -> None:
    _failing_deployment(cluster)
    core.delete_namespaced_pod("worker-abc-aaaaa", "shop")
    assert _waiting_reasons(core) == ["CreateContainerConfigError", "CreateContainerConfigError"], (
        "deleting a broken pod fixes nothing"
    )
    replacement = next(
        p for p in core.list_namespaced_pod("shop").items if p.metadata.name not in ("worker-abc-bbbbb",)
    )
    assert replacement.metadata.name.startswith("worker-abc-")
    assert replacement.status.container_statuses[0].restart_count == 0

    core.create_namespaced_secret("shop", {"metadata": {"name": "region"}, "stringData": {"id": "eu"}})
    restart = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-09-03T16:20:00Z"}}
            }
        }
    }
    apps.patch_namespaced_deployment("worker", "shop", restart)
    assert _waiting_reasons(core) == [None, None], "after the Secret exists, a restart brings healthy pods"
    status = apps.read_namespaced_deployment("worker", "shop").status
    assert status.available_replicas == 2 and status.updated_replicas == 2
