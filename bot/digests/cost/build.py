"""The cost and capacity digest: what could be saved, what is short, and what fills soon.

For each configured cluster the declared queries (`bot.digests.cost.queries`) are evaluated as
instant queries at `context.now` against the cluster's Prometheus; the findings are computed
from their answers only, so every figure can be reproduced from the listed PromQL. Invariants:

- Never raises for what the world does: no Prometheus URL, Prometheus unreachable, a failing
  query or an unexpected answer becomes one line in `problems`, naming the cluster, the query
  and the sections that may be incomplete; everything else is still reported.
- A saving is counted once: an idle workload is priced as a whole (its requests) and is not
  also listed as oversized; oversized savings are per container and resource, only where the
  request is at least `oversized_ratio` times the p95 use, and only workloads saving at least
  `min_monthly_saving` are listed. `summary["monthly_saving"]` sums every saving found, also
  those beyond the `top` listed as findings.
- A suggested request is the p95 use plus `headroom`, rounded up to the declared steps, never
  below the smallest step, and always below the current request (else nothing is suggested).
- Keys are `cost/<cluster>/<section-slug>/<namespace>/<name>`; the cluster segment is the
  configured name or `default`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bot.digests.cost import queries as q
from bot.digests.cost.chart import NamespaceUsage, usage_chart
from bot.digests.cost.forecast import (
    CapacityForecast,
    Scope,
    Vector,
    capacity_forecast,
    format_bytes,
    pinned_hpas,
    plural,
)
from bot.digests.model import Attachment, DigestContext, DigestReport, Finding

if TYPE_CHECKING:
    from bot.digests.cost import CostConfig, Prices

log = logging.getLogger(__name__)

NAME, TITLE = "cost", "Cost and capacity"
HOURS_PER_MONTH = 730.0
MIB, GIB = 1024**2, 1024**3
DEFAULT_CLUSTER_KEY = "default"
CHART_FILENAME = "cost-by-namespace.png"
CURRENCY_SYMBOLS: Mapping[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
# Suggested requests are rounded up to these steps: (up to this size, step).
CPU_STEPS_CORES: tuple[tuple[float, float], ...] = ((0.1, 0.01), (1.0, 0.05), (math.inf, 0.25))
MEMORY_STEPS_BYTES: tuple[tuple[float, float], ...] = ((GIB, 32 * MIB), (8 * GIB, 256 * MIB), (math.inf, GIB))
IDLE_MIN_PRESENCE_SHARE = 0.9  # a workload younger than this share of the look-back is not called idle

WorkloadId = tuple[str, str, str]  # namespace, kind, name


@dataclass(frozen=True)
class Money:
    """Amounts in the configured currency: "$52.34", "12.00 CHF"."""

    currency: str

    def __call__(self, amount: float, *, exact: bool = False) -> str:
        text = f"{amount:g}" if exact else f"{amount:,.2f}"
        symbol = CURRENCY_SYMBOLS.get(self.currency)
        return f"{symbol}{text}" if symbol else f"{text} {self.currency}"


def round_up(value: float, steps: Sequence[tuple[float, float]]) -> float:
    """`value` rounded up to the step of its size class, at least the smallest step."""
    value = max(value, steps[0][1])
    for bound, step in steps:
        if value <= bound:
            return round(math.ceil(value / step - 1e-9) * step, 9)
    raise ValueError("the last step must be unbounded")


def cpu_quantity(cores: float) -> str:
    return f"{cores * 1000:.0f}m" if cores < 1 else f"{cores:g}"


def memory_quantity(size: float) -> str:
    if size >= GIB and size % GIB == 0:
        return f"{size / GIB:.0f}Gi"
    if size % MIB == 0:
        return f"{size / MIB:.0f}Mi"
    return format_bytes(size)


@dataclass(frozen=True)
class ResourceRule:
    """How one resource is measured, rounded, shown and priced."""

    resource: str  # the `resource` label of kube_pod_container_resource_requests
    label: str
    p95_query: str
    steps: tuple[tuple[float, float], ...]
    quantity: Callable[[float], str]
    usage: Callable[[float], str]
    hourly_price: Callable[[Prices], float]  # per unit (core, byte) and hour


RESOURCES: tuple[ResourceRule, ...] = (
    ResourceRule("cpu", "CPU", q.CPU_P95.key, CPU_STEPS_CORES, cpu_quantity,
                 lambda cores: f"{cores:.3g} cores", lambda prices: prices.vcpu_hour),
    ResourceRule("memory", "memory", q.MEMORY_P95.key, MEMORY_STEPS_BYTES, memory_quantity,
                 format_bytes, lambda prices: prices.gib_hour / GIB),
)


@dataclass(frozen=True)
class Saving:
    finding: Finding
    monthly: float


@dataclass
class _Container:
    replicas: int = 0
    requests: dict[str, float] = field(default_factory=dict)
    p95: dict[str, float] = field(default_factory=dict)


def _workload(labels: Mapping[str, str]) -> WorkloadId:
    return labels.get("namespace", ""), labels.get("workload_kind", ""), labels.get("workload", "")


def _containers(results: Mapping[str, Vector]) -> dict[WorkloadId, dict[str, _Container]]:
    """Workloads that have requests now, with each container's requests, replicas and p95 use."""
    workloads: dict[WorkloadId, dict[str, _Container]] = defaultdict(lambda: defaultdict(_Container))
    for labels, value in results.get(q.CONTAINER_REQUESTS.key, ()):
        workloads[_workload(labels)][labels.get("container", "")].requests[labels.get("resource", "")] = value
    known = {(w, c) for w, containers in workloads.items() for c in containers}
    for labels, value in results.get(q.CONTAINER_REPLICAS.key, ()):
        if (_workload(labels), labels.get("container", "")) in known:
            workloads[_workload(labels)][labels.get("container", "")].replicas = int(value)
    for rule in RESOURCES:
        for labels, value in results.get(rule.p95_query, ()):
            if (_workload(labels), labels.get("container", "")) in known:
                workloads[_workload(labels)][labels.get("container", "")].p95[rule.resource] = value
    return workloads


