"""The drift digest end to end: manifests on disk against the sandbox API server over HTTP."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from bot.context.clusters import ClusterAccess, ClusterDirectory
from bot.digests.drift import DriftConfig, build
from bot.digests.model import DigestContext, DigestReport
from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client
from tests.digests.golden import check_digest_golden

MANIFESTS = Path(__file__).parent / "drift_manifests"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EDITED_AT = "2024-04-30T09:15:00Z"
WEB = "registry.example.com/shop/web"
LAST_APPLIED = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}


def web_template(image: str, cpu: str = "500m", log_level: str = "info") -> dict:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "LOG_LEVEL", "value": log_level},
                        {
                            "name": "DB_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "web-db", "key": "password"}},
                        },
                    ],
                    "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
        },
    }


def managed(manager: str, time: str, fields: dict) -> dict:
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


def deployment(
    name: str,
    template: dict,
    replicas: int,
    labels: dict,
    namespace: str = "shop",
    managed_fields: list | None = None,
    annotations: dict | None = None,
) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "generation": 4,
            "annotations": {"deployment.kubernetes.io/revision": "4", **(annotations or {})},
            "managedFields": managed_fields or [],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(template["metadata"]["labels"])},
            "strategy": {"type": "RollingUpdate"},
            "revisionHistoryLimit": 10,
            "template": template,
        },
        "status": {"replicas": replicas},
    }


def replica_set(owner: str, revision: int, template: dict, namespace: str = "shop") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{owner}-rev{revision}",
            "namespace": namespace,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "labels": dict(template["metadata"]["labels"]),
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "controller": True}
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": dict(template["metadata"]["labels"])},
            "template": copy.deepcopy(template),
        },
    }


def config_map(name: str, labels: dict, annotations: dict | None = None, data: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": data or {"k": "v"},
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "annotations": annotations or {}},
    }


def service() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web", "app.kubernetes.io/part-of": "shop"},
        },
        "spec": {
            "selector": {"app": "web"},
            "type": "ClusterIP",
            "clusterIP": "10.0.0.12",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


@contextmanager
def sandbox(objects: list[dict]) -> Iterator[tuple[SandboxCluster, str]]:
    cluster = SandboxCluster(now=NOW)
    cluster.load(objects)
    with KubeApiServer(cluster) as server:
        yield cluster, server.base_url


def run(url: str, *sources: dict) -> DigestReport:
    directory = ClusterDirectory(ClusterAccess(None, lambda: sandbox_api_client(url), None))
    return build(
        DriftConfig(sources=list(sources)), DigestContext(clusters=directory, now=NOW, base_dir=MANIFESTS)
    )


def by_key(report: DigestReport) -> dict:
    return {f.key: f for f in report.findings}


def yaml_objects(relative: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / relative).read_text()) if d]


def create(api: k8s.ApiClient, document: dict) -> None:
    namespace = document["metadata"].get("namespace", "shop")
    if document["kind"] == "Deployment":
        k8s.AppsV1Api(api).create_namespaced_deployment(namespace, document)
    elif document["kind"] == "Service":
        k8s.CoreV1Api(api).create_namespaced_service(namespace, document)
    else:
        k8s.CoreV1Api(api).create_namespaced_config_map(namespace, document)


def test_a_source_applied_as_declared_is_no_drift_whatever_the_cluster_defaulted():
    manifests = [yaml_objects("shop/apps/web.yaml"), yaml_objects("shop/apps/orders.yml")]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    with sandbox([namespace]) as (cluster, url), sandbox_api_client(url) as api:
        for document in (
            d for docs in manifests for d in docs
        ):  # created through the API: admission defaults
            create(api, document)
        live = cluster.get("Deployment", "shop", "web")
        assert live["spec"]["strategy"]["type"] == "RollingUpdate"  # defaults the manifest never wrote
        assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] == "1Gi"
        assert cluster.list("Pod", "shop")  # the controllers ran: pods and ReplicaSets are never "extra"
        report = run(url, {"path": "shop", "namespace": "shop"})
    assert report.clean, (report.findings, report.problems)
    assert report.headline == "No drift: 4 objects match what is declared in shop"
    assert report.summary["objects_compared"] == 4


def shop_drifted() -> list[dict]:
    image_by_hand = managed(
        "kubectl-edit",
        EDITED_AT,
        {
            "f:spec": {
                "f:template": {
                    "f:spec": {
                        "f:containers": {
                            'k:{"name":"web"}': {
                                "f:image": {},
                                "f:env": {'k:{"name":"LOG_LEVEL"}': {"f:value": {}}},
                            }
                        }
                    }
                }
            }
        },
    )
    scaled = managed("kubectl-scale", "2024-04-29T22:00:00Z", {"f:spec": {"f:replicas": {}}})
    web = deployment(
        "web",
        web_template(f"{WEB}:1.5.0", cpu="1", log_level="debug"),
        5,
        {"app": "web", "app.kubernetes.io/part-of": "shop", "team": "checkout"},
        managed_fields=[
            managed(
                "kubectl-client-side-apply",
                "2024-04-01T08:00:00Z",
                {"f:metadata": {"f:labels": {"f:team": {}}}},
            ),
            image_by_hand,
            scaled,
        ],
        annotations=LAST_APPLIED,
    )
    orders_template = {
        "metadata": {"labels": {"app": "orders"}},
        "spec": {
            "containers": [
                {
                    "name": "orders",
                    "image": "registry.example.com/shop/orders:2.1.0",
                    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
                }
            ]
        },
    }
    orders = deployment("orders", orders_template, 7, {"app": "orders", "app.kubernetes.io/part-of": "shop"})
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders"},
            "minReplicas": 2,
            "maxReplicas": 10,
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-x",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/part-of": "shop"},
            "annotations": LAST_APPLIED,
        },
        "spec": {"containers": [{"name": "web", "image": f"{WEB}:1.5.0"}]},
    }
    return [
        web,
        orders,
        hpa,
        service(),
        pod,
        replica_set("web", 2, web_template(f"{WEB}:1.3.0")),
        replica_set("web", 3, web_template(f"{WEB}:1.4.0")),
        replica_set("web", 4, web_template(f"{WEB}:1.5.0")),
        config_map("old-flags", {"app.kubernetes.io/part-of": "shop"}, LAST_APPLIED),  # extra
        config_map("other-team", {"app.kubernetes.io/part-of": "search"}, LAST_APPLIED),  # not this source's
        config_map("made-by-hand", {"app.kubernetes.io/part-of": "shop"}),
    ]  # does not look applied


def test_differences_name_field_declared_live_who_and_when_with_safe_fixes():
    with sandbox(shop_drifted()) as (_, url):
        report = run(url, {"path": "shop", "namespace": "shop"})
    found = by_key(report)
    prefix = "drift/default/Deployment/shop/web/"
    containers = "spec.template.spec.containers[web]"
    image = found[f"{prefix}{containers}.image"]
    assert image.section == "Changed by hand" and image.severity == "warning"
    assert image.since == datetime(2024, 4, 30, 9, 15, tzinfo=UTC)
    assert f"declared {WEB}:1.4.0, live {WEB}:1.5.0" in image.detail
    assert "kubectl-edit" in image.detail and "not the user" in image.detail
    assert image.fix is not None and image.fix.runbook == "rollback-deployment"
    assert dict(image.fix.params) == {"namespace": "shop", "name": "web", "to_revision": 3}
    replicas = found[f"{prefix}spec.replicas"]
    assert replicas.section == "Changed by hand" and "declared 3, live 5" in replicas.detail
    assert replicas.fix is not None and replicas.fix.runbook == "scale-deployment"
    assert dict(replicas.fix.params) == {"namespace": "shop", "name": "web", "replicas": 3}
    cpu = found[f"{prefix}{containers}.resources.requests.cpu"]
    assert (
        cpu.section == "Differs from declared" and "declared 500m, live 1" in cpu.detail and cpu.fix is None
    )
    assert f"{prefix}{containers}.resources.requests.memory" not in found  # 1024Mi == 1Gi
    env = found[f"{prefix}{containers}.env[LOG_LEVEL].value"]
    assert env.section == "Changed by hand" and "declared info, live debug" in env.detail
    label = found[f"{prefix}metadata.labels.team"]
    assert label.section == "Changed by hand" and "declared storefront, live checkout" in label.detail
    assert not [k for k in found if "/orders/" in k]  # replicas 7 are the HPA's; 0.25 == 250m
    missing = found["drift/default/ConfigMap/shop/orders-config/object"]
    assert (
        missing.section == "Missing"
        and missing.severity == "critical"
        and "apps/orders.yml line" in missing.detail
    )
    extra = found["drift/default/ConfigMap/shop/old-flags/object"]
    assert extra.section == "Extra" and "last-applied-configuration" in extra.detail
    assert not [
        k for k in found if "other-team" in k or "made-by-hand" in k or "/Pod/" in k or "ReplicaSet" in k
    ]
    assert report.findings[0] is missing  # critical first
    assert report.headline == "3 objects drifted (5 fields, 1 missing, 1 extra)"
    assert not report.problems


def test_an_argo_cd_owned_object_differs_from_its_git_source_and_never_gets_a_fix():
    template = web_template("registry.example.com/shop/checkout:5.1.0")
    template["metadata"]["labels"] = {"app": "checkout"}
    template["spec"]["containers"][0]["name"] = "checkout"
    old = copy.deepcopy(template)
    old["spec"]["containers"][0]["image"] = "registry.example.com/shop/checkout:5.0.0"
    live = deployment(
        "checkout",
        template,
        4,
        {"app": "checkout", "argocd.argoproj.io/instance": "shop"},
        managed_fields=[managed("argocd-controller", "2024-04-28T10:00:00Z", {"f:spec": {"f:replicas": {}}})],
    )
    with sandbox([live, replica_set("checkout", 3, old)]) as (_, url):
        report = run(url, {"path": "argo"})
    assert {f.section for f in report.findings} == {"Differs from its Git source"}
    assert len(report.findings) == 2 and all(f.fix is None for f in report.findings)
    replicas = by_key(report)["drift/default/Deployment/shop/checkout/spec.replicas"]
    assert "owned by Argo CD" in replicas.detail and "declared 2, live 4" in replicas.detail


@pytest.mark.skipif(
    shutil.which("kubectl") is None and shutil.which("kustomize") is None,
    reason="neither kustomize nor kubectl is installed",
)
def test_a_kustomize_overlay_is_compared_as_built():
    template = {
        "metadata": {"labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "registry.example.com/payments/api:3.0.0"}]},
    }
    live = deployment("api", template, 4, {"app.kubernetes.io/part-of": "payments"}, namespace="payments")
    with sandbox([live]) as (_, url):
        report = run(url, {"path": "overlay/prod"})
    (image,) = report.findings
    assert image.key == "drift/default/Deployment/payments/api/spec.template.spec.containers[api].image"
    assert (
        "declared registry.example.com/payments/api:3.1.0, live registry.example.com/payments/api:3.0.0"
        in image.detail
    )
    assert image.fix is None  # no earlier revision runs 3.1.0
    assert any("built with kubectl kustomize" in n or "built with kustomize" in n for n in report.notes)


def test_a_malformed_manifest_is_a_problem_and_other_files_drift_is_still_reported():
    live = deployment("web", web_template(f"{WEB}:1.4.0"), 1, {"app": "web"})
    with sandbox([live]) as (_, url):
        report = run(url, {"path": "broken"})
    assert any(p.startswith("broken: a-bad.yaml line 15: not valid YAML") for p in report.problems)
    assert "broken: b-no-name.yaml line 1: the ConfigMap has no metadata.name" in report.problems
    replicas = by_key(report)["drift/default/Deployment/shop/web/spec.replicas"]
    assert "declared 3, live 1" in replicas.detail and replicas.fix is not None
    assert "drift/default/ConfigMap/shop/fine-before-the-error/object" in by_key(report)
    assert any("extra objects not looked for" in n for n in report.notes)


def test_an_unreachable_or_unknown_cluster_is_a_problem_not_an_exception():
    report = run("http://127.0.0.1:9", {"path": "argo"})
    assert report.findings == () and report.problems
    assert "could not read which kinds apps/v1 serves (API server unreachable)" in report.problems[0]
    assert report.headline.startswith("No drift found in the 0 objects that could be compared")
    directory = ClusterDirectory(None, {"prod": ClusterAccess("prod", None, None)})
    unknown = build(
        DriftConfig(sources=[{"path": "argo", "cluster": "staging"}, {"path": "argo", "cluster": "prod"}]),
        DigestContext(clusters=directory, now=NOW, base_dir=MANIFESTS),
    )
    assert unknown.problems == (
        "argo: cluster staging is not configured; nothing compared",
        "argo: cluster prod has no Kubernetes API configured; nothing compared",
    )


def test_a_kind_the_cluster_does_not_serve_is_a_problem(tmp_path):
    (tmp_path / "app.yaml").write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\n"
        "metadata: {name: shop, namespace: argocd}\nspec: {project: default}\n"
    )
    with sandbox([]) as (_, url):
        report = run(url, {"path": str(tmp_path)})
    assert report.problems == (
        f"{tmp_path}: cluster default does not serve argoproj.io/v1alpha1 Application; "
        "1 declared object(s) not compared",
    )


def test_the_digest_as_slack_receives_it():
    with sandbox(shop_drifted()) as (_, url):
        report = run(url, {"path": "shop", "namespace": "shop"})
    rendered = check_digest_golden("digest_drift_shop", report)
    assert [b["text"]["text"] for b in rendered["blocks"][0:1]] == ["Drift digest · 01 May 2024"]
