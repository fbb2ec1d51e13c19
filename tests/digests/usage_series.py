"""Seven days of cluster metrics at 5-minute steps, as a real cluster exposes them, for the cost digest tests.

The cluster (namespaces `shop` and `monitoring`):
- Deployment shop/checkout: requests 2 CPU and 4 GiB, uses about 0.1 CPU and 500 MiB (oversized);
- Deployment shop/cart (2 replicas): requests 0.5 CPU and 1 GiB, uses 0.3-0.4 CPU (right-sized);
- Deployment shop/legacy-report: requests 0.25 CPU, uses 1 millicore and no traffic (idle);
- StatefulSet shop/orders-db and DaemonSet monitoring/node-agent: right-sized;
- HPA shop/frontend at its maxReplicas 80 % of each day;
- PVC shop/data-orders-db-0 (10 GiB) growing 0.5 GiB a day, full 5 days after `NOW`;
- node 10.0.0.11's root filesystem losing 1 GiB a day, empty 10 days after `NOW` (a tmpfs on it
  empties in 2 days and must be ignored);
- quota shop/storage (requests.storage) full 9 days after `NOW`;
- PVC shop/old-export (50 GiB) that no pod mounts.

Every figure the tests assert is computed from the declarations here (`WORKLOADS`, the
constants), never typed into the test as an answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.sandbox.promvalues import SeriesSamples, openmetrics_text

NOW = datetime(2026, 2, 16, 12, 0, tzinfo=UTC)
LOOKBACK = timedelta(days=7)
STEP_SECONDS = 300
DAY_SECONDS = 86400
GIB = 1024**3
MIB = 1024**2

STEPS = int(LOOKBACK.total_seconds()) // STEP_SECONDS


def daily_wave(base: float, amplitude: float) -> Callable[[float], float]:
    """base + amplitude·sin(2π·t/day): a daily pattern whose p95 is close to base + amplitude."""
    return lambda t: base + amplitude * math.sin(2 * math.pi * t / DAY_SECONDS)


@dataclass(frozen=True)
class Workload:
    namespace: str
    kind: str  # Deployment, StatefulSet, DaemonSet
    name: str
    replicas: int
    cpu_request_cores: float
    memory_request_bytes: float
    cpu_cores: Callable[[float], float]  # per replica, at t seconds after the series start
    memory_bytes: Callable[[float], float]
    network_bytes_per_second: float
    container: str = "app"

    def pods(self) -> list[tuple[str, str, str]]:
        """(pod, owner_kind, owner_name) of each replica."""
        if self.kind == "Deployment":
            replicaset = f"{self.name}-6d5f8c7b9"
            suffixes = ("x7k2p", "q9w4z")[: self.replicas]
            return [(f"{replicaset}-{suffix}", "ReplicaSet", replicaset) for suffix in suffixes]
        if self.kind == "StatefulSet":
            return [(f"{self.name}-{index}", "StatefulSet", self.name) for index in range(self.replicas)]
        return [(f"{self.name}-n{index}", "DaemonSet", self.name) for index in range(self.replicas)]


WORKLOADS: tuple[Workload, ...] = (
    Workload("shop", "Deployment", "checkout", 1, 2.0, 4 * GIB,
             daily_wave(0.1, 0.02), daily_wave(500 * MIB, 20 * MIB), 40_000),
    Workload("shop", "Deployment", "cart", 2, 0.5, 1 * GIB,
             daily_wave(0.35, 0.05), daily_wave(700 * MIB, 50 * MIB), 60_000),
    Workload("shop", "Deployment", "legacy-report", 1, 0.25, 256 * MIB,
             daily_wave(0.001, 0.0002), daily_wave(90 * MIB, 1 * MIB), 40),
    Workload("shop", "StatefulSet", "orders-db", 1, 1.0, 2 * GIB,
             daily_wave(0.6, 0.1), daily_wave(1.5 * GIB, 0.05 * GIB), 80_000),
    Workload("monitoring", "DaemonSet", "node-agent", 1, 0.1, 128 * MIB,
             daily_wave(0.06, 0.01), daily_wave(100 * MIB, 5 * MIB), 5_000),
)
OVERSIZED, RIGHT_SIZED, IDLE = WORKLOADS[0], WORKLOADS[1], WORKLOADS[2]

HPA_NAMESPACE, HPA_NAME, HPA_TARGET, HPA_MAX = "shop", "frontend", "frontend", 6
HPA_BUSY_SHARE = 0.8  # of each day at maxReplicas, the rest at 4

CLAIM_NAMESPACE, CLAIM_NAME, CLAIM_POD = "shop", "data-orders-db-0", "orders-db-0"
CLAIM_CAPACITY_BYTES = 10 * GIB
CLAIM_GROWTH_BYTES_PER_DAY = 0.5 * GIB
CLAIM_FULL_AFTER_NOW = timedelta(days=5)

UNATTACHED_NAMESPACE, UNATTACHED_NAME, UNATTACHED_BYTES = "shop", "old-export", 50 * GIB

NODE_INSTANCE, NODE_MOUNTPOINT = "10.0.0.11:9100", "/"
NODE_FS_SIZE_BYTES = 100 * GIB
NODE_FS_LOSS_BYTES_PER_DAY = 1 * GIB
NODE_FS_EMPTY_AFTER_NOW = timedelta(days=10)

QUOTA_NAMESPACE, QUOTA_NAME, QUOTA_RESOURCE = "shop", "storage", "requests.storage"
QUOTA_HARD_BYTES = 100 * GIB
QUOTA_GROWTH_BYTES_PER_DAY = 2.5 * GIB
QUOTA_FULL_AFTER_NOW = timedelta(days=9)


class SeriesSet:
    """Collects series sampled at every 5-minute step from `NOW` - `days` to `NOW`."""

    def __init__(self, days: int = LOOKBACK.days) -> None:
        self.steps = days * DAY_SECONDS // STEP_SECONDS
        self.start_seconds = int(NOW.timestamp()) - self.steps * STEP_SECONDS
        self.series: list[SeriesSamples] = []

    def _stamp_ms(self, index: int) -> int:
        return (self.start_seconds + index * STEP_SECONDS) * 1000

    def gauge(self, name: str, labels: dict[str, str], value: Callable[[float], float]) -> None:
        samples = [(self._stamp_ms(i), float(value(i * STEP_SECONDS))) for i in range(self.steps + 1)]
        self.series.append(SeriesSamples(name, labels, tuple(samples)))

    def constant(self, name: str, labels: dict[str, str], value: float) -> None:
        self.gauge(name, labels, lambda _t: value)

    def counter(self, name: str, labels: dict[str, str], per_second: Callable[[float], float]) -> None:
        """A counter whose rate over each step is `per_second` at the step's start."""
        total, samples = 0.0, []
        for i in range(self.steps + 1):
            samples.append((self._stamp_ms(i), total))
            total += per_second(i * STEP_SECONDS) * STEP_SECONDS
        self.series.append(SeriesSamples(name, labels, tuple(samples)))

    def openmetrics(self) -> str:
        return openmetrics_text(self.series)


