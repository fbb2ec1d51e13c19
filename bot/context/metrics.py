"""The Prometheus gatherer: golden signals of the affected workload around the alert.

Real PromQL through `prometheus-api-client`, over the hour before `now` (the investigation's
clock, so a replayed incident is queried at its own time). Each signal is one range query
with a change point (`bot.context.changepoint`). Queries use the label conventions of
kube-state-metrics, cAdvisor and kubelet, and the common application conventions
(`http_requests_total{code}`, `http_request_duration_seconds_bucket`); a query that returns
nothing is simply absent ("checked, no data"), a query that fails is a `Gap`.

Label values in queries come from the Kubernetes snapshot or from alert labels validated as
Kubernetes names (`bot.context.subject.valid_name`) and are escaped, so an alert cannot inject
PromQL.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from prometheus_api_client import PrometheusConnect

from bot.context.changepoint import change_point
from bot.context.model import Gap, ObjectRef, Signal

log = logging.getLogger(__name__)
RANGE = timedelta(hours=1)
STEP_SECONDS = 60
MAX_SERIES_PER_SIGNAL = 6
PARALLEL_QUERIES = 6
# Work piling up, whatever the exporter calls it (rabbitmq_queue_messages_ready,
# kafka_consumergroup_lag, app_request_queue_depth, ...).
BACKLOG_NAMES = ".*(queue|backlog|_lag|depth|pending_messages|messages_ready).*"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pods_regex(pods: Iterable[str]) -> str:
    return _quote("|".join(re.escape(p) for p in sorted(set(pods))))


@dataclass(frozen=True)
class SignalQuery:
    key: str
    title: str
    query: str
    unit: str
    subject: ObjectRef | None = None


def workload_queries(namespace: str, workload: ObjectRef, pods: list[str]) -> list[SignalQuery]:
    """The golden signals of one workload (its pods named explicitly when known)."""
    ns = _quote(namespace)
    pod_match = f"pod=~{_pods_regex(pods)}" if pods else f"pod=~{_quote(re.escape(workload.name) + '-.*')}"
    sel = f"namespace={ns},{pod_match}"
    name = _quote(workload.name)
    queries = [
        SignalQuery("restarts", "container restarts", f"sum by (pod) (kube_pod_container_status_restarts_total{{{sel}}})",
                    "count"),
        SignalQuery("memory_working_set", "memory working set",
                    f'max by (pod, container) (container_memory_working_set_bytes{{{sel},container!="",container!="POD"}})',
                    "bytes"),
        SignalQuery("memory_vs_limit", "memory working set / limit",
                    f'max by (pod, container) (container_memory_working_set_bytes{{{sel},container!="",container!="POD"}})'
                    f' / on (pod, container) max by (pod, container) '
                    f'(kube_pod_container_resource_limits{{{sel},resource="memory"}})', "ratio"),
        SignalQuery("cpu_throttling", "CPU throttled periods",
                    f'sum by (pod) (rate(container_cpu_cfs_throttled_periods_total{{{sel},container!=""}}[5m]))'
                    f' / sum by (pod) (rate(container_cpu_cfs_periods_total{{{sel},container!=""}}[5m]))', "ratio"),
        SignalQuery("cpu_usage", "CPU used (cores)",
                    f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{sel},container!="",container!="POD"}}[5m]))',
                    "cores"),
        SignalQuery("oom_terminations", "last termination OOMKilled",
                    f'max by (pod, container) (kube_pod_container_status_last_terminated_reason{{{sel},reason="OOMKilled"}})',
                    "count"),
    ]
    queries = [replace(q, subject=workload) for q in queries + application_queries(namespace, workload, pods)]
    kinds = {"Deployment": ("kube_deployment_status_replicas_available", "deployment"),
             "StatefulSet": ("kube_statefulset_status_replicas_ready", "statefulset"),
             "DaemonSet": ("kube_daemonset_status_number_available", "daemonset")}
    if workload.kind in kinds:
        metric, label = kinds[workload.kind]
        queries.append(SignalQuery("available_replicas", "available replicas",
                                   f"max({metric}{{namespace={ns},{label}={name}}})", "replicas", workload))
        queries.append(SignalQuery("hpa_replicas", "HPA current replicas",
                                   f"kube_horizontalpodautoscaler_status_current_replicas{{namespace={ns}}}", "replicas",
                                   workload))
    return queries


REQUEST_COUNTERS = ("http_requests_total|http_server_requests_seconds_count|http_server_request_duration_seconds_count|"
                    "http_server_duration_seconds_count|requests_total|grpc_server_handled_total")
LATENCY_BUCKETS = ("http_request_duration_seconds_bucket|http_server_requests_seconds_bucket|"
                   "http_server_request_duration_seconds_bucket|http_server_duration_seconds_bucket|"
                   "request_duration_seconds_bucket|grpc_server_handling_seconds_bucket")
ERROR_MATCHERS = ('code=~"5.."', 'status=~"5.."', 'status_code=~"5.."', 'grpc_code=~"Internal|Unavailable|Unknown"')


def _first_of(template: str, selectors: list[str]) -> str:
    """`template` over each selector, joined with `or`: the first that has data wins."""
    return " or ".join(f"({template.format(sel=sel)})" for sel in selectors)


def _owners(namespace: str, name: str, pods: list[str]) -> list[str]:
    ns, quoted = _quote(namespace), _quote(name)
    owners = [f"namespace={ns},service={quoted}", f"namespace={ns},job={quoted}", f"namespace={ns},app={quoted}"]
    if pods:
        owners.append(f"namespace={ns},pod=~{_pods_regex(pods)}")
    return owners


def error_ratio_query(namespace: str, name: str, window: str = "5m", pods: list[str] | None = None) -> str:
    """The workload's 5xx ratio over `window` by the common instrumentation conventions (its
    `service`, `job` or `app` label, or its pods): no errors counted is 0, no requests is no data."""
    counters = [f'__name__=~"{REQUEST_COUNTERS}",{owner}' for owner in _owners(namespace, name, pods or [])]
    errors = [f"{sel},{matcher}" for sel in counters for matcher in ERROR_MATCHERS]
    requests = f"sum(rate({{{{{{sel}}}}}}[{window}]))"
    return f"({_first_of(requests, errors)} or vector(0)) / ({_first_of(requests, counters)})"


def application_queries(namespace: str, workload: ObjectRef, pods: list[str]) -> list[SignalQuery]:
    """Requests, 5xx ratio and p95 latency by the common instrumentation conventions; the
    workload is found by its `service` label, its `job` label, or its pods."""
    owners = _owners(namespace, workload.name, pods)
    counters = [f'__name__=~"{REQUEST_COUNTERS}",{owner}' for owner in owners]
    requests = "sum(rate({{{sel}}}[5m]))"
    return [
        SignalQuery("request_rate", "requests/s", _first_of(requests, counters), "per_second"),
        SignalQuery("error_ratio", "5xx ratio", error_ratio_query(namespace, workload.name, "5m", pods), "ratio"),
        SignalQuery("latency_p95", "p95 latency", _first_of(
            "histogram_quantile(0.95, sum by (le) (rate({{{sel}}}[5m])))",
            [f'__name__=~"{LATENCY_BUCKETS}",{owner}' for owner in owners]), "seconds"),
    ]


def claim_queries(claims: list[ObjectRef]) -> list[SignalQuery]:
    return [SignalQuery("volume_free", f"free space on {c.name}",
                        f"kubelet_volume_stats_available_bytes{{namespace={_quote(c.namespace or '')},"
                        f"persistentvolumeclaim={_quote(c.name)}}} / kubelet_volume_stats_capacity_bytes{{"
                        f"namespace={_quote(c.namespace or '')},persistentvolumeclaim={_quote(c.name)}}}", "ratio")
            for c in claims]


def node_queries(nodes: list[str]) -> list[SignalQuery]:
    queries = []
    for node in nodes:
        n = _quote(node)
        queries.append(SignalQuery("node_conditions", f"conditions of {node}",
                                   f'kube_node_status_condition{{node={n},status="true",condition!="Ready"}} == 1',
                                   "count"))
        queries.append(SignalQuery("node_memory_consumers", f"largest memory users on {node}",
                                   f"topk(4, max by (id, namespace, pod) (container_memory_working_set_bytes{{node={n},"
                                   f'id=~"/system.slice/.+|/kubepods.*/pod[^/]+"}}))', "bytes"))
        queries.append(SignalQuery("node_ready", f"{node} Ready",
                                   f'kube_node_status_condition{{node={n},condition="Ready",status="true"}}', "count"))
    return queries


def cluster_queries(namespaces: list[str]) -> list[SignalQuery]:
    """Signals not tied to one workload: expiring certificates and down dependencies."""
    queries = [SignalQuery("certificate_expiry", "TLS certificate time left",
                           "probe_ssl_earliest_cert_expiry - time() < 86400", "seconds")]
    for namespace in namespaces[:3]:
        ns = _quote(namespace)
        queries.append(SignalQuery("backlog", f"queues and backlogs in {namespace}",
                                   f'{{namespace={ns},__name__=~"{BACKLOG_NAMES}",'
                                   f'__name__!~"(kube|container|kubelet|node|apiserver|prometheus|alertmanager)_.*"}}',
                                   "count"))
        queries.append(SignalQuery("dependency_down", f"probes and exporters down in {namespace}",
                                   f'({{namespace={ns},__name__=~"up|probe_success|pg_up|mysql_up|redis_up|'
                                   f'mongodb_up|rabbitmq_up|elasticsearch_cluster_health_up"}} == 0)', "count"))
    return queries


class PrometheusGatherer:
    def __init__(self, url: str, timeout_seconds: float = 5.0):
        self._url = url
        # POST: the golden-signal queries try several label conventions and grow long
        self._client = PrometheusConnect(url=url, disable_ssl=not url.startswith("https"), timeout=timeout_seconds,
                                         method="POST")
        self._timeout = timeout_seconds

    def gather(self, queries: list[SignalQuery], now: datetime, deadline: float) -> tuple[list[Signal], list[Gap]]:
        if not queries:
            return [], []
        start = now - RANGE
        signals: list[Signal] = []
        gaps: list[Gap] = []
        unreachable: list[str] = []

        def run(query: SignalQuery) -> list[Signal]:
            left = deadline - time.monotonic()
            if left < 0.2:
                gaps.append(Gap(f"Prometheus: {query.title}", "the investigation's time budget ran out"))
                return []
            if unreachable:
                return []
            try:
                result = self._client.custom_query_range(query.query, start, now, f"{STEP_SECONDS}s",
                                                         timeout=min(self._timeout, left))
            except Exception as exc:  # noqa: BLE001 - a failed query is a gap, never an error
                text = str(exc)
                if "Connection" in type(exc).__name__ or "refused" in text or "Max retries" in text:
                    unreachable.append(text)
                else:
                    gaps.append(Gap(f"Prometheus: {query.title}", text.splitlines()[0][:200] if text else "failed"))
                return []
            return _signals(query, result)

        with ThreadPoolExecutor(PARALLEL_QUERIES, thread_name_prefix="opsbot-promql") as pool:
            for found in pool.map(run, queries):
                signals.extend(found)
        if unreachable:
            gaps.append(Gap("Prometheus metrics", f"Prometheus at {self._url} is unreachable"))
        return signals, gaps


RATE_WINDOW_POINTS = 5  # rate(...[5m]) at 1-minute steps


def _signals(query: SignalQuery, result: list[dict]) -> list[Signal]:
    """Signals from a range query. The first points of a rate() are cut: where the data begins
    inside the range they are extrapolated from too few samples, a false step up."""
    signals = []
    trim = RATE_WINDOW_POINTS if "rate(" in query.query else 0
    for series in result[:MAX_SERIES_PER_SIGNAL]:
        points = []
        for stamp, value in series.get("values") or []:
            try:
                points.append((datetime.fromtimestamp(float(stamp), UTC), float(value)))
            except (TypeError, ValueError):
                continue
        points = points[trim:] if len(points) > 2 * trim else points
        if not points:
            continue
        labels = {k: v for k, v in (series.get("metric") or {}).items()}
        signals.append(Signal(key=query.key, title=query.title, query=query.query, unit=query.unit,
                              points=points, labels=labels, change=change_point(points), subject=query.subject))
    return signals
