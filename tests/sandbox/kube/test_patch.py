"""The three patch formats: the merge rules directly, then each format through the real client."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import SandboxCluster
from bot.sandbox.kube.errors import ApiError
from bot.sandbox.kube.patch import json_merge_patch, strategic_merge_patch
from tests.sandbox.kube.conftest import deployment, namespace, status_of

POD_SPEC = {
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "app:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "sidecar", "image": "proxy:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "finalizers_like": ["x"],
    },
    "metadata": {"finalizers": ["a"], "labels": {"app": "web", "old": "x"}},
}


def test_strategic_merge_merges_containers_and_env_by_name() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:2",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                }
            ]
        }
    }
    merged = strategic_merge_patch(POD_SPEC, patch)
    app, sidecar = merged["spec"]["containers"]
    assert app["image"] == "app:2" and sidecar == {"name": "sidecar", "image": "proxy:1"}
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert app["ports"] == POD_SPEC["spec"]["containers"][0]["ports"], "untouched lists stay"
    assert POD_SPEC["spec"]["containers"][0]["image"] == "app:1", "the input is not mutated"


def test_strategic_merge_keys_for_ports_mounts_and_atomic_lists() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "ports": [{"containerPort": 9090, "name": "metrics"}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                }
            ],
            "tolerations": [{"key": "b", "operator": "Exists"}],
        },
        "metadata": {"finalizers": ["b"]},
    }
    merged = strategic_merge_patch(POD_SPEC, patch)
    app = merged["spec"]["containers"][0]
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert merged["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}], (
        "tolerations have no merge key"
    )
    assert merged["metadata"]["finalizers"] == ["a", "b"], "finalizers merge as a set"


def test_strategic_merge_directives() -> None:
    patch = {
        "metadata": {"labels": {"old": None}},
        "spec": {
            "containers": [
                {"name": "sidecar", "$patch": "delete"},
                {"name": "app", "env": [{"name": "A", "$patch": "delete"}]},
            ],
            "volumes": [{"$patch": "replace"}, {"name": "cache", "emptyDir": {}}],
        },
    }
    merged = strategic_merge_patch(POD_SPEC, patch)
    assert merged["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in merged["spec"]["containers"]] == ["app"]
    assert merged["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    assert merged["spec"]["volumes"] == [{"name": "cache", "emptyDir": {}}]
    replaced = strategic_merge_patch(
        POD_SPEC, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}
    )
    assert replaced["metadata"]["labels"] == {"only": "this"}
    removed = strategic_merge_patch(POD_SPEC, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == []
    with pytest.raises(ApiError) as raised:
        strategic_merge_patch(POD_SPEC, {"spec": {"containers": [{"image": "no-name"}]}})
    assert raised.value.code == 400


def test_json_merge_patch_replaces_lists() -> None:
    merged = json_merge_patch(
        POD_SPEC, {"spec": {"containers": [{"name": "only"}]}, "metadata": {"labels": {"old": None}}}
    )
    assert merged["spec"]["containers"] == [{"name": "only"}]
    assert merged["metadata"]["labels"] == {"app": "web"}


@pytest.fixture
def web(cluster: SandboxCluster, apps: k8s.AppsV1Api) -> k8s.V1Deployment:
    cluster.load([namespace("shop")])
    return apps.create_namespaced_deployment(
        "shop",
        deployment(
            replicas=1, env=[{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu"}]
        ),
    )


def test_client_dict_patch_is_strategic_merge(
    cluster: SandboxCluster, apps: k8s.AppsV1Api, web: k8s.V1Deployment
) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "web:2", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
                    ]
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("web", "shop", patch)
    container = patched.spec.template.spec.containers[0]
    assert container.image == "web:2"
    assert [(e.name, e.value) for e in container.env] == [("LOG_LEVEL", "debug"), ("REGION", "eu")]
    assert container.ports[0].container_port == 8080
    assert cluster.mutations[-1].content_type == "application/strategic-merge-patch+json"


def test_client_merge_patch(cluster: SandboxCluster, apps: k8s.AppsV1Api, web: k8s.V1Deployment) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:3"}]}}}}
    patched = apps.patch_namespaced_deployment(
        "web", "shop", patch, _content_type="application/merge-patch+json"
    )
    container = patched.spec.template.spec.containers[0]
    assert container.image == "web:3"
    assert container.env is None and container.ports is None, "a merge patch replaces the whole list"
    assert cluster.mutations[-1].content_type == "application/merge-patch+json"


def test_client_json_patch(cluster: SandboxCluster, apps: k8s.AppsV1Api, web: k8s.V1Deployment) -> None:
    operations = [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:4"},
        {"op": "add", "path": "/metadata/annotations", "value": {"owner": "team-a"}},
    ]
    patched = apps.patch_namespaced_deployment("web", "shop", operations)
    assert patched.spec.template.spec.containers[0].image == "web:4"
    assert patched.metadata.annotations["owner"] == "team-a"
    assert cluster.mutations[-1].content_type == "application/json-patch+json"
    with pytest.raises(ApiException) as failed:
        apps.patch_namespaced_deployment(
            "web", "shop", [{"op": "test", "path": "/spec/replicas", "value": 7}]
        )
    assert failed.value.status == 422
    assert (
        cluster.get("Deployment", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
        == "web:4"
    )


def test_unknown_patch_content_type_is_415(web: k8s.V1Deployment, apps: k8s.AppsV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        apps.patch_namespaced_deployment(
            "web", "shop", {"spec": {}}, _content_type="application/apply-patch+yaml"
        )
    assert raised.value.status == 415
    assert status_of(raised.value)["reason"] == "UnsupportedMediaType"