def _workload_series(out: SeriesSet, workload: Workload) -> None:
    if workload.kind == "Deployment":
        replicaset = workload.pods()[0][2]
        out.constant("kube_replicaset_owner", {"namespace": workload.namespace, "replicaset": replicaset,
                                               "owner_kind": "Deployment", "owner_name": workload.name,
                                               "owner_is_controller": "true"}, 1)
    for pod, owner_kind, owner_name in workload.pods():
        pod_labels = {"namespace": workload.namespace, "pod": pod}
        out.constant("kube_pod_owner", {**pod_labels, "owner_kind": owner_kind, "owner_name": owner_name,
                                        "owner_is_controller": "true"}, 1)
        container = {**pod_labels, "container": workload.container}
        out.constant("kube_pod_container_resource_requests",
                     {**container, "node": "node-1", "resource": "cpu", "unit": "core"},
                     workload.cpu_request_cores)
        out.constant("kube_pod_container_resource_requests",
                     {**container, "node": "node-1", "resource": "memory", "unit": "byte"},
                     workload.memory_request_bytes)
        cadvisor = {**container, "image": f"registry.example/{workload.name}:1.4.2", "name": f"k8s_{pod}"}
        out.counter("container_cpu_usage_seconds_total", {**cadvisor, "cpu": "total"}, workload.cpu_cores)
        out.gauge("container_memory_working_set_bytes", cadvisor, workload.memory_bytes)
        out.counter("container_network_receive_bytes_total", {**pod_labels, "interface": "eth0"},
                    lambda _t, rate=workload.network_bytes_per_second: rate)


def _hpa_series(out: SeriesSet) -> None:
    hpa = {"namespace": HPA_NAMESPACE, "horizontalpodautoscaler": HPA_NAME}
    out.constant("kube_horizontalpodautoscaler_info",
                 {**hpa, "scaletargetref_kind": "Deployment", "scaletargetref_name": HPA_TARGET}, 1)
    out.constant("kube_horizontalpodautoscaler_spec_max_replicas", hpa, HPA_MAX)
    out.gauge("kube_horizontalpodautoscaler_status_current_replicas", hpa,
              lambda t: HPA_MAX if (t % DAY_SECONDS) < HPA_BUSY_SHARE * DAY_SECONDS else HPA_MAX - 2)


