"""Create, read, list, replace and delete through the real client, with real API error statuses."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import SandboxCluster
from tests.sandbox.kube.conftest import NOW, deployment, namespace, node, pod, status_of


def _configmap(name: str, data: dict[str, str], ns: str = "shop") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


def test_configmap_lifecycle_fills_server_fields(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([namespace("shop")])
    created = core.create_namespaced_config_map("shop", _configmap("settings", {"region": "eu"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp == NOW
    read = core.read_namespaced_config_map("settings", "shop")
    assert read.data == {"region": "eu"}

    read.data["region"] = "us"
    replaced = core.replace_namespaced_config_map("settings", "shop", read)
    assert replaced.data == {"region": "us"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    status = core.delete_namespaced_config_map("settings", "shop")  # v37 returns the raw Status dict
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "settings"
    assert cluster.get("ConfigMap", "shop", "settings") is None
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_config_map("settings", "shop")
    assert raised.value.status == 404
    assert status_of(raised.value)["message"] == 'configmaps "settings" not found'


def test_create_errors_match_a_real_api_server(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([namespace("shop")])
    core.create_namespaced_config_map("shop", _configmap("settings", {}))
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("shop", _configmap("settings", {}))
    assert exists.value.status == 409 and '"reason":"AlreadyExists"' in exists.value.body
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("nowhere", _configmap("settings", {}, ns="nowhere"))
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)["message"] == 'namespaces "nowhere" not found'
    with pytest.raises(ApiException) as mismatch:
        core.create_namespaced_config_map("default", _configmap("other", {}, ns="shop"))
    assert mismatch.value.status == 400
    with pytest.raises(ApiException) as with_version:
        body = _configmap("again", {})
        body["metadata"]["resourceVersion"] = "12"
        core.create_namespaced_config_map("shop", body)
    assert with_version.value.status == 400 and "resourceVersion should not be set" in with_version.value.body
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_config_map("shop", _configmap("Bad_Name", {}))
    assert bad_name.value.status == 422 and '"reason":"Invalid"' in bad_name.value.body


def test_generate_name(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    body = {"metadata": {"generateName": "probe-", "namespace": "default"}, "data": {}}
    first = core.create_namespaced_config_map("default", body)
    second = core.create_namespaced_config_map("default", body)
    assert first.metadata.name.startswith("probe-") and len(first.metadata.name) == len("probe-") + 5
    assert first.metadata.name != second.metadata.name


def test_stale_resource_version_is_a_conflict(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([namespace("shop"), _configmap("settings", {"a": "1"})])
    first = core.read_namespaced_config_map("settings", "shop")
    second = core.read_namespaced_config_map("settings", "shop")
    first.data = {"a": "2"}
    core.replace_namespaced_config_map("settings", "shop", first)
    second.data = {"a": "3"}
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("settings", "shop", second)
    assert raised.value.status == 409
    assert "the object has been modified" in raised.value.body
    with pytest.raises(ApiException) as patched:
        core.patch_namespaced_config_map(
            "settings",
            "shop",
            {"metadata": {"resourceVersion": second.metadata.resource_version}, "data": {"a": "4"}},
        )
    assert patched.value.status == 409
    assert cluster.get("configmaps", "shop", "settings")["data"] == {"a": "2"}


def test_every_write_bumps_the_global_resource_version(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([namespace("shop")])
    versions = []
    for index in range(3):
        created = core.create_namespaced_config_map("shop", _configmap(f"c{index}", {}))
        versions.append(int(created.metadata.resource_version))
    listing = core.list_namespaced_config_map("shop")
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert int(listing.metadata.resource_version) >= versions[-1]


def test_list_responses_are_typed_lists(
    cluster: SandboxCluster, core: k8s.CoreV1Api, api: k8s.ApiClient
) -> None:
    cluster.load([namespace("shop"), namespace("ops"), pod("a", "shop"), pod("b", "ops"), pod("c", "shop")])
    raw = api.call_api("GET", api.configuration.host + "/api/v1/namespaces/shop/pods")
    raw.read()
    import json

    body = json.loads(raw.data)
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"]
    assert [item["metadata"]["name"] for item in body["items"]] == ["a", "c"]
    assert "kind" not in body["items"][0]
    everywhere = core.list_pod_for_all_namespaces()
    assert sorted(p.metadata.name for p in everywhere.items) == ["a", "b", "c"]


def test_cluster_scoped_nodes_and_cordon(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([node("node-a"), node("node-b")])
    assert [n.metadata.name for n in core.list_node().items] == ["node-a", "node-b"]
    cordoned = core.patch_node("node-a", {"spec": {"unschedulable": True}})
    assert cordoned.spec.unschedulable is True
    assert cluster.get("Node", None, "node-a")["spec"]["unschedulable"] is True
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items] == [
        "node-a"
    ]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["web-1", "web-2"]),
        ("app==web", ["web-1", "web-2"]),
        ("app!=web", ["cache-1", "db-1", "lonely"]),
        ("tier in (front, cache)", ["cache-1", "web-1", "web-2"]),
        ("tier notin (front)", ["cache-1", "db-1", "lonely"]),
        ("tier", ["cache-1", "db-1", "web-1", "web-2"]),
        ("!tier", ["lonely"]),
        ("app=web,track=canary", ["web-2"]),
    ],
)
def test_label_selectors(
    cluster: SandboxCluster, core: k8s.CoreV1Api, selector: str, expected: list[str]
) -> None:
    cluster.load(
        [
            pod("web-1", labels={"app": "web", "tier": "front"}),
            pod("web-2", labels={"app": "web", "tier": "front", "track": "canary"}),
            pod("db-1", labels={"app": "db", "tier": "data"}),
            pod("cache-1", labels={"app": "cache", "tier": "cache"}),
            pod("lonely", labels={"role": "none"}),
        ]
    )
    names = sorted(p.metadata.name for p in core.list_namespaced_pod("shop", label_selector=selector).items)
    assert names == expected


def test_field_selectors_on_pods(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load(
        [
            pod("a", node="node-a"),
            pod("b", node="node-b"),
            pod("c", node=None, phase="Pending", ready=False),
            pod("d", ns="ops", node="node-a"),
        ]
    )
    on_a = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-a")
    assert sorted(p.metadata.name for p in on_a.items) == ["a", "d"]
    pending = core.list_namespaced_pod("shop", field_selector="status.phase=Pending")
    assert [p.metadata.name for p in pending.items] == ["c"]
    unscheduled = core.list_namespaced_pod("shop", field_selector="spec.nodeName=")
    assert [p.metadata.name for p in unscheduled.items] == ["c"]
    by_name = core.list_pod_for_all_namespaces(field_selector="metadata.name=d,metadata.namespace=ops")
    assert [p.metadata.name for p in by_name.items] == ["d"]
    not_running = core.list_namespaced_pod("shop", field_selector="status.phase!=Running")
    assert [p.metadata.name for p in not_running.items] == ["c"]
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("shop", field_selector="status.containerStatuses=x")
    assert raised.value.status == 400 and "field label not supported" in raised.value.body


def test_field_selectors_on_events(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load(
        [pod("web-1")],
        events=[
            {
                "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1"},
                "type": "Warning",
                "reason": "BackOff",
                "message": "Back-off restarting failed container app",
                "count": 4,
                "firstTimestamp": "2026-09-03T16:00:00Z",
                "lastTimestamp": "2026-09-03T16:19:00Z",
            },
            {
                "involvedObject": {"kind": "Deployment", "namespace": "shop", "name": "web"},
                "type": "Normal",
                "reason": "ScalingReplicaSet",
                "message": "Scaled up replica set web-abc to 3",
                "firstTimestamp": "2026-09-03T15:00:00Z",
                "lastTimestamp": "2026-09-03T15:00:00Z",
            },
        ],
    )
    for selector, reasons in (
        ("involvedObject.name=web-1", ["BackOff"]),
        ("involvedObject.kind=Deployment", ["ScalingReplicaSet"]),
        ("involvedObject.namespace=shop,type=Warning", ["BackOff"]),
        ("reason=ScalingReplicaSet", ["ScalingReplicaSet"]),
        ("type!=Warning", ["ScalingReplicaSet"]),
    ):
        events = core.list_namespaced_event("shop", field_selector=selector).items
        assert [e.reason for e in events] == reasons, selector
    event = core.list_namespaced_event("shop", field_selector="reason=BackOff").items[0]
    assert event.metadata.name.startswith("web-1.")
    assert event.involved_object.uid == cluster.get("Pod", "shop", "web-1")["metadata"]["uid"]
    assert event.count == 4


def test_workload_generation_and_status_rules(cluster: SandboxCluster, apps: k8s.AppsV1Api) -> None:
    cluster.load([namespace("shop")])
    created = apps.create_namespaced_deployment("shop", deployment(replicas=1))
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("web", "shop", {"metadata": {"labels": {"team": "a"}}})
    assert labelled.metadata.generation == 1, "metadata changes do not bump the generation"
    spec_change = apps.patch_namespaced_deployment("web", "shop", {"spec": {"minReadySeconds": 5}})
    assert spec_change.metadata.generation == 2
    assert spec_change.status.observed_generation == 2
    ignored = apps.patch_namespaced_deployment("web", "shop", {"status": {"replicas": 42}})
    assert ignored.status.replicas == 1, "the main resource does not write status"
    status = apps.patch_namespaced_deployment_status("web", "shop", {"status": {"replicas": 42}})
    assert status.status.replicas == 42 and status.metadata.generation == 2
    assert cluster.get("Deployment", "shop", "web")["status"]["replicas"] == 42


def test_invalid_workloads_are_rejected(cluster: SandboxCluster, apps: k8s.AppsV1Api) -> None:
    cluster.load([namespace("shop")])
    mismatched = deployment()
    mismatched["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as raised:
        apps.create_namespaced_deployment("shop", mismatched)
    assert raised.value.status == 422 and "does not match template" in raised.value.body
    apps.create_namespaced_deployment("shop", deployment(replicas=1))
    with pytest.raises(ApiException) as immutable:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"selector": {"matchLabels": {"app": "x"}}}})
    assert immutable.value.status == 422 and "field is immutable" in immutable.value.body
    with pytest.raises(ApiException) as negative:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": -1}})
    assert negative.value.status == 422


def test_pod_spec_is_immutable_except_images(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([pod("web-1")])
    patched = core.patch_namespaced_pod(
        "web-1", "shop", {"spec": {"containers": [{"name": "app", "image": "example/app:2"}]}}
    )
    assert patched.spec.containers[0].image == "example/app:2"
    limits = {"spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}]}}
    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_pod("web-1", "shop", limits)
    assert raised.value.status == 422 and "pod updates may not change fields" in raised.value.body


def test_more_builtin_kinds_round_trip(cluster: SandboxCluster, api: k8s.ApiClient) -> None:
    cluster.load([namespace("shop")])
    meta = {"namespace": "shop"}
    k8s.CoreV1Api(api).create_namespaced_service(
        "shop",
        {"metadata": {"name": "web", **meta}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    )
    k8s.CoreV1Api(api).create_namespaced_secret(
        "shop", {"metadata": {"name": "db", **meta}, "type": "Opaque", "data": {"pw": "eA=="}}
    )
    k8s.NetworkingV1Api(api).create_namespaced_network_policy(
        "shop",
        {"metadata": {"name": "deny", **meta}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )
    k8s.CoordinationV1Api(api).create_namespaced_lease(
        "shop", {"metadata": {"name": "leader", **meta}, "spec": {"holderIdentity": "a"}}
    )
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        "shop",
        {
            "metadata": {"name": "web", **meta},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    k8s.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        "shop",
        {
            "metadata": {"name": "web", **meta},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
            },
        },
    )
    k8s.StorageV1Api(api).create_storage_class(
        {"metadata": {"name": "fast"}, "provisioner": "csi.example", "allowVolumeExpansion": True}
    )
    assert k8s.CoreV1Api(api).read_namespaced_service("web", "shop").spec.ports[0].port == 80
    assert k8s.CoreV1Api(api).read_namespaced_secret("db", "shop").data == {"pw": "eA=="}
    assert k8s.NetworkingV1Api(api).read_namespaced_network_policy("deny", "shop").spec.policy_types == [
        "Ingress"
    ]
    assert k8s.CoordinationV1Api(api).read_namespaced_lease("leader", "shop").spec.holder_identity == "a"
    assert k8s.PolicyV1Api(api).read_namespaced_pod_disruption_budget("web", "shop").spec.min_available == 1
    assert (
        k8s.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("web", "shop").spec.max_replicas
        == 5
    )
    assert k8s.StorageV1Api(api).read_storage_class("fast").allow_volume_expansion is True
    assert cluster.get("hpa", "shop", "web")["apiVersion"] == "autoscaling/v2"


def test_pvc_expansion_follows_the_storage_class(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    def pvc(name: str, storage_class: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}},
        }

    cluster.load(
        [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "fast"},
                "provisioner": "x",
                "allowVolumeExpansion": True,
            },
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "fixed"},
                "provisioner": "x",
            },
            pvc("data", "fast"),
            pvc("logs", "fixed"),
        ]
    )
    grow = {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    grown = core.patch_namespaced_persistent_volume_claim("data", "shop", grow)
    assert grown.spec.resources.requests["storage"] == "20Gi"
    assert grown.status.capacity["storage"] == "20Gi"
    with pytest.raises(ApiException) as forbidden:
        core.patch_namespaced_persistent_volume_claim("logs", "shop", grow)
    assert forbidden.value.status == 403 and "must support resize" in forbidden.value.body
    with pytest.raises(ApiException) as shrink:
        core.patch_namespaced_persistent_volume_claim(
            "data", "shop", {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
        )
    assert shrink.value.status == 422


def test_namespace_delete_removes_its_contents(cluster: SandboxCluster, core: k8s.CoreV1Api) -> None:
    cluster.load([pod("a", "shop"), pod("b", "ops")])
    deleted = core.delete_namespace("shop")
    assert deleted["status"]["phase"] == "Terminating"
    assert cluster.get("Namespace", None, "shop") is None
    assert cluster.list("pods") == [cluster.get("Pod", "ops", "b")]
    with pytest.raises(ApiException) as raised:
        core.delete_namespace("default")
    assert raised.value.status == 403
