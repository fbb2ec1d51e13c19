"""Serving a scenario's cluster to the real `kubernetes` client, for gatherer tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.context.clusters import ClusterAccess, _url_client
from bot.context.model import AlertView
from bot.sandbox.kube import KubeApiServer, SandboxCluster
from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import Scenario, load_scenario


def shared(name: str) -> Scenario:
    return load_scenario(shared_scenarios_dir() / f"{name}.yaml")


def alerts_of(scenario: Scenario, **overrides: str) -> list[AlertView]:
    """The scenario's alerts as the gatherers see them; `overrides` replace label values."""
    return [AlertView(a.labels.get("alertname", ""), a.status, {**a.labels, **overrides}, dict(a.annotations),
                      a.starts_at, a.ends_at) for a in scenario.alerts]


@contextmanager
def served(scenario: Scenario, prepare: Callable[[SandboxCluster], None] | None = None) -> Iterator[str]:
    """The scenario's cluster behind a sandbox API server; yields its URL."""
    cluster = SandboxCluster(now=scenario.now)
    cluster.load(scenario.cluster.objects, scenario.cluster.events,
                 [stream.model_dump() for stream in scenario.cluster.logs])
    if prepare is not None:
        prepare(cluster)
    with KubeApiServer(cluster) as server:
        yield server.base_url


def access(kube_url: str | None, prometheus_url: str | None) -> ClusterAccess:
    return ClusterAccess(None, _url_client(kube_url) if kube_url else None, prometheus_url)
