"""The controllers, observed through the real client: rollouts, rollbacks, scaling, replacements."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from bot.sandbox.kube import SandboxCluster
from tests.sandbox.kube.conftest import deployment, namespace, node

REVISION = "deployment.kubernetes.io/revision"


def _replica_sets(apps: k8s.AppsV1Api, name: str = "web") -> dict[str, k8s.V1ReplicaSet]:
    """The Deployment's ReplicaSets by revision."""
    return {
        rs.metadata.annotations[REVISION]: rs
        for rs in apps.list_namespaced_replica_set("shop", label_selector=f"app={name}").items
    }


def _pods_by_rs(core: k8s.CoreV1Api) -> dict[str, list[k8s.V1Pod]]:
    grouped: dict[str, list[k8s.V1Pod]] = {}
    for item in core.list_namespaced_pod("shop").items:
        grouped.setdefault(item.metadata.owner_references[0].name, []).append(item)
    return grouped


@pytest.fixture
def web(cluster: SandboxCluster, apps: k8s.AppsV1Api) -> k8s.V1Deployment:
    cluster.load([namespace("shop"), node("node-a"), node("node-b")])
    return apps.create_namespaced_deployment("shop", deployment(replicas=3))


def test_create_makes_revision_one_with_running_pods(
    web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    rss = _replica_sets(apps)
    assert list(rss) == ["1"]
    rs = rss["1"]
    template_hash = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{template_hash}"
    assert (
        rs.metadata.owner_references[0].kind == "Deployment"
        and rs.metadata.owner_references[0].uid == web.metadata.uid
    )
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": template_hash}
    pods = _pods_by_rs(core)[rs.metadata.name]
    assert len(pods) == 3
    for item in pods:
        assert (
            item.metadata.name.startswith(f"{rs.metadata.name}-")
            and len(item.metadata.name) == len(rs.metadata.name) + 6
        )
        assert item.status.phase == "Running"
        assert (
            item.status.container_statuses[0].ready and item.status.container_statuses[0].restart_count == 0
        )
        assert {c.type: c.status for c in item.status.conditions}["Ready"] == "True"
        assert item.spec.node_name in ("node-a", "node-b")
    assert sorted(p.spec.node_name for p in pods) == ["node-a", "node-a", "node-b"], (
        "spread over the least-loaded nodes"
    )
    status = apps.read_namespaced_deployment("web", "shop").status
    assert (status.replicas, status.ready_replicas, status.available_replicas, status.updated_replicas) == (
        3,
        3,
        3,
        3,
    )


def test_image_rollout_then_rollback_through_the_client(
    web: k8s.V1Deployment,
    apps: k8s.AppsV1Api,
    core: k8s.CoreV1Api,
    api: k8s.ApiClient,
    cluster: SandboxCluster,
) -> None:
    first = _replica_sets(apps)["1"]
    first_pods = {p.metadata.name for p in _pods_by_rs(core)[first.metadata.name]}

    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "registry.example/web:2.0.0"}]}}
        }
    }
    rolled = apps.patch_namespaced_deployment("web", "shop", patch)
    assert rolled.metadata.generation == 2
    assert rolled.metadata.annotations[REVISION] == "2"
    rss = _replica_sets(apps)
    assert set(rss) == {"1", "2"}
    assert rss["2"].spec.replicas == 3 and rss["1"].spec.replicas == 0
    assert rss["2"].spec.template.spec.containers[0].image == "registry.example/web:2.0.0"
    pods = _pods_by_rs(core)
    assert set(pods) == {rss["2"].metadata.name}, "old pods are gone"
    assert all(p.status.phase == "Running" for p in pods[rss["2"].metadata.name])
    status = apps.read_namespaced_deployment("web", "shop").status
    assert status.observed_generation == 2 and status.updated_replicas == 3 and status.available_replicas == 3
    progressing = {c.type: c for c in status.conditions}["Progressing"]
    assert progressing.reason == "NewReplicaSetAvailable" and rss["2"].metadata.name in progressing.message

    # Roll back as `kubectl rollout undo` does: copy the previous revision's template, minus the hash label.
    template: dict[str, Any] = api.sanitize_for_serialization(rss["1"].spec.template)
    del template["metadata"]["labels"]["pod-template-hash"]
    undone = apps.patch_namespaced_deployment(
        "web",
        "shop",
        [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": {REVISION: "2"}},
        ],
    )
    assert undone.metadata.annotations[REVISION] == "3"
    rss = _replica_sets(apps)
    assert set(rss) == {"2", "3"}, "the old ReplicaSet was reused, not copied"
    assert rss["3"].metadata.name == first.metadata.name and rss["3"].metadata.uid == first.metadata.uid
    assert rss["3"].metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert rss["3"].spec.replicas == 3 and rss["2"].spec.replicas == 0
    pods = _pods_by_rs(core)
    assert set(pods) == {first.metadata.name}
    back = {p.metadata.name for p in pods[first.metadata.name]}
    assert len(back) == 3 and not back & first_pods, "new pods of the old ReplicaSet"
    assert all(p.spec.containers[0].image == "registry.example/web:1.0.0" for p in pods[first.metadata.name])
    reasons = [
        e.message
        for e in core.list_namespaced_event("shop", field_selector="involvedObject.kind=Deployment").items
    ]
    assert f"Scaled up replica set {first.metadata.name} from 0 to 3" in reasons
    assert [m.verb for m in cluster.mutations] == ["create", "patch", "patch"]


