"""The PromQL behind every figure of the cost and capacity digest, declared as data, and its reader.

Each `QuerySpec` is one instant query evaluated at the digest's `now`; its template uses
`$lookback`, `$step`, `$rate_window`, `$horizon_seconds`, `$pod_workload` and `$filesystems`
placeholders (`render`). Invariants:

- Metric and label names are the ones a real cluster exposes: kube-state-metrics
  (`kube_pod_owner`, `kube_replicaset_owner`, `kube_pod_container_resource_requests`, HPA,
  PVC and quota metrics), cAdvisor (`container_*`), kubelet (`kubelet_volume_stats_*`) and
  node-exporter (`node_filesystem_*`).
- A workload is the Deployment (through its ReplicaSet), StatefulSet or DaemonSet owning a pod,
  resolved inside PromQL (`POD_WORKLOAD`), so every per-workload number can be reproduced by
  pasting the listed query into Prometheus at the listed time. Pods of other owners (Jobs, bare
  pods) are not workloads here.
- Nothing from the cluster is interpolated into a query: the only inputs are the look-back,
  steps and horizon from the configuration, so no label value can change a query's meaning.
- `PrometheusReader` tells "Prometheus cannot be reached" (the cluster is not checked) from
  "this query failed" (one problem line, the other queries still run).
- `feeds` names the report sections a query contributes to, so a failed query's problem line
  says which section may be incomplete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

SECTION_OVERSIZED = "Oversized"
SECTION_IDLE = "Idle"
SECTION_UNATTACHED = "Unattached volumes"
SECTION_PINNED = "Pinned at max (under-provisioned)"
SECTION_FILLS = "Fills within {days} days"
SECTION_NAMESPACES = "Namespace totals"
# Key segments: stable even when a title carries a configured number (the forecast horizon).
SECTION_SLUGS: Mapping[str, str] = {
    SECTION_OVERSIZED: "oversized",
    SECTION_IDLE: "idle",
    SECTION_UNATTACHED: "unattached-volumes",
    SECTION_PINNED: "pinned-at-max",
    SECTION_FILLS: "fills-soon",
}

Labels = Mapping[str, str]
Vector = Sequence[tuple[Labels, float]]

SUBQUERY_STEP_SECONDS = 300
SUBQUERY_STEP = f"{SUBQUERY_STEP_SECONDS // 60}m"
RATE_WINDOW = "10m"  # at least two samples at a 5-minute scrape interval, robust to step alignment
# Filesystems that cannot fill in a way worth forecasting (memory-backed, read-only images).
EXCLUDED_FSTYPES = "tmpfs|ramfs|overlay|squashfs|nsfs|fuse.lxcfs|iso9660"

# Pod -> owning workload (Deployment via its ReplicaSet, StatefulSet, DaemonSet): one series per
# (namespace, pod) with `workload_kind` and `workload` labels and the value 1.
POD_WORKLOAD = """(
  max by (namespace, pod, workload_kind, workload) (
    label_replace(label_replace(kube_pod_owner{owner_kind=~"StatefulSet|DaemonSet"},
      "workload", "$1", "owner_name", "(.+)"), "workload_kind", "$1", "owner_kind", "(.+)")
  )
  or
  max by (namespace, pod, workload_kind, workload) (
    label_replace(
      label_replace(kube_pod_owner{owner_kind="ReplicaSet"}, "replicaset", "$1", "owner_name", "(.+)")
      * on (namespace, replicaset) group_left (workload)
        max by (namespace, replicaset, workload) (
          label_replace(kube_replicaset_owner{owner_kind="Deployment"},
            "workload", "$1", "owner_name", "(.+)")
        ),
      "workload_kind", "Deployment", "owner_kind", "ReplicaSet")
  )
)"""

_CONTAINERS = 'container!="", container!="POD"'
_BY_CONTAINER = "namespace, workload_kind, workload, container"
_BY_WORKLOAD = "namespace, workload_kind, workload"
_JOIN = "* on (namespace, pod) group_left (workload_kind, workload) $pod_workload"


@dataclass(frozen=True)
class QuerySpec:
    """One declared query: a stable key, what its number means, the template, the sections it feeds."""

    key: str
    description: str
    template: str
    feeds: tuple[str, ...]


def _spec(key: str, description: str, template: str, *feeds: str) -> QuerySpec:
    return QuerySpec(key, description, template, feeds)


CONTAINER_REQUESTS = _spec(
    "container_requests",
    "requests of each workload container now, the largest replica's (cores, bytes)",
    f"""max by ({_BY_CONTAINER}, resource) (
  kube_pod_container_resource_requests{{resource=~"cpu|memory"}} {_JOIN}
)""",
    SECTION_OVERSIZED, SECTION_IDLE)

CONTAINER_REPLICAS = _spec(
    "container_replicas",
    "replicas of each workload container now",
    f"""count by ({_BY_CONTAINER}) (
  max by (namespace, pod, container) (kube_pod_container_resource_requests{{resource=~"cpu|memory"}}) {_JOIN}
)""",
    SECTION_OVERSIZED, SECTION_IDLE)

CPU_P95 = _spec(
    "cpu_p95",
    "95th percentile over the look-back of the busiest replica's CPU use per container (cores)",
    f"""quantile_over_time(0.95, (
  max by ({_BY_CONTAINER}) (
    rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[$rate_window]) {_JOIN}
  )
)[$lookback:$step])""",
    SECTION_OVERSIZED)

MEMORY_P95 = _spec(
    "memory_p95",
    "95th percentile over the look-back of the busiest replica's memory working set per container (bytes)",
    f"""quantile_over_time(0.95, (
  max by ({_BY_CONTAINER}) (
    container_memory_working_set_bytes{{{_CONTAINERS}}} {_JOIN}
  )
)[$lookback:$step])""",
    SECTION_OVERSIZED)

WORKLOAD_CPU_AVG = _spec(
    "workload_cpu_avg",
    "average CPU use of each workload over the look-back, all replicas (cores)",
    f"""avg_over_time((
  sum by ({_BY_WORKLOAD}) (
    rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[$rate_window]) {_JOIN}
  )
)[$lookback:$step])""",
    SECTION_IDLE)

WORKLOAD_NETWORK_AVG = _spec(
    "workload_network_avg",
    "average network bytes received per second by each workload over the look-back, all replicas",
    f"""avg_over_time((
  sum by ({_BY_WORKLOAD}) (
    rate(container_network_receive_bytes_total[$rate_window]) {_JOIN}
  )
)[$lookback:$step])""",
    SECTION_IDLE)

WORKLOAD_PRESENCE = _spec(
    "workload_presence",
    "steps of the look-back at which each workload had pods (age check before calling it idle)",
    f"""count_over_time((
  max by ({_BY_WORKLOAD}) ($pod_workload)
)[$lookback:$step])""",
    SECTION_IDLE)

NAMESPACE_REQUESTS_AVG = _spec(
    "namespace_requests_avg",
    "average requests of each namespace over the look-back (cores, bytes)",
    """avg_over_time((
  sum by (namespace, resource) (kube_pod_container_resource_requests{resource=~"cpu|memory"})
)[$lookback:$step])""",
    SECTION_NAMESPACES)

NAMESPACE_CPU_USED_AVG = _spec(
    "namespace_cpu_used_avg",
    "average CPU use of each namespace over the look-back (cores)",
    f"""avg_over_time((
  sum by (namespace) (rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[$rate_window]))
)[$lookback:$step])""",
    SECTION_NAMESPACES)

NAMESPACE_MEMORY_USED_AVG = _spec(
    "namespace_memory_used_avg",
    "average memory working set of each namespace over the look-back (bytes)",
    f"""avg_over_time((
  sum by (namespace) (container_memory_working_set_bytes{{{_CONTAINERS}}})
)[$lookback:$step])""",
    SECTION_NAMESPACES)

UNATTACHED_CLAIMS = _spec(
    "unattached_claims",
    "PersistentVolumeClaims that exist now and that no pod mounted during the look-back",
    """max by (namespace, persistentvolumeclaim, storageclass) (kube_persistentvolumeclaim_info)
