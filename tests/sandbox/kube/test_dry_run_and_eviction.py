"""dryRun=All changes nothing and is recorded; evictions honour PodDisruptionBudgets."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import SandboxCluster
from tests.sandbox.kube.conftest import deployment, namespace, status_of


@pytest.fixture
def web(cluster: SandboxCluster, apps: k8s.AppsV1Api) -> SandboxCluster:
    cluster.load([namespace("shop")])
    apps.create_namespaced_deployment("shop", deployment(replicas=2))
    cluster.clear_mutations()
    return cluster


def _snapshot(cluster: SandboxCluster) -> list[dict]:
    return [cluster.list(kind) for kind in ("deployments", "replicasets", "pods", "events")]


def test_dry_run_writes_change_nothing_and_are_recorded(
    web: SandboxCluster, apps: k8s.AppsV1Api, core: k8s.CoreV1Api
) -> None:
    before = _snapshot(web)
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:9"}]}}}}
    preview = apps.patch_namespaced_deployment("web", "shop", image, dry_run="All")
    assert preview.spec.template.spec.containers[0].image == "web:9", "the response shows the result"
    assert preview.metadata.generation == 2
    scale = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 9}}, dry_run="All")
    assert scale.spec.replicas == 9
    created = core.create_namespaced_config_map("shop", {"metadata": {"name": "x"}}, dry_run="All")
    assert created.metadata.uid
    victim = core.list_namespaced_pod("shop").items[0].metadata.name
    core.delete_namespaced_pod(victim, "shop", dry_run="All")
    apps.delete_namespaced_deployment("web", "shop", body=k8s.V1DeleteOptions(dry_run=["All"]))
    core.create_namespaced_pod_eviction(
        victim,
        "shop",
        {"metadata": {"name": victim, "namespace": "shop"}, "deleteOptions": {"dryRun": ["All"]}},
    )
    assert _snapshot(web) == before
    assert web.get("ConfigMap", "shop", "x") is None
    recorded = [(m.verb, m.kind, m.subresource, m.dry_run, m.code) for m in web.mutations]
    assert recorded == [
        ("patch", "Deployment", None, True, 200),
        ("patch", "Deployment", "scale", True, 200),
        ("create", "ConfigMap", None, True, 201),
        ("delete", "Pod", None, True, 200),
        ("delete", "Deployment", None, True, 200),
        ("create", "Pod", "eviction", True, 201),
    ]
    assert (
        web.mutations[0].body == image
        and web.mutations[0].name == "web"
        and web.mutations[0].namespace == "shop"
    )
    assert web.mutations[2].name == "x", "a create's name comes from its body"
    assert web.mutations[0]["path"] == "/apis/apps/v1/namespaces/shop/deployments/web"


def test_dry_run_still_validates(web: SandboxCluster, apps: k8s.AppsV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": -3}}, dry_run="All")
    assert raised.value.status == 422
    with pytest.raises(ApiException) as bad_value:
        apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 3}}, dry_run="Sometimes")
    assert bad_value.value.status == 400
    assert [(m.dry_run, m.code) for m in web.mutations] == [(True, 422), (False, 400)]


def test_failed_writes_are_recorded_with_their_code(web: SandboxCluster, core: k8s.CoreV1Api) -> None:
    with pytest.raises(ApiException):
        core.delete_namespaced_pod("ghost", "shop")
    (mutation,) = web.mutations
    assert (mutation.verb, mutation.name, mutation.code, mutation.dry_run) == ("delete", "ghost", 404, False)


def test_eviction_deletes_and_the_controller_replaces(web: SandboxCluster, core: k8s.CoreV1Api) -> None:
    victim = core.list_namespaced_pod("shop").items[0].metadata.name
    core.create_namespaced_pod_eviction(
        victim, "shop", k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=victim, namespace="shop"))
    )
    names = [p.metadata.name for p in core.list_namespaced_pod("shop").items]
    assert victim not in names and len(names) == 2
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_pod_eviction("ghost", "shop", {"metadata": {"name": "ghost"}})
    assert missing.value.status == 404


def test_eviction_that_would_break_a_budget_is_429(
    web: SandboxCluster, core: k8s.CoreV1Api, api: k8s.ApiClient
) -> None:
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        "shop",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    victim = core.list_namespaced_pod("shop").items[0].metadata.name
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod_eviction(victim, "shop", {"metadata": {"name": victim}})
    assert raised.value.status == 429
    status = status_of(raised.value)
    assert status["reason"] == "TooManyRequests"
    assert (
        status["details"]["causes"][0]["message"]
        == "The disruption budget web needs 2 healthy pods and has 2 currently"
    )
    assert web.get("Pod", "shop", victim) is not None
    k8s.PolicyV1Api(api).patch_namespaced_pod_disruption_budget("web", "shop", {"spec": {"minAvailable": 1}})
    core.create_namespaced_pod_eviction(victim, "shop", {"metadata": {"name": victim}})
    assert web.get("Pod", "shop", victim) is None