def test_rolling_restart_creates_a_new_revision(
    web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    restart = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-09-03T16:20:00Z"}}
            }
        }
    }
    apps.patch_namespaced_deployment("web", "shop", restart)
    rss = _replica_sets(apps)
    assert set(rss) == {"1", "2"} and rss["2"].spec.replicas == 3
    assert rss["2"].spec.template.spec.containers[0].image == rss["1"].spec.template.spec.containers[0].image
    pods = _pods_by_rs(core)[rss["2"].metadata.name]
    assert all(p.metadata.annotations["kubectl.kubernetes.io/restartedAt"] for p in pods)


def test_scale_subresource_returns_a_scale(
    web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api, cluster: SandboxCluster
) -> None:
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    assert isinstance(scale, k8s.V1Scale)
    assert (scale.kind, scale.api_version, scale.spec.replicas, scale.status.replicas) == (
        "Scale",
        "autoscaling/v1",
        3,
        3,
    )
    assert scale.status.selector == "app=web"
    scaled = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 5}})
    assert scaled.kind == "Scale" and scaled.spec.replicas == 5
    assert len(core.list_namespaced_pod("shop").items) == 5
    assert list(_replica_sets(apps)) == ["1"], "scaling does not make a revision"
    assert cluster.get("Deployment", "shop", "web")["spec"]["replicas"] == 5
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    scale.spec.replicas = 2
    replaced = apps.replace_namespaced_deployment_scale("web", "shop", scale)
    assert replaced.spec.replicas == 2 and len(core.list_namespaced_pod("shop").items) == 2
    scale.spec.replicas = 4  # scale still carries the old resourceVersion
    with pytest.raises(k8s.exceptions.ApiException) as raised:
        apps.replace_namespaced_deployment_scale("web", "shop", scale)
    assert raised.value.status == 409
    assert [m.subresource for m in cluster.mutations[-3:]] == ["scale", "scale", "scale"]


def test_deleted_pod_is_replaced(web: k8s.V1Deployment, core: k8s.CoreV1Api) -> None:
    victim = core.list_namespaced_pod("shop").items[0].metadata.name
    deleted = core.delete_namespaced_pod(victim, "shop")
    assert deleted.metadata.name == victim and deleted.metadata.deletion_timestamp is not None
    names = [p.metadata.name for p in core.list_namespaced_pod("shop").items]
    assert len(names) == 3 and victim not in names


def test_delete_deployment_cascades(web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api) -> None:
    apps.delete_namespaced_deployment("web", "shop")
    assert apps.list_namespaced_replica_set("shop").items == []
    assert core.list_namespaced_pod("shop").items == []