def _subject(workload: WorkloadId, scope: Scope) -> str:
    namespace, kind, name = workload
    return f"{kind} {namespace}/{name}{scope.subject_suffix}"


def _key(scope: Scope, section: str, namespace: str, name: str) -> str:
    return f"cost/{scope.cluster_key}/{q.SECTION_SLUGS[section]}/{namespace}/{name}"


def _request_cost(containers: Mapping[str, _Container], prices: Prices) -> float:
    return sum(c.requests.get(rule.resource, 0.0) * c.replicas * rule.hourly_price(prices) * HOURS_PER_MONTH
               for c in containers.values() for rule in RESOURCES)


def _oversized(workload: WorkloadId, containers: Mapping[str, _Container], config: CostConfig,
               scope: Scope, money: Money) -> Saving | None:
    parts, monthly, numbers = [], 0.0, {"cpu_cores_saved": 0.0, "memory_bytes_saved": 0.0}
    for name, container in sorted(containers.items()):
        changes = []
        for rule in RESOURCES:
            request, p95 = container.requests.get(rule.resource), container.p95.get(rule.resource)
            if not request or p95 is None or request < config.oversized_ratio * p95:
                continue
            suggested = round_up(p95 * (1 + config.headroom), rule.steps)
            if suggested >= request:
                continue
            freed = (request - suggested) * container.replicas
            monthly += freed * rule.hourly_price(config.prices) * HOURS_PER_MONTH
            numbers["cpu_cores_saved" if rule.resource == "cpu" else "memory_bytes_saved"] += freed
            changes.append(f"{rule.label} {rule.quantity(request)} → {rule.quantity(suggested)} "
                           f"(p95 {rule.usage(p95)})")
        if changes:
            replicas = f"{container.replicas} replica" + ("" if container.replicas == 1 else "s")
            parts.append(f"{name}: {', '.join(changes)}, {replicas}")
    if not parts or monthly <= 0:
        return None
    namespace, _, workload_name = workload
    return Saving(Finding(
        key=_key(scope, q.SECTION_OVERSIZED, namespace, workload_name),
        section=q.SECTION_OVERSIZED,
        subject=_subject(workload, scope),
        detail=f"{'; '.join(parts)}; saves {money(monthly)}/month",
        severity="info",
        numbers={"monthly_saving": round(monthly, 2), **{k: round(v, 6) for k, v in numbers.items()}},
    ), monthly)