unless on (namespace, persistentvolumeclaim)
max by (namespace, persistentvolumeclaim) (
  max_over_time(kube_pod_spec_volumes_persistentvolumeclaims_info[$lookback])
)""",
    SECTION_UNATTACHED)

CLAIM_REQUESTED_BYTES = _spec(
    "claim_requested_bytes",
    "requested size of each PersistentVolumeClaim now (bytes)",
    "max by (namespace, persistentvolumeclaim) (kube_persistentvolumeclaim_resource_requests_storage_bytes)",
    SECTION_UNATTACHED)

HPA_AT_MAX_SHARE = _spec(
    "hpa_at_max_share",
    "share of the look-back each HPA ran at its maxReplicas (0 to 1)",
    """avg_over_time((
  max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas)
  >= bool on (namespace, horizontalpodautoscaler)
  max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_max_replicas)
)[$lookback:$step])""",
    SECTION_PINNED)

HPA_MAX_REPLICAS = _spec(
    "hpa_max_replicas",
    "maxReplicas of each HPA now",
    "max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_max_replicas)",
    SECTION_PINNED)

HPA_TARGETS = _spec(
    "hpa_targets",
    "what each HPA scales (kind and name)",
    "max by (namespace, horizontalpodautoscaler, scaletargetref_kind, scaletargetref_name) "
    "(kube_horizontalpodautoscaler_info)",
    SECTION_PINNED)

CLAIM_USED_FIT_NOW = _spec(
    "claim_used_fit_now",
    "bytes used on each mounted volume now, by the linear trend of the look-back",
    "max by (namespace, persistentvolumeclaim) "
    "(predict_linear(kubelet_volume_stats_used_bytes[$lookback], 0))",
    SECTION_FILLS)

CLAIM_USED_FORECAST = _spec(
    "claim_used_forecast",
    "bytes used on each mounted volume at the end of the forecast horizon, by the same trend",
    "max by (namespace, persistentvolumeclaim) "
    "(predict_linear(kubelet_volume_stats_used_bytes[$lookback], $horizon_seconds))",
    SECTION_FILLS)

CLAIM_CAPACITY = _spec(
    "claim_capacity",
    "capacity of each mounted volume now (bytes)",
    "max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes)",
    SECTION_FILLS)

FILESYSTEM_AVAIL_FIT_NOW = _spec(
    "filesystem_avail_fit_now",
    "bytes available on each node filesystem now, by the linear trend of the look-back",
    "min by (instance, device, mountpoint) "
    "(predict_linear(node_filesystem_avail_bytes{$filesystems}[$lookback], 0))",
    SECTION_FILLS)

FILESYSTEM_AVAIL_FORECAST = _spec(
    "filesystem_avail_forecast",
    "bytes available on each node filesystem at the end of the forecast horizon, by the same trend",
    "min by (instance, device, mountpoint) "
    "(predict_linear(node_filesystem_avail_bytes{$filesystems}[$lookback], $horizon_seconds))",
    SECTION_FILLS)

FILESYSTEM_SIZE = _spec(
    "filesystem_size",
    "size of each node filesystem now (bytes)",
    "max by (instance, device, mountpoint) (node_filesystem_size_bytes{$filesystems})",
    SECTION_FILLS)

QUOTA_USED_FIT_NOW = _spec(
    "quota_used_fit_now",
    "use of each namespace quota now, by the linear trend of the look-back",
    "max by (namespace, resourcequota, resource) "
    '(predict_linear(kube_resourcequota{type="used"}[$lookback], 0))',

    SECTION_FILLS)

QUOTA_USED_FORECAST = _spec(
    "quota_used_forecast",
    "use of each namespace quota at the end of the forecast horizon, by the same trend",
    "max by (namespace, resourcequota, resource) "
    '(predict_linear(kube_resourcequota{type="used"}[$lookback], $horizon_seconds))',
    SECTION_FILLS)

QUOTA_HARD = _spec(
    "quota_hard",
    "hard limit of each namespace quota now",
    'max by (namespace, resourcequota, resource) (kube_resourcequota{type="hard"})',
    SECTION_FILLS)

ALL_QUERIES: tuple[QuerySpec, ...] = (
    CONTAINER_REQUESTS, CONTAINER_REPLICAS, CPU_P95, MEMORY_P95,
    WORKLOAD_CPU_AVG, WORKLOAD_NETWORK_AVG, WORKLOAD_PRESENCE,
    NAMESPACE_REQUESTS_AVG, NAMESPACE_CPU_USED_AVG, NAMESPACE_MEMORY_USED_AVG,
    UNATTACHED_CLAIMS, CLAIM_REQUESTED_BYTES,
    HPA_AT_MAX_SHARE, HPA_MAX_REPLICAS, HPA_TARGETS,
    CLAIM_USED_FIT_NOW, CLAIM_USED_FORECAST, CLAIM_CAPACITY,
    FILESYSTEM_AVAIL_FIT_NOW, FILESYSTEM_AVAIL_FORECAST, FILESYSTEM_SIZE,
    QUOTA_USED_FIT_NOW, QUOTA_USED_FORECAST, QUOTA_HARD,
)

HTTP_GRACE_SECONDS = 5.0  # the HTTP timeout is the query's own timeout plus this
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")]*")
_PLACEHOLDER = re.compile(r"\$([a-z_]+)")  # `$1` in label_replace stays as it is


def render(spec: QuerySpec, *, lookback_days: int, horizon_seconds: int) -> str:
    """The spec's PromQL with the placeholders filled (one pass: filled text is not re-read)."""
    values: Mapping[str, str] = {
        "pod_workload": POD_WORKLOAD,
        "lookback": f"{lookback_days}d",
        "step": SUBQUERY_STEP,
        "rate_window": RATE_WINDOW,
        "horizon_seconds": str(horizon_seconds),
        "filesystems": f'fstype!~"{EXCLUDED_FSTYPES}"',
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"query {spec.key}: unknown placeholder ${name}")
        return values[name]

    return _PLACEHOLDER.sub(fill, spec.template)


