"""Real scenario files from the shared folder, loaded and served; remediation of one of them."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client
from bot.sandbox.paths import shared_scenarios_dir

SCENARIOS = sorted(shared_scenarios_dir().glob("*.yaml"))
ORDERS = shared_scenarios_dir() / "orders-api-revision-22-panics-on-start.yaml"
_DURATION = re.compile(r"^([+-])?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")



def _resolve(value: Any, now: datetime, key: str = "") -> Any:
    """Relative times (`-15m`, `-2h30m`, `0m`) under time-like keys -> RFC 3339; a tiny local stand-in."""
    if isinstance(value, dict):
        return {k: _resolve(v, now, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, now, key) for v in value]
    if (
        isinstance(value, str)
        and key.endswith(("Timestamp", "Time", "At"))
        and value
        and (match := _DURATION.match(value))
    ):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups()[1:])
        delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        return (now - delta if match.group(1) == "-" else now + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _read(path: Path) -> tuple[datetime, dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the safe loader, in C when libyaml is there
    document = yaml.load(path.read_text(), Loader=loader)
    now = datetime.fromisoformat(document["now"].replace("Z", "+00:00")).astimezone(UTC)
    return now, _resolve(document["cluster"], now)


def _load(path: Path) -> tuple[SandboxCluster, dict[str, Any]]:
    now, section = _read(path)
    cluster = SandboxCluster(now=now)
    cluster.load(section["objects"], section.get("events") or [], section.get("logs") or [])
    return cluster, section


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_objects_events_and_logs_are_served(path: Path) -> None:
    cluster, section = _load(path)
    with KubeApiServer(cluster) as server, sandbox_api_client(server.base_url) as api:
        for obj in section["objects"]:
            rt = cluster.registry.for_object(obj["apiVersion"], obj["kind"])
            assert rt is not None
            prefix = "/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"
            ns = obj["metadata"].get("namespace")
            where = f"/namespaces/{ns}" if rt.namespaced else ""
            url = f"{server.base_url}{prefix}{where}/{rt.plural}/{obj['metadata']['name']}"
            with urllib.request.urlopen(url, timeout=5) as response:
                served = json.loads(response.read())
            assert served == obj, f"{obj['kind']} {obj['metadata']['name']} is served exactly as written"
        core = k8s.CoreV1Api(api)
        pods = core.list_pod_for_all_namespaces().items  # the typed client parses every scenario pod
        assert len(pods) == sum(1 for o in section["objects"] if o["kind"] == "Pod")
        events = core.list_event_for_all_namespaces().items
        assert len(events) == len(section.get("events") or [])
        for entry in section.get("logs") or []:
            owner = next(p for p in pods if p.metadata.name == entry["pod"])
            text = core.read_namespaced_pod_log(
                entry["pod"],
                owner.metadata.namespace,
                container=entry["container"],
                previous=entry.get("previous", False),
            )
            assert text == "".join(f"{line}\n" for line in entry["lines"])
    assert cluster.mutations == []


@pytest.fixture
def orders() -> Any:
    cluster, _ = _load(ORDERS)
    with KubeApiServer(cluster) as server, sandbox_api_client(server.base_url) as api:
        yield cluster, k8s.AppsV1Api(api), k8s.CoreV1Api(api), api


def _orders_state(apps: k8s.AppsV1Api, core: k8s.CoreV1Api) -> dict[str, Any]:
    rss = apps.list_namespaced_replica_set("orders", label_selector="app=orders-api").items
    pods = core.list_namespaced_pod("orders", label_selector="app=orders-api").items
    return {
        "rs": {
            rs.metadata.name: (rs.metadata.annotations["deployment.kubernetes.io/revision"], rs.spec.replicas)
            for rs in rss
        },
        "pods": {p.metadata.name: p.status.container_statuses[0].state.waiting is None for p in pods},
    }


def test_loaded_stuck_rollout_is_frozen_truth(orders: Any) -> None:
    cluster, apps, core, _ = orders
    before = _orders_state(apps, core)
    assert before["rs"] == {"orders-api-wrvcn6pnr5": ("22", 1), "orders-api-rxk9kdd5vg": ("21", 3)}
    assert before["pods"]["orders-api-wrvcn6pnr5-mthr2"] is False, (
        "the crash-looping pod is still crash-looping"
    )
    crashing = core.read_namespaced_pod("orders-api-wrvcn6pnr5-mthr2", "orders")
    assert crashing.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    # A write that changes no template or replica count leaves the stuck rollout exactly as it is.
    apps.patch_namespaced_deployment(
        "orders-api", "orders", {"metadata": {"annotations": {"opsbot/seen": "yes"}}}
    )
    assert _orders_state(apps, core) == before
    panic = core.read_namespaced_pod_log("orders-api-wrvcn6pnr5-mthr2", "orders", previous=True)
    assert "panic: assignment to entry in nil map" in panic


def test_restarting_a_broken_revision_stays_broken(orders: Any) -> None:
    cluster, apps, core, _ = orders
    restart = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-09-03T16:20:00Z"}}
            }
        }
    }
    apps.patch_namespaced_deployment("orders-api", "orders", restart)
    state = _orders_state(apps, core)
    new_rs = [name for name, (revision, _) in state["rs"].items() if revision == "23"]
    assert len(new_rs) == 1
    new_pods = [name for name in state["pods"] if name.startswith(new_rs[0])]
    assert len(new_pods) == 1 and state["pods"][new_pods[0]] is False, (
        "the new pod crash-loops like its template's"
    )
    assert (
        sum(1 for name, ok in state["pods"].items() if name.startswith("orders-api-rxk9kdd5vg") and ok) == 3
    )
    status = apps.read_namespaced_deployment("orders-api", "orders").status
    assert status.available_replicas == 3 and status.updated_replicas == 1


def test_rollback_to_revision_21_reuses_its_replicaset(orders: Any) -> None:
    cluster, apps, core, api = orders
    previous = apps.read_namespaced_replica_set("orders-api-rxk9kdd5vg", "orders")
    template = api.sanitize_for_serialization(previous.spec.template)
    template["metadata"]["labels"].pop("pod-template-hash")
    apps.patch_namespaced_deployment(
        "orders-api", "orders", [{"op": "replace", "path": "/spec/template", "value": template}]
    )
    state = _orders_state(apps, core)
    assert state["rs"] == {"orders-api-wrvcn6pnr5": ("22", 0), "orders-api-rxk9kdd5vg": ("23", 3)}
    assert sorted(state["pods"]) == [
        "orders-api-rxk9kdd5vg-bpncv",
        "orders-api-rxk9kdd5vg-psjxk",
        "orders-api-rxk9kdd5vg-sjvxn",
    ]
    assert all(state["pods"].values())
    deployment = apps.read_namespaced_deployment("orders-api", "orders")
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "23"
    assert deployment.metadata.generation == 42 and deployment.status.observed_generation == 42
    assert (
        deployment.status.replicas,
        deployment.status.updated_replicas,
        deployment.status.available_replicas,
    ) == (3, 3, 3)
    assert {c.type: c.reason for c in deployment.status.conditions}["Progressing"] == "NewReplicaSetAvailable"
    assert cluster.get("Pod", "orders", "orders-api-wrvcn6pnr5-mthr2") is None
    (mutation,) = cluster.mutations
    assert (mutation.verb, mutation.kind, mutation.name, mutation.dry_run) == (
        "patch",
        "Deployment",
        "orders-api",
        False,
    )