@dataclass(frozen=True)
class Sizing:
    savings: tuple[Saving, ...]
    skipped_small: int


def idle_and_oversized(results: Mapping[str, Vector], *, config: CostConfig, scope: Scope,
                       money: Money) -> Sizing:
    """Idle workloads (priced whole) and oversized ones (priced by what right-sizing frees)."""
    cpu_avg = {_workload(labels): v for labels, v in results.get(q.WORKLOAD_CPU_AVG.key, ())}
    network_avg = {_workload(labels): v for labels, v in results.get(q.WORKLOAD_NETWORK_AVG.key, ())}
    presence = {_workload(labels): v for labels, v in results.get(q.WORKLOAD_PRESENCE.key, ())}
    expected_steps = config.lookback_days * 86400 / q.SUBQUERY_STEP_SECONDS
    savings, skipped = [], 0
    for workload, containers in sorted(_containers(results).items()):
        cpu, network = cpu_avg.get(workload), network_avg.get(workload)
        idle = (cpu is not None and network is not None and cpu < config.idle_cpu_cores
                and network < config.idle_network_bytes_per_second
                and presence.get(workload, 0.0) >= IDLE_MIN_PRESENCE_SHARE * expected_steps)
        if idle:
            cost = _request_cost(containers, config.prices)
            if cost <= 0:
                continue
            namespace, _, name = workload
            savings.append(Saving(Finding(
                key=_key(scope, q.SECTION_IDLE, namespace, name),
                section=q.SECTION_IDLE,
                subject=_subject(workload, scope),
                detail=(f"average CPU {cpu_quantity(cpu)} and {format_bytes(network)}/s received over the "
                        f"last {plural(config.lookback_days, 'day')}; its requests cost {money(cost)}/month"),
                severity="info",
                numbers={"monthly_saving": round(cost, 2), "cpu_cores_average": cpu,
                         "network_bytes_per_second_average": network},
            ), cost))
            continue
        saving = _oversized(workload, containers, config, scope, money)
        if saving is None:
            continue
        if saving.monthly < config.min_monthly_saving:
            skipped += 1
        else:
            savings.append(saving)
    return Sizing(tuple(savings), skipped)


def unattached_volumes(results: Mapping[str, Vector], *, config: CostConfig, scope: Scope,
                       money: Money) -> list[Saving]:
    sizes = {(labels.get("namespace", ""), labels.get("persistentvolumeclaim", "")): value
             for labels, value in results.get(q.CLAIM_REQUESTED_BYTES.key, ())}
    price = config.prices.storage_gib_month
    found = []
    claims = sorted(results.get(q.UNATTACHED_CLAIMS.key, ()), key=lambda item: sorted(item[0].items()))
    for labels, _ in claims:
        namespace, claim = labels.get("namespace", ""), labels.get("persistentvolumeclaim", "")
        size = sizes.get((namespace, claim))
        monthly = size / GIB * price if size is not None and price is not None else 0.0
        cost = (f"costs {money(monthly)}/month" if price is not None and size is not None
                else "not priced (set prices.storage_gib_month)")
        storage_class = labels.get("storageclass") or "no storage class"
        found.append(Saving(Finding(
            key=_key(scope, q.SECTION_UNATTACHED, namespace, claim),
            section=q.SECTION_UNATTACHED,
            subject=f"PersistentVolumeClaim {namespace}/{claim}{scope.subject_suffix}",
            detail=(f"{format_bytes(size) if size is not None else 'size unknown'} ({storage_class}), "
                    f"mounted by no pod in the last {plural(config.lookback_days, 'day')}; {cost}"),
            severity="info",
            numbers={"monthly_saving": round(monthly, 2),
                     **({"size_bytes": size} if size is not None else {})},
        ), monthly))
    return found