def one_line(promql: str) -> str:
    """The query on one line (whitespace collapsed), as listed in the report."""
    return re.sub(r"\s+", " ", promql).replace("( ", "(").replace(" )", ")").strip()


class PrometheusUnreachable(Exception):
    """No connection to Prometheus at all: the cluster is not checked."""


class QueryFailed(Exception):
    """One query was refused, timed out or answered something unexpected; the message says why."""


def _reason(exc: Exception) -> str:
    found = _ERRNO.search(str(exc))
    return found.group(0).strip() if found else type(exc).__name__


class PrometheusReader:
    """Evaluates the declared queries as instant queries over HTTP (POST, so long queries fit).

    Answers are (labels, value) pairs; NaN and infinite values are dropped (nothing to price).
    A connection failure raises `PrometheusUnreachable`, anything else about one query
    `QueryFailed` with Prometheus' own reason.
    """

    def __init__(self, url: str, timeout_seconds: float):
        self._url, self._timeout = url.rstrip("/"), timeout_seconds
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def instant(self, promql: str, at_epoch_seconds: float) -> Vector:
        form = {"query": promql, "time": f"{at_epoch_seconds:.3f}", "timeout": f"{self._timeout:g}s"}
        try:
            response = self._session.post(f"{self._url}/api/v1/query", data=form,
                                          timeout=self._timeout + HTTP_GRACE_SECONDS)
        except requests.ConnectionError as exc:
            raise PrometheusUnreachable(_reason(exc)) from None
        except requests.RequestException as exc:
            raise QueryFailed(f"{type(exc).__name__} after {self._timeout:g}s") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or response.status_code != 200 or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise QueryFailed(str(error or f"HTTP {response.status_code}")[:300])
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise QueryFailed(f"expected an instant vector, got {data.get('resultType')!r}")
        vector = []
        for item in data.get("result") or []:
            try:
                value = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if math.isfinite(value):
                vector.append(({str(k): str(v) for k, v in (item.get("metric") or {}).items()}, value))
        return vector
