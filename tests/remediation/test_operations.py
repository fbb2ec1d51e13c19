"""The operation registry against the sandbox API server through the real client: each plan's
diff, blast radius and undo, dry runs that change nothing, and the refusals."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from bot.remediation import operations
from bot.remediation.kube_write import KubeWriter, WriteError
from tests.sandbox.kube.conftest import api, apps, cluster, core, deployment, namespace, node, server  # noqa: F401


@pytest.fixture
def writer(api):  # noqa: F811
    return KubeWriter(api)


@pytest.fixture
def shop(cluster, apps):  # noqa: F811
    cluster.load([namespace("shop"), node("node-a"), node("node-b")])
    manifest = deployment(replicas=2)
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"memory": "256Mi", "cpu": "250m"}, "requests": {"memory": "256Mi", "cpu": "100m"}}
    apps.create_namespaced_deployment("shop", manifest)
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example/web:2.0.0"}]}}}})
    cluster.clear_mutations()
    return cluster


def test_rollback_returns_to_the_previous_template_and_captures_the_undo(shop, writer):
    plan = operations.plan(writer, "deployment.rollback", {"namespace": "shop", "name": "web"})
    assert plan.diff == [("spec.template (images)", ["registry.example/web:2.0.0"], ["registry.example/web:1.0.0"])]
    assert plan.pods_affected == 2 and plan.undo["method"] == "patch"
    plan.write(writer, True)
    assert shop.get("Deployment", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("2.0.0")
    plan.write(writer, False)
    assert shop.get("Deployment", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.0.0")
    operations.apply_undo(writer, plan.undo)
    assert shop.get("Deployment", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["image"].endswith("2.0.0")
    assert [m.dry_run for m in shop.mutations] == [True, False, False]


def test_memory_goes_up_only_and_the_request_follows_when_it_must(shop, writer):
    values = {"namespace": "shop", "kind": "Deployment", "name": "web", "container": "app", "limit": "512Mi"}
    plan = operations.plan(writer, "container.set_memory", values)
    assert plan.diff == [("containers[app].resources.limits.memory", "256Mi", "512Mi")]
    plan.write(writer, False)
    resources = shop.get("Deployment", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["memory"] == "512Mi" and resources["requests"]["memory"] == "256Mi"
    with pytest.raises(WriteError, match="not above"):
        operations.plan(writer, "container.set_memory", {**values, "limit": "128Mi"})
    with pytest.raises(WriteError, match="no container"):
        operations.plan(writer, "container.set_cpu", {**values, "container": "sidecar", "limit": "1"})


def test_scale_respects_an_hpa_by_moving_its_bounds(shop, writer, api):  # noqa: F811
    plan = operations.plan(writer, "deployment.scale", {"namespace": "shop", "name": "web", "replicas": 4})
    assert plan.replica_factor == 2.0 and plan.undo == {"method": "scale", "kind": "Deployment", "namespace": "shop",
                                                         "name": "web", "replicas": 2}
    k8s.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler("shop", {
        "metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                 "name": "web"}, "minReplicas": 2, "maxReplicas": 3}})
    plan = operations.plan(writer, "deployment.scale", {"namespace": "shop", "name": "web", "replicas": 6})
    assert plan.diff == [("HorizontalPodAutoscaler web spec.maxReplicas", 3, 6)] and plan.replica_factor == 2.0
    plan.write(writer, False)
    assert shop.get("HorizontalPodAutoscaler", "shop", "web")["spec"]["maxReplicas"] == 6
    operations.apply_undo(writer, plan.undo)
    assert shop.get("HorizontalPodAutoscaler", "shop", "web")["spec"]["maxReplicas"] == 3


def test_drain_cordons_and_evicts_but_stops_at_a_budget(shop, writer, api):  # noqa: F811
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget("shop", {
        "metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})
    node_name = next(p for p in shop.list("Pod"))["spec"]["nodeName"]
    plan = operations.plan(writer, "node.drain", {"name": node_name})
    assert plan.pods_affected >= 1
    with pytest.raises(WriteError, match="PodDisruptionBudgets refused") as refused:
        plan.write(writer, False)
    assert refused.value.kind == "refused"
    assert shop.get("Node", None, node_name)["spec"]["unschedulable"] is True, "cordoned first"
    operations.apply_undo(writer, plan.undo)
    assert not shop.get("Node", None, node_name)["spec"].get("unschedulable")


def test_inputs_are_typed_and_never_commands(writer):
    with pytest.raises(operations.InputError, match="namespace"):
        operations.validate_input("deployment.restart", {"namespace": "shop; kubectl delete ns", "name": "web"})
    with pytest.raises(operations.InputError, match="replicas"):
        operations.validate_input("deployment.scale", {"namespace": "shop", "name": "web", "replicas": -1})
    with pytest.raises(operations.InputError, match="unknown operation"):
        operations.validate_input("shell.exec", {})
    with pytest.raises(operations.InputError, match="Extra inputs"):
        operations.validate_input("node.cordon", {"name": "a", "command": "rm -rf /"})