@dataclass(frozen=True)
class ClusterResults:
    name: str | None
    url: str
    results: Mapping[str, Vector]

    @property
    def scope(self) -> Scope:
        suffix = f" (cluster {self.name})" if self.name is not None else ""
        return Scope(self.name or DEFAULT_CLUSTER_KEY, suffix)


def _where(name: str | None) -> str:
    return f"cluster {name}: " if name is not None else ""


def _collect(config: CostConfig, context: DigestContext, name: str | None,
             rendered: Mapping[str, str]) -> tuple[ClusterResults | None, list[str]]:
    """Every declared query's answer for one cluster, or None when its Prometheus cannot be reached."""
    try:
        access = context.clusters.resolve(name)
    except Exception as exc:  # noqa: BLE001 - a broken directory is a problem line
        return None, [f"{_where(name)}cannot resolve the cluster: {exc}"]
    if access is None and name is None:
        known = ", ".join(getattr(context.clusters, "names", ()) or ()) or "none"
        return None, [f"no default cluster (configured: {known}); name the clusters in cost.clusters"]
    if access is None:
        return None, [f"{_where(name)}no such cluster is configured; cost and capacity not checked"]
    url = getattr(access, "prometheus_url", None)
    if not url:
        return None, [f"{_where(name)}no Prometheus URL configured; cost and capacity not checked"]
    reader, problems, results = q.PrometheusReader(url, config.query_timeout_seconds), [], {}
    try:
        for spec in q.ALL_QUERIES:
            try:
                results[spec.key] = reader.instant(rendered[spec.key], context.now.timestamp())
            except q.QueryFailed as exc:
                sections = ", ".join(s.format(days=config.forecast_days) for s in spec.feeds)
                problems.append(f"{_where(name)}query {spec.key} ({spec.description}) failed: {exc}; "
                                f"{sections} may be incomplete")
    except q.PrometheusUnreachable as exc:
        return None, [*problems, f"{_where(name)}Prometheus at {url} is unreachable ({exc}); "
                                 "cost and capacity not checked"]
    finally:
        reader.close()
    return ClusterResults(name, url, results), problems


def _namespace_rows(cluster: ClusterResults, labelled: bool) -> list[NamespaceUsage]:
    def by_namespace(spec: q.QuerySpec) -> dict[str, float]:
        return {labels.get("namespace", ""): value for labels, value in cluster.results.get(spec.key, ())}

    requested: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, value in cluster.results.get(q.NAMESPACE_REQUESTS_AVG.key, ()):
        requested[labels.get("namespace", "")][labels.get("resource", "")] = value
    cpu_used, memory_used = by_namespace(q.NAMESPACE_CPU_USED_AVG), by_namespace(q.NAMESPACE_MEMORY_USED_AVG)
    return [NamespaceUsage(f"{cluster.name}/{namespace}" if labelled and cluster.name else namespace,
                           requested[namespace].get("cpu", 0.0), cpu_used.get(namespace, 0.0),
                           requested[namespace].get("memory", 0.0), memory_used.get(namespace, 0.0))
            for namespace in sorted(set(requested) | set(cpu_used) | set(memory_used))]


def _unused_monthly_cost(row: NamespaceUsage, prices: Prices) -> float:
    cpu = max(row.cpu_requested_cores - row.cpu_used_cores, 0.0) * prices.vcpu_hour
    memory = max(row.memory_requested_bytes - row.memory_used_bytes, 0.0) / GIB * prices.gib_hour
    return (cpu + memory) * HOURS_PER_MONTH


def _unique_keys(findings: Sequence[Finding]) -> list[Finding]:
    """Two objects mapping to one key (a Deployment and a StatefulSet of one name) keep both."""
    seen: dict[str, int] = defaultdict(int)
    unique = []
    for finding in findings:
        seen[finding.key] += 1
        count = seen[finding.key]
        unique.append(finding if count == 1 else replace(finding, key=f"{finding.key}#{count}"))
    return unique


