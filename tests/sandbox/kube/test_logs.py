"""The pods/log subresource: text bodies, options and the API server's errors."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.sandbox.kube import SandboxCluster
from tests.sandbox.kube.conftest import pod, status_of

CURRENT = [
    "2026-09-03T16:15:00Z INFO starting web v2",
    "2026-09-03T16:17:00Z INFO ready",
    "  continuation without a time",
    '{"level":"warn","ts":"2026-09-03T16:19:30.250Z","msg":"slow request"}',
]
PREVIOUS = ["2026-09-03T16:10:00Z INFO starting web v2", "panic: assignment to entry in nil map"]


@pytest.fixture
def logged(cluster: SandboxCluster) -> SandboxCluster:
    waiting = pod("pull-1", containers=("app",))
    waiting["status"]["phase"] = "Pending"
    waiting["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}
    }
    cluster.load(
        [pod("web-1"), pod("multi-1", containers=("app", "proxy")), waiting],
        logs=[
            {"pod": "web-1", "container": "app", "previous": False, "lines": CURRENT},
            {"pod": "web-1", "container": "app", "previous": True, "lines": PREVIOUS, "namespace": "shop"},
            {"pod": "multi-1", "container": "proxy", "previous": False, "lines": ["proxy up"]},
        ],
    )
    return cluster


def test_current_and_previous_logs(logged: SandboxCluster, core: k8s.CoreV1Api) -> None:
    assert core.read_namespaced_pod_log("web-1", "shop") == "\n".join(CURRENT) + "\n"
    assert (
        core.read_namespaced_pod_log("web-1", "shop", container="app", previous=True)
        == "\n".join(PREVIOUS) + "\n"
    )


def test_tail_lines_and_since_seconds(logged: SandboxCluster, core: k8s.CoreV1Api) -> None:
    assert core.read_namespaced_pod_log("web-1", "shop", tail_lines=2) == "\n".join(CURRENT[-2:]) + "\n"
    assert core.read_namespaced_pod_log("web-1", "shop", tail_lines=0) == ""
    # now is 16:20:00; the untimed line inherits 16:17:00 from the line before it
    assert core.read_namespaced_pod_log("web-1", "shop", since_seconds=60) == CURRENT[3] + "\n"
    assert core.read_namespaced_pod_log("web-1", "shop", since_seconds=240) == "\n".join(CURRENT[1:]) + "\n"


def test_timestamps_prefix_each_line(logged: SandboxCluster, core: k8s.CoreV1Api) -> None:
    text = core.read_namespaced_pod_log("web-1", "shop", timestamps=True, tail_lines=2)
    assert text.splitlines() == [
        "2026-09-03T16:17:00.000000000Z   continuation without a time",
        '2026-09-03T16:19:30.250000000Z {"level":"warn","ts":"2026-09-03T16:19:30.250Z","msg":"slow request"}',
    ]


def test_container_errors_are_400(logged: SandboxCluster, core: k8s.CoreV1Api) -> None:
    with pytest.raises(ApiException) as wrong:
        core.read_namespaced_pod_log("web-1", "shop", container="nope")
    assert wrong.value.status == 400
    assert status_of(wrong.value)["message"] == "container nope is not valid for pod web-1"
    with pytest.raises(ApiException) as ambiguous:
        core.read_namespaced_pod_log("multi-1", "shop")
    assert ambiguous.value.status == 400
    assert (
        "a container name must be specified for pod multi-1, choose one of: [app proxy]"
        in status_of(ambiguous.value)["message"]
    )
    assert core.read_namespaced_pod_log("multi-1", "shop", container="proxy") == "proxy up\n"
    assert core.read_namespaced_pod_log("multi-1", "shop", container="app") == "", (
        "a running container with no output"
    )


def test_missing_previous_waiting_container_and_missing_pod(
    logged: SandboxCluster, core: k8s.CoreV1Api
) -> None:
    with pytest.raises(ApiException) as previous:
        core.read_namespaced_pod_log("multi-1", "shop", container="proxy", previous=True)
    assert previous.value.status == 400
    assert (
        status_of(previous.value)["message"]
        == 'previous terminated container "proxy" in pod "multi-1" not found'
    )
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log("pull-1", "shop")
    assert waiting.value.status == 400
    assert "is waiting to start: trying and failing to pull image" in status_of(waiting.value)["message"]
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod_log("ghost", "shop")
    assert missing.value.status == 404


def test_logs_of_unknown_pods_or_containers_refuse_to_load(cluster: SandboxCluster) -> None:
    with pytest.raises(ValueError, match="not among the loaded pods"):
        cluster.load([], logs=[{"pod": "ghost", "container": "app", "lines": []}])
    with pytest.raises(ValueError, match="does not have"):
        cluster.load([pod("web-1")], logs=[{"pod": "web-1", "container": "nope", "lines": []}])
    assert cluster.get("Pod", "shop", "web-1") is None, "a failed load changes nothing"
