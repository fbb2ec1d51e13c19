"""Which cluster an alert came from, and how to reach its API server and Prometheus.

One cluster by default (`OPSBOT_KUBE_MODE`, `OPSBOT_KUBE_CONTEXT`, `OPSBOT_PROMETHEUS_URL`).
Several with `OPSBOT_CLUSTERS`, a mapping from the alerts' `cluster` label to a kubeconfig
context (or in-cluster config, or an API URL) and a Prometheus URL; then an alert whose cluster
is not in the mapping is not investigated (the RCA says so) rather than investigated against
the wrong cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes import config as k8s_config


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one cluster; `api_client` is None when Kubernetes is not configured."""

    name: str | None
    api_client: Callable[[], k8s.ApiClient] | None
    prometheus_url: str | None


def _url_client(url: str) -> Callable[[], k8s.ApiClient]:
    def make() -> k8s.ApiClient:
        configuration = k8s.Configuration(host=url.rstrip("/"))
        configuration.proxy = None
        return k8s.ApiClient(configuration=configuration)
    return make


def _kubeconfig_client(context: str | None) -> Callable[[], k8s.ApiClient]:
    return lambda: k8s_config.new_client_from_config(context=context)


def _in_cluster_client() -> Callable[[], k8s.ApiClient]:
    def make() -> k8s.ApiClient:
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        return k8s.ApiClient(configuration=configuration)
    return make


def _client_for(mode: str, context: str | None, url: str | None) -> Callable[[], k8s.ApiClient] | None:
    if mode in ("url", "sandbox"):
        return _url_client(url) if url else None
    if mode == "in-cluster":
        return _in_cluster_client()
    return _kubeconfig_client(context)


class ClusterDirectory:
    """Resolves an alert's `cluster` label to a `ClusterAccess` (None: unknown cluster)."""

    def __init__(self, default: ClusterAccess | None, clusters: dict[str, ClusterAccess] | None = None):
        self._default, self._clusters = default, dict(clusters or {})
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> ClusterDirectory:
        mapping = {name: ClusterAccess(name, _client_for(c.kube_mode, c.kube_context, c.kube_api_url),
                                       c.prometheus_url)
                   for name, c in (settings.clusters or {}).items()}
        if mapping:
            return cls(None, mapping)
        client = _client_for(settings.kube_mode, settings.kube_context, settings.kube_api_url)
        return cls(ClusterAccess(None, client, settings.prometheus_url))

    @property
    def reads_kubernetes(self) -> bool:
        """Whether any cluster is read through the Kubernetes API."""
        return any(a is not None and a.api_client is not None for a in [self._default, *self._clusters.values()])

    @property
    def names(self) -> list[str]:
        return sorted(self._clusters)

    def resolve(self, cluster: str | None) -> ClusterAccess | None:
        if not self._clusters:
            return self._default
        if cluster is None and len(self._clusters) == 1:
            return next(iter(self._clusters.values()))
        return self._clusters.get(cluster or "")