@dataclass
class _Tally:
    savings: list[Saving] = field(default_factory=list)
    skipped_small: int = 0
    pinned: list[Finding] = field(default_factory=list)
    capacity: list[CapacityForecast] = field(default_factory=list)
    namespaces: list[NamespaceUsage] = field(default_factory=list)

    def total(self, savings: Sequence[Saving] | None = None) -> float:
        return sum(s.monthly for s in (self.savings if savings is None else savings))

    def count(self, section: str) -> int:
        return sum(1 for s in self.savings if s.finding.section == section)


def _headline(config: CostConfig, tally: _Tally, money: Money, problems: Sequence[str], checked: int) -> str:
    volumes, quotas = sum(c.volumes for c in tally.capacity), sum(c.quotas for c in tally.capacity)
    horizon = f"within {config.forecast_days} days"
    parts = [f"{money(tally.total())}/month could be saved"] if tally.total() > 0 else []
    unpriced = sum(1 for s in tally.savings if s.monthly <= 0)
    parts += [f"{plural(unpriced, 'unattached volume')} not priced"] if unpriced else []
    parts += [f"{plural(volumes, 'volume', 'fills')} {horizon}"] if volumes else []
    parts += [f"{plural(quotas, 'quota', 'fills')} {horizon}"] if quotas else []
    parts += [f"{plural(len(tally.pinned), 'HPA')} pinned at max"] if tally.pinned else []
    if parts:
        return "; ".join(parts)
    if not checked:
        return "Cost and capacity not checked: " + (problems[0] if problems else "no cluster configured")
    if problems:
        return f"Nothing to save in what could be checked; {plural(len(problems), 'check')} failed"
    return f"Nothing to save: requests are within {config.oversized_ratio:g}× of p95 usage"


def _notes(config: CostConfig, context: DigestContext, money: Money, clusters: Sequence[ClusterResults],
           tally: _Tally) -> list[str]:
    prices = config.prices
    storage = (f", {money(prices.storage_gib_month, exact=True)} per GiB-month of volume"
               if prices.storage_gib_month is not None
               else "; volumes not priced (prices.storage_gib_month unset)")
    sources = ", ".join(f"{c.name or DEFAULT_CLUSTER_KEY}: {c.url}" for c in clusters) or "no Prometheus"
    notes = [
        f"look-back {plural(config.lookback_days, 'day')}; every query evaluated at "
        f"{context.now.isoformat()} ({sources})",
        f"prices: {money(prices.vcpu_hour, exact=True)} per vCPU-hour, "
        f"{money(prices.gib_hour, exact=True)} per GiB-hour of memory, "
        f"{HOURS_PER_MONTH:g} hours a month{storage}",
        f"suggested requests: p95 use over the look-back plus {config.headroom:.0%}, rounded up",
    ]
    hidden = tally.savings[config.top:]
    if hidden:
        notes.append(f"{plural(len(hidden), 'more saving')} worth {money(tally.total(hidden))}/month "
                     f"not listed (top {config.top} shown; the total includes them)")
    if tally.skipped_small:
        notes.append(f"{plural(tally.skipped_small, 'oversized workload')} saving less than "
                     f"{money(config.min_monthly_saving)}/month each not listed")
    ranked = sorted(tally.namespaces, key=lambda r: (-_unused_monthly_cost(r, prices), r.label))
    for row in ranked[: config.top]:
        notes.append(
            f"namespace {row.label}: requested {row.cpu_requested_cores:.2f} CPU and "
            f"{format_bytes(row.memory_requested_bytes)}, used {row.cpu_used_cores:.2f} CPU and "
            f"{format_bytes(row.memory_used_bytes)} on average; the unused part costs "
            f"{money(_unused_monthly_cost(row, prices))}/month")
    return notes


