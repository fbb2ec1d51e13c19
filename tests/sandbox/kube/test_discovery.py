"""Discovery documents and the routing of unknown paths, as the real client reads them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import KubeApiServer, SandboxCluster


def _get(server: KubeApiServer, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.base_url + path, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_version_and_core_group(api: k8s.ApiClient) -> None:
    assert k8s.VersionApi(api).get_code().major == "1"
    assert k8s.CoreApi(api).get_api_versions().versions == ["v1"]
    resources = {r.name: r for r in k8s.CoreV1Api(api).get_api_resources().resources}
    assert resources["pods"].namespaced and resources["pods"].kind == "Pod"
    assert not resources["nodes"].namespaced
    assert resources["pods/log"].verbs == ["get"]
    assert resources["pods/eviction"].group == "policy" and resources["pods/eviction"].kind == "Eviction"
    assert {"namespaces", "events", "services", "endpoints", "configmaps", "secrets"} <= resources.keys()
    assert {
        "persistentvolumeclaims",
        "persistentvolumes",
        "serviceaccounts",
        "resourcequotas",
        "limitranges",
    } <= resources.keys()


def test_named_groups_list_their_resources(api: k8s.ApiClient) -> None:
    groups = {g.name: g for g in k8s.ApisApi(api).get_api_versions().groups}
    assert groups["autoscaling"].preferred_version.version == "v2"
    for group in (
        "apps",
        "batch",
        "networking.k8s.io",
        "coordination.k8s.io",
        "policy",
        "storage.k8s.io",
        "events.k8s.io",
    ):
        assert group in groups
    apps = {r.name: r for r in k8s.AppsV1Api(api).get_api_resources().resources}
    assert apps["deployments/scale"].kind == "Scale" and apps["deployments/scale"].group == "autoscaling"
    assert {"statefulsets/scale", "replicasets/scale", "daemonsets"} <= apps.keys()
    batch = {r.name for r in k8s.BatchV1Api(api).get_api_resources().resources}
    assert {"jobs", "cronjobs"} <= batch
    hpa = {r.name for r in k8s.AutoscalingV2Api(api).get_api_resources().resources}
    assert "horizontalpodautoscalers" in hpa
    for api_class, names in (
        (k8s.NetworkingV1Api, {"networkpolicies", "ingresses"}),
        (k8s.CoordinationV1Api, {"leases"}),
        (k8s.PolicyV1Api, {"poddisruptionbudgets"}),
        (k8s.StorageV1Api, {"storageclasses"}),
    ):
        assert names <= {r.name for r in api_class(api).get_api_resources().resources}


def test_generic_kind_appears_in_discovery(cluster: SandboxCluster, server: KubeApiServer) -> None:
    cluster.load(
        [
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {"name": "tls", "namespace": "shop"},
            }
        ]
    )
    code, group_list = _get(server, "/apis")
    assert code == 200
    assert "cert-manager.io" in [g["name"] for g in group_list["groups"]]
    code, resources = _get(server, "/apis/cert-manager.io/v1")
    assert code == 200
    assert resources["resources"][0] | {"verbs": None} == {
        "name": "certificates",
        "singularName": "certificate",
        "namespaced": True,
        "kind": "Certificate",
        "verbs": None,
    }


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/apis/nope.example.com/v1", 404, "NotFound"),
        ("/api/v1/widgets", 404, "NotFound"),
        ("/api/v1/namespaces/shop/pods/p/attach", 404, "NotFound"),
        ("/api/v1/watch/pods", 400, "BadRequest"),
        ("/api/v1/pods?watch=true", 400, "BadRequest"),
        ("/api/v1/namespaces/shop/nodes", 404, "NotFound"),
    ],
)
def test_unknown_paths_and_watches_answer_a_status(
    server: KubeApiServer, path: str, code: int, reason: str
) -> None:
    status, body = _get(server, path)
    assert status == code
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == reason and body["code"] == code


def test_watch_through_the_client_raises_bad_request(core: k8s.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("default", watch=True)
    assert raised.value.status == 400
    assert "watch is not supported" in raised.value.body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/namespaces/default/configmaps"),
        ("PATCH", "/api/v1/namespaces/default/configmaps"),
        ("POST", "/api/v1/pods"),
        ("POST", "/api/v1/namespaces/default/configmaps/x"),
        ("POST", "/apis/events.k8s.io/v1/namespaces/default/events"),
    ],
)
def test_unsupported_verbs_are_405(
    server: KubeApiServer, cluster: SandboxCluster, method: str, path: str
) -> None:
    request = urllib.request.Request(
        server.base_url + path, data=b"{}", method=method, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(raised.value.read())
    assert raised.value.code == 405 and body["reason"] == "MethodNotAllowed"
    assert cluster.mutations[-1].code == 405, "refused writes are recorded too"