def _volume_series(out: SeriesSet) -> None:
    lookback_days = LOOKBACK.total_seconds() / DAY_SECONDS
    full_days = CLAIM_FULL_AFTER_NOW.total_seconds() / DAY_SECONDS
    used_at_start = CLAIM_CAPACITY_BYTES - (lookback_days + full_days) * CLAIM_GROWTH_BYTES_PER_DAY
    claim = {"namespace": CLAIM_NAMESPACE, "persistentvolumeclaim": CLAIM_NAME}
    out.gauge("kubelet_volume_stats_used_bytes", claim,
              lambda t: used_at_start + CLAIM_GROWTH_BYTES_PER_DAY * t / DAY_SECONDS)
    out.constant("kubelet_volume_stats_capacity_bytes", claim, CLAIM_CAPACITY_BYTES)
    for name, size in ((CLAIM_NAME, CLAIM_CAPACITY_BYTES), (UNATTACHED_NAME, UNATTACHED_BYTES)):
        labels = {"namespace": CLAIM_NAMESPACE, "persistentvolumeclaim": name}
        out.constant("kube_persistentvolumeclaim_info",
                     {**labels, "storageclass": "gp3", "volumename": f"pvc-{name}"}, 1)
        out.constant("kube_persistentvolumeclaim_resource_requests_storage_bytes", labels, size)
    out.constant("kube_pod_spec_volumes_persistentvolumeclaims_info",
                 {**claim, "pod": CLAIM_POD, "volume": "data"}, 1)


def _node_series(out: SeriesSet) -> None:
    lookback_days = LOOKBACK.total_seconds() / DAY_SECONDS
    empty_days = NODE_FS_EMPTY_AFTER_NOW.total_seconds() / DAY_SECONDS
    avail_at_start = (lookback_days + empty_days) * NODE_FS_LOSS_BYTES_PER_DAY
    root = {"instance": NODE_INSTANCE, "device": "/dev/nvme0n1p1", "fstype": "ext4",
            "mountpoint": NODE_MOUNTPOINT}
    out.gauge("node_filesystem_avail_bytes", root,
              lambda t: avail_at_start - NODE_FS_LOSS_BYTES_PER_DAY * t / DAY_SECONDS)
    out.constant("node_filesystem_size_bytes", root, NODE_FS_SIZE_BYTES)
    tmpfs = {"instance": NODE_INSTANCE, "device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run"}
    out.gauge("node_filesystem_avail_bytes", tmpfs, lambda t: 9 * GIB - GIB * t / DAY_SECONDS)
    out.constant("node_filesystem_size_bytes", tmpfs, 10 * GIB)
    steady = {"instance": "10.0.0.12:9100", "device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/"}
    out.gauge("node_filesystem_avail_bytes", steady, daily_wave(60 * GIB, 0.5 * GIB))
    out.constant("node_filesystem_size_bytes", steady, NODE_FS_SIZE_BYTES)


def _quota_series(out: SeriesSet) -> None:
    lookback_days = LOOKBACK.total_seconds() / DAY_SECONDS
    full_days = QUOTA_FULL_AFTER_NOW.total_seconds() / DAY_SECONDS
    used_at_start = QUOTA_HARD_BYTES - (lookback_days + full_days) * QUOTA_GROWTH_BYTES_PER_DAY
    storage = {"namespace": QUOTA_NAMESPACE, "resourcequota": QUOTA_NAME, "resource": QUOTA_RESOURCE}
    out.gauge("kube_resourcequota", {**storage, "type": "used"},
              lambda t: used_at_start + QUOTA_GROWTH_BYTES_PER_DAY * t / DAY_SECONDS)
    out.constant("kube_resourcequota", {**storage, "type": "hard"}, QUOTA_HARD_BYTES)
    compute = {"namespace": QUOTA_NAMESPACE, "resourcequota": "compute", "resource": "requests.cpu"}
    out.constant("kube_resourcequota", {**compute, "type": "used"}, 3.75)
    out.constant("kube_resourcequota", {**compute, "type": "hard"}, 10)


def cluster_openmetrics(workloads: tuple[Workload, ...] = WORKLOADS, *, capacity: bool = True,
                        days: int = LOOKBACK.days) -> str:
    """The cluster's series as OpenMetrics text for `PrometheusProcess.backfill`: the given
    workloads, and with `capacity` the HPA, volumes, node filesystems and quotas (which assume
    the full 7 days)."""
    out = SeriesSet(days)
    for workload in workloads:
        _workload_series(out, workload)
    if capacity:
        _hpa_series(out)
        _volume_series(out)
        _node_series(out)
        _quota_series(out)
    return out.openmetrics()


def per_step_values(value: Callable[[float], float]) -> list[float]:
    """The value at each step of the look-back, for computing the p95 the test expects."""
    return [value(i * STEP_SECONDS) for i in range(STEPS)]