def test_orphaning_delete_keeps_dependents(
    web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    apps.delete_namespaced_deployment("web", "shop", propagation_policy="Orphan")
    (rs,) = apps.list_namespaced_replica_set("shop").items
    assert rs.metadata.owner_references is None
    assert len(core.list_namespaced_pod("shop").items) == 3


def test_statefulset_scale_uses_ordinals(
    cluster: SandboxCluster, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    cluster.load([namespace("shop")])
    sts = deployment("db", replicas=2)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set("shop", sts)
    assert sorted(p.metadata.name for p in core.list_namespaced_pod("shop").items) == ["db-0", "db-1"]
    apps.patch_namespaced_stateful_set_scale("db", "shop", {"spec": {"replicas": 4}})
    assert sorted(p.metadata.name for p in core.list_namespaced_pod("shop").items) == [
        "db-0",
        "db-1",
        "db-2",
        "db-3",
    ]
    apps.patch_namespaced_stateful_set_scale("db", "shop", {"spec": {"replicas": 1}})
    assert [p.metadata.name for p in core.list_namespaced_pod("shop").items] == ["db-0"]
    core.delete_namespaced_pod("db-0", "shop")
    (recreated,) = core.list_namespaced_pod("shop").items
    assert recreated.metadata.name == "db-0" and recreated.spec.hostname == "db-0"
    assert apps.read_namespaced_stateful_set("db", "shop").status.ready_replicas == 1


def test_replicaset_scale_subresource(
    cluster: SandboxCluster, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    cluster.load([namespace("shop")])
    rs = deployment("solo", replicas=1)
    rs["kind"] = "ReplicaSet"
    del rs["spec"]["template"]["spec"]["containers"][0]["env"]
    apps.create_namespaced_replica_set("shop", rs)
    scale = apps.patch_namespaced_replica_set_scale("solo", "shop", {"spec": {"replicas": 3}})
    assert scale.kind == "Scale" and scale.spec.replicas == 3
    assert len(core.list_namespaced_pod("shop", label_selector="app=solo").items) == 3


def test_job_creation_starts_pods_and_copied_jobs_are_refused(
    cluster: SandboxCluster, api: k8s.ApiClient, core: k8s.CoreV1Api
) -> None:
    cluster.load([namespace("shop")])
    batch = k8s.BatchV1Api(api)
    job = {
        "metadata": {"name": "export-1", "namespace": "shop"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "export", "image": "export:1"}]}
            }
        },
    }
    created = batch.create_namespaced_job("shop", job)
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    (job_pod,) = core.list_namespaced_pod("shop", label_selector="job-name=export-1").items
    assert job_pod.metadata.owner_references[0].kind == "Job" and job_pod.status.phase == "Running"
    assert batch.read_namespaced_job("export-1", "shop").status.active == 1
    copied = api.sanitize_for_serialization(batch.read_namespaced_job("export-1", "shop"))
    copied["metadata"] = {"name": "export-2", "namespace": "shop"}
    copied.pop("status")
    with pytest.raises(k8s.exceptions.ApiException) as raised:
        batch.create_namespaced_job("shop", copied)
    assert raised.value.status == 422 and "selector" in raised.value.body


def test_new_pods_avoid_cordoned_nodes(
    web: k8s.V1Deployment, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    core.patch_node("node-a", {"spec": {"unschedulable": True}})
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 6}})
    new_nodes = sorted(p.spec.node_name for p in core.list_namespaced_pod("shop").items)
    assert new_nodes.count("node-a") == 2, "existing pods stay; the three new ones avoid the cordoned node"
    core.patch_node("node-b", {"spec": {"unschedulable": True}})
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 7}})
    pending = core.list_namespaced_pod("shop", field_selector="status.phase=Pending").items
    assert len(pending) == 1
    (condition,) = pending[0].status.conditions
    assert condition.reason == "Unschedulable" and "2 node(s) were unschedulable" in condition.message


def test_recreate_strategy_replaces_all_pods(
    cluster: SandboxCluster, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    cluster.load([namespace("shop")])
    manifest = deployment(replicas=2)
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    apps.create_namespaced_deployment("shop", manifest)
    apps.patch_namespaced_deployment(
        "web", "shop", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}}
    )
    rss = _replica_sets(apps)
    assert (rss["1"].spec.replicas, rss["2"].spec.replicas) == (0, 2)
    assert {p.spec.containers[0].image for p in core.list_namespaced_pod("shop").items} == {"web:2"}


def test_delete_collection_by_label(
    web: k8s.V1Deployment, cluster: SandboxCluster, core: k8s.CoreV1Api, api: k8s.ApiClient
) -> None:
    cluster.load(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": n, "namespace": "shop", "labels": {"tier": t}},
            }
            for n, t in (("a", "x"), ("b", "x"), ("c", "y"))
        ]
    )
    core.delete_collection_namespaced_config_map("shop", label_selector="tier=x")
    assert [c["metadata"]["name"] for c in cluster.list("configmaps", "shop")] == ["c"]
    assert cluster.mutations[-1].verb == "deletecollection"
