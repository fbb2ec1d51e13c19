"""GATHER: run every gatherer for one incident within a time budget; none can fail it.

Order: subject (from the alerts; located from application labels when they name no object,
see `locate`) → Kubernetes snapshot → focus → logs and Prometheus in
parallel → dependencies named by the logs → the logs of the workloads behind them (upstream). Each step has its share of the budget; what it
could not do in time is a `Gap`, and whatever else was found is still used. An exception in a
gatherer is caught here, logged, and becomes a gap too: the investigation always produces a
Context. `ctx.timings` records the seconds each gatherer took (the benchmark reports them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

from bot.context.clusters import ClusterAccess
from bot.context.dependencies import fill_dependencies
from bot.context.focus import find_focus, focus_pods
from bot.context.kube_gather import fill_kubernetes
from bot.context.kube_read import KubeReader, load_api_classes
from bot.context.locate import locate
from bot.context.logs import gather_logs
from bot.context.metrics import (
    PrometheusGatherer,
    SignalQuery,
    application_queries,
    claim_queries,
    cluster_queries,
    node_queries,
    workload_queries,
)
from bot.context.model import AlertView, Context, Gap, ObjectRef
from bot.context.subject import incident_start, resolve_subject

log = logging.getLogger(__name__)
DEFAULT_BUDGET_SECONDS = 10.0
KUBE_SHARE, LOGS_SHARE = 0.45, 0.35


def _timed(ctx: Context, name: str, step: Callable[[], None]) -> None:
    started = time.perf_counter()
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - a gatherer's bug must not cost the investigation
        log.exception("gatherer %s failed", name)
        ctx.gaps.append(Gap(name, f"the gatherer failed ({type(exc).__name__})"))
    finally:
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - started


def _queries(ctx: Context) -> list[SignalQuery]:
    queries: list[SignalQuery] = []
    pods = focus_pods(ctx, ctx.focus)
    for ref in ctx.focus[:3]:
        names = [p.ref.name for p in pods if p.workload == ref or (ref.kind == "CronJob" and p.workload
                                                                    and p.workload.name.startswith(ref.name))]
        queries += workload_queries(ref.namespace or "", ref, names)
    claims = list(ctx.subject.claims)
    for pod in pods:
        for volume in pod.volumes:
            claim = ObjectRef("PersistentVolumeClaim", pod.ref.namespace, volume.source or "")
            if volume.kind == "persistentVolumeClaim" and volume.source and claim not in claims:
                claims.append(claim)
    queries += claim_queries(claims[:4])
    nodes = list(ctx.subject.nodes) + sorted({p.node for p in pods if p.node} - set(ctx.subject.nodes))[:2]
    queries += node_queries(nodes[:3])
    queries += cluster_queries(ctx.subject.namespaces)
    return queries


def _upstream_logs(ctx: Context, reader: KubeReader) -> None:
    """The logs of the dependency workloads' pods, once the focus' errors led to them."""
    known = {view.pod for view in ctx.logs}
    upstream = set(ctx.upstream)
    pods = [p for p in ctx.pods if (p.workload in upstream or p.owner in upstream) and p.ref not in known]
    if pods:
        ctx.logs += gather_logs(reader, pods, ctx.incident_start, ctx.now)


def _upstream_signals(ctx: Context, prometheus_url: str, deadline: float) -> None:
    """The golden signals of the dependency workloads (did one of them get slower or fail more
    after its own release?)."""
    queries = []
    for ref in ctx.upstream:
        names = [p.ref.name for p in ctx.pods if p.workload == ref]
        queries += [replace(q, subject=ref) for q in application_queries(ref.namespace or "", ref, names)]
    signals, gaps = PrometheusGatherer(prometheus_url).gather(queries, ctx.now, max(deadline, time.monotonic() + 1.0))
    ctx.signals += signals
    ctx.gaps.extend(g for g in gaps if g not in ctx.gaps)


def gather(alerts: Sequence[AlertView], now: datetime, access: ClusterAccess | None,
           budget_seconds: float = DEFAULT_BUDGET_SECONDS, cluster: str | None = None) -> Context:
    """Everything the investigation can find about `alerts` at `now` (the incident's clock).
    The client's API modules are loaded before the budget's clock starts (a no-op once loaded)."""
    if access is not None and access.api_client is not None:
        load_api_classes()
    started = time.monotonic()
    subject = resolve_subject(alerts)
    ctx = Context(now=now, cluster=cluster, alerts=list(alerts), subject=subject,
                  incident_start=incident_start(alerts, now))
    if subject.heartbeat:
        return ctx
    if access is None:
        ctx.gaps.append(Gap("the cluster", f"cluster {cluster or '(none)'} is not configured (OPSBOT_CLUSTERS): "
                                           "not investigated, to avoid reading the wrong cluster"))
        return ctx
    api_client = None
    reader = None
    if access.api_client is None:
        ctx.gaps.append(Gap("Kubernetes", "not configured (OPSBOT_KUBE_MODE)"))
    else:
        try:
            api_client = access.api_client()
        except Exception as exc:  # noqa: BLE001 - bad kubeconfig, missing service account...
            ctx.gaps.append(Gap("Kubernetes", f"cannot build a client: {type(exc).__name__}: {exc}"[:300]))
    try:
        if api_client is not None:
            reader = KubeReader(api_client, started + budget_seconds * KUBE_SHARE)
            _timed(ctx, "kubernetes", lambda: (locate(ctx, reader), fill_kubernetes(ctx, reader)))
        ctx.focus = find_focus(ctx)
        logs_deadline = time.monotonic() + budget_seconds * LOGS_SHARE
        prom_deadline = started + budget_seconds
        with ThreadPoolExecutor(2, thread_name_prefix="opsbot-gather") as pool:
            futures = []
            if reader is not None:
                log_reader = KubeReader(api_client, logs_deadline)

                def logs() -> None:
                    ctx.logs = gather_logs(log_reader, focus_pods(ctx, ctx.focus), ctx.incident_start, now)
                    ctx.gaps.extend(log_reader.gaps)
                futures.append(pool.submit(_timed, ctx, "logs", logs))
            if access.prometheus_url:
                prometheus = PrometheusGatherer(access.prometheus_url)

                def metrics() -> None:
                    ctx.signals, gaps = prometheus.gather(_queries(ctx), now, prom_deadline)
                    ctx.gaps.extend(gaps)
                futures.append(pool.submit(_timed, ctx, "prometheus", metrics))
            else:
                ctx.gaps.append(Gap("Prometheus metrics", "not configured (OPSBOT_PROMETHEUS_URL)"))
            for future in futures:
                future.result()
        if reader is not None:
            dep_reader = KubeReader(api_client, time.monotonic() + max(0.5, started + budget_seconds - time.monotonic()))
            _timed(ctx, "dependencies", lambda: (fill_dependencies(ctx, dep_reader), _upstream_logs(ctx, dep_reader)))
            ctx.gaps.extend(g for g in dep_reader.gaps if g not in ctx.gaps)
            if access.prometheus_url and ctx.upstream:
                _timed(ctx, "prometheus", lambda: _upstream_signals(ctx, access.prometheus_url, prom_deadline))
    finally:
        if api_client is not None:
            api_client.close()
    return ctx
