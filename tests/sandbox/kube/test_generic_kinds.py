"""Kinds the server does not know in advance, served generically from a scenario's objects."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import SandboxCluster, pluralize
from tests.sandbox.kube.conftest import status_of

CERTIFICATE = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "token-tls", "namespace": "auth", "labels": {"app": "token"}},
    "spec": {"secretName": "token-tls", "dnsNames": ["token.auth.svc"]},
    "status": {"notAfter": "2026-09-01T00:00:00Z", "conditions": [{"type": "Ready", "status": "False"}]},
}
ISSUER = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "ClusterIssuer",
    "metadata": {"name": "internal-ca"},
    "spec": {"ca": {"secretName": "ca"}},
}


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("Certificate", "certificates"),
        ("NetworkPolicy", "networkpolicies"),
        ("Gateway", "gateways"),
        ("Ingress", "ingresses"),
        ("Prometheus", "prometheuses"),
        ("Box", "boxes"),
        ("Match", "matches"),
        ("Mesh", "meshes"),
        ("Day", "days"),
    ],
)
def test_pluralize(kind: str, plural: str) -> None:
    assert pluralize(kind) == plural


def test_custom_objects_are_served(cluster: SandboxCluster, api: k8s.ApiClient) -> None:
    cluster.load([CERTIFICATE, ISSUER])
    custom = k8s.CustomObjectsApi(api)
    served = custom.get_namespaced_custom_object("cert-manager.io", "v1", "auth", "certificates", "token-tls")
    assert {k: v for k, v in served.items() if k != "metadata"} == {
        k: v for k, v in CERTIFICATE.items() if k != "metadata"
    }
    assert served["metadata"].items() >= CERTIFICATE["metadata"].items()
    assert served["metadata"]["uid"] and served["metadata"]["resourceVersion"], (
        "missing system fields are filled"
    )
    listing = custom.list_namespaced_custom_object(
        "cert-manager.io", "v1", "auth", "certificates", label_selector="app=token"
    )
    assert listing["kind"] == "CertificateList"
    assert listing["items"][0]["kind"] == "Certificate", "custom resource list items keep apiVersion and kind"
    assert (
        custom.get_cluster_custom_object("cert-manager.io", "v1", "clusterissuers", "internal-ca")["spec"]
        == ISSUER["spec"]
    )
    assert cluster.get("ClusterIssuer", None, "internal-ca") is not None
    assert cluster.get("certificates.cert-manager.io", "auth", "token-tls") is not None


def test_custom_objects_patch_create_and_delete(cluster: SandboxCluster, api: k8s.ApiClient) -> None:
    cluster.load([CERTIFICATE])
    custom = k8s.CustomObjectsApi(api)
    patched = custom.patch_namespaced_custom_object(
        "cert-manager.io", "v1", "auth", "certificates", "token-tls", {"spec": {"renewBefore": "720h"}}
    )
    assert patched["spec"]["renewBefore"] == "720h" and patched["spec"]["dnsNames"] == ["token.auth.svc"]
    assert patched["metadata"]["generation"] == 2, "a generic object gets a generation once its spec changes"
    with pytest.raises(ApiException) as strategic:
        custom.patch_namespaced_custom_object(
            "cert-manager.io",
            "v1",
            "auth",
            "certificates",
            "token-tls",
            {"spec": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert strategic.value.status == 415, "custom resources refuse strategic merge, as on a real server"
    body = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "other"},
        "spec": {"secretName": "x"},
    }
    created = custom.create_namespaced_custom_object("cert-manager.io", "v1", "auth", "certificates", body)
    assert created["metadata"]["uid"] and created["metadata"]["namespace"] == "auth"
    deleted = custom.delete_namespaced_custom_object("cert-manager.io", "v1", "auth", "certificates", "other")
    assert deleted["metadata"]["name"] == "other", "deleting a custom resource returns the object"
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object("cert-manager.io", "v1", "auth", "certificates", "other")
    assert missing.value.status == 404
    assert status_of(missing.value)["message"] == 'certificates.cert-manager.io "other" not found'


def test_events_k8s_io_view_of_core_events(cluster: SandboxCluster, api: k8s.ApiClient) -> None:
    cluster.load(
        [],
        events=[
            {
                "involvedObject": {"kind": "Node", "name": "node-a"},
                "type": "Warning",
                "reason": "NodeNotReady",
                "message": "Node node-a status is now: NodeNotReady",
                "count": 2,
                "firstTimestamp": "2026-09-03T16:00:00Z",
                "lastTimestamp": "2026-09-03T16:10:00Z",
                "source": {"component": "node-controller"},
            }
        ],
    )
    (event,) = k8s.EventsV1Api(api).list_event_for_all_namespaces().items
    assert event.metadata.namespace == "default", "events about cluster-scoped objects live in default"
    assert (event.reason, event.note, event.regarding.name, event.deprecated_count) == (
        "NodeNotReady",
        "Node node-a status is now: NodeNotReady",
        "node-a",
        2,
    )
    assert event.reporting_controller == "node-controller" and event.event_time is not None
    with pytest.raises(ApiException) as read_only:
        k8s.EventsV1Api(api).create_namespaced_event(
            "default", {"metadata": {"name": "x"}, "eventTime": "2026-09-03T16:00:00.000000Z"}
        )
    assert read_only.value.status == 405