def _summary(tally: _Tally, prices: Prices) -> dict[str, float]:
    rows = tally.namespaces
    return {
        "monthly_saving": round(tally.total(), 2),
        "oversized_workloads": float(tally.count(q.SECTION_OVERSIZED)),
        "idle_workloads": float(tally.count(q.SECTION_IDLE)),
        "unattached_volumes": float(tally.count(q.SECTION_UNATTACHED)),
        "pinned_hpas": float(len(tally.pinned)),
        "volumes_filling": float(sum(c.volumes for c in tally.capacity)),
        "quotas_filling": float(sum(c.quotas for c in tally.capacity)),
        "requested_cpu_cores": round(sum(r.cpu_requested_cores for r in rows), 3),
        "used_cpu_cores": round(sum(r.cpu_used_cores for r in rows), 3),
        "requested_memory_gib": round(sum(r.memory_requested_bytes for r in rows) / GIB, 3),
        "used_memory_gib": round(sum(r.memory_used_bytes for r in rows) / GIB, 3),
        "unused_monthly_cost": round(sum(_unused_monthly_cost(r, prices) for r in rows), 2),
    }


def _analyse(config: CostConfig, context: DigestContext, cluster: ClusterResults, money: Money,
             tally: _Tally, labelled: bool) -> None:
    scope = cluster.scope
    sizing = idle_and_oversized(cluster.results, config=config, scope=scope, money=money)
    tally.savings.extend(sizing.savings)
    tally.skipped_small += sizing.skipped_small
    tally.savings.extend(unattached_volumes(cluster.results, config=config, scope=scope, money=money))
    tally.pinned.extend(pinned_hpas(cluster.results, pinned_share=config.hpa_pinned_share,
                                    lookback_days=config.lookback_days, scope=scope))
    tally.capacity.append(capacity_forecast(cluster.results, now=context.now,
                                            lookback_days=config.lookback_days,
                                            forecast_days=config.forecast_days, scope=scope))
    tally.namespaces.extend(_namespace_rows(cluster, labelled))


def build(config: CostConfig, context: DigestContext) -> DigestReport:
    """The digest for every configured cluster; see the module docstring for the invariants."""
    rendered = {spec.key: q.render(spec, lookback_days=config.lookback_days,
                                   horizon_seconds=config.forecast_days * 86400) for spec in q.ALL_QUERIES}
    money = Money(config.prices.currency)
    problems: list[str] = []
    clusters: list[ClusterResults] = []
    tally = _Tally()
    labelled = len(config.clusters) > 1
    for name in dict.fromkeys(config.clusters):
        cluster, found = _collect(config, context, name, rendered)
        problems.extend(found)
        if cluster is None:
            continue
        clusters.append(cluster)
        try:
            _analyse(config, context, cluster, money, tally, labelled)
        except Exception as exc:  # noqa: BLE001 - an unexpected answer is a problem line, not a crash
            log.exception("cost digest: analysing cluster %s failed", name)
            problems.append(f"{_where(name)}the answers could not be analysed: {type(exc).__name__}: {exc}")

    tally.savings.sort(key=lambda s: (-s.monthly, s.finding.key))
    capacity = sorted((f for c in tally.capacity for f in c.findings),
                      key=lambda f: (f.severity != "critical", f.numbers.get("days_left", 0.0), f.key))
    findings = _unique_keys([*capacity, *tally.pinned, *(s.finding for s in tally.savings[: config.top])])
    chart = usage_chart(tally.namespaces,
                        title=f"Requested vs used over {plural(config.lookback_days, 'day')}, by namespace")
    attachments = () if chart is None else (
        Attachment(CHART_FILENAME, "Requested vs used CPU and memory by namespace", chart),)
    return DigestReport(
        name=NAME,
        title=TITLE,
        headline=_headline(config, tally, money, problems, len(clusters)),
        generated_at=context.now,
        findings=tuple(findings),
        problems=tuple(problems),
        notes=tuple(_notes(config, context, money, clusters, tally)),
        queries=tuple(f"{spec.key} — {spec.description}: {q.one_line(rendered[spec.key])}"
                      for spec in q.ALL_QUERIES),
        attachments=attachments,
        summary=_summary(tally, config.prices),
        partial_sections=tuple(sorted({s.finding.section for s in tally.savings[config.top:]})),
    )
