"""Capacity: volumes, node filesystems and quotas that fill within the horizon; HPAs pinned at max.

Each forecast comes from two `predict_linear` evaluations over the look-back (the fitted value
now and at the horizon) and the limit now (capacity, size, hard quota). Invariants:

- Only what exists now is forecast: a series is considered when its limit answers at `now`
  (an instant query), so a volume deleted days ago is not predicted to fill.
- Flat or shrinking use never fills (slope <= 0: no finding); use already at or past the limit
  by the trend fills "now" (0 days left).
- The date is `now + (limit - fitted now) / slope`, both from the listed queries, so a reader
  can reproduce it; findings within `CRITICAL_DAYS` are critical, the others warnings.
- An HPA is pinned when it ran at its maxReplicas for at least the configured share of the
  look-back; the proposed new maximum stays within twice the current one (the policy's usual
  blast radius) and the runbook's ceiling.
- Text is plain; label values from the cluster are shown, never interpreted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.digests.cost import queries as q
from bot.digests.model import Finding, Fix

Labels = q.Labels
Vector = q.Vector

DAY_SECONDS = 86400
CRITICAL_DAYS = 3.0
EXPAND_PVC_RUNBOOK = "expand-pvc"
EXPAND_FACTOR = 1.5  # the proposed new size of a filling claim, relative to its capacity
GIB = 1024**3
_BYTE_UNITS = (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024))
BYTE_RESOURCE_HINTS = ("storage", "memory")  # quota resources measured in bytes
HPA_RUNBOOK = "raise-hpa-max-replicas"
HPA_RAISE_FACTOR, HPA_RAISE_LIMIT_FACTOR, HPA_REPLICAS_CEILING = 1.5, 2.0, 200


def plural(count: int, word: str, verb: str = "") -> str:
    """The count, the noun and an optional verb agreeing with it: 1 volume fills, 2 volumes fill."""
    text = f"{count} {word}" if count == 1 else f"{count} {word}s"
    return f"{text} {verb if count == 1 else verb.removesuffix('s')}" if verb else text


def format_bytes(value: float) -> str:
    """1.5 GiB, 640 MiB, 900 B: binary units, at most three significant digits."""
    for unit, size in _BYTE_UNITS:
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def format_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def days_until_limit(limit: float, fitted_now: float, forecast: float,
                     horizon_seconds: float) -> float | None:
    """Days until the fitted use reaches `limit`; None when the trend is flat or falling."""
    slope_per_second = (forecast - fitted_now) / horizon_seconds
    if not math.isfinite(slope_per_second) or slope_per_second <= 0:
        return None
    remaining = limit - fitted_now
    if remaining <= 0:
        return 0.0
    return remaining / slope_per_second / DAY_SECONDS


@dataclass(frozen=True)
class Scope:
    """Where findings come from: the cluster's key segment and the suffix of subjects."""

    cluster_key: str
    subject_suffix: str = ""


@dataclass(frozen=True)
class CapacityForecast:
    findings: tuple[Finding, ...]
    volumes: int  # claims and node filesystems
    quotas: int


@dataclass(frozen=True)
class _Series:
    """One forecast subject: its identity, limit, fitted use now and at the horizon."""

    labels: Labels
    limit: float
    fitted_now: float
    forecast: float


def _index(vector: Vector, keys: Sequence[str]) -> dict[tuple[str, ...], tuple[Labels, float]]:
    return {tuple(labels.get(k, "") for k in keys): (labels, value) for labels, value in vector}


def _joined(results: Mapping[str, Vector], limit: str, fitted: str, forecast: str,
            keys: Sequence[str]) -> list[_Series]:
    """Series present in all three results (limit now, fitted now, forecast)."""
    limits = _index(results.get(limit, ()), keys)
    fitted_now = _index(results.get(fitted, ()), keys)
    forecasts = _index(results.get(forecast, ()), keys)
    joined = []
    for key, (labels, limit_value) in sorted(limits.items()):
        if key in fitted_now and key in forecasts:
            joined.append(_Series(labels, limit_value, fitted_now[key][1], forecasts[key][1]))
    return joined


def _severity(days_left: float) -> str:
    return "critical" if days_left <= CRITICAL_DAYS else "warning"


def _when(now: datetime, days_left: float) -> str:
    if days_left <= 0:
        return "already at the limit by the trend"
    return f"full around {format_date(now + timedelta(days=days_left))} (in {days_left:.1f} days)"


def _numbers(now: datetime, days_left: float, used: float, limit: float, per_day: float) -> dict[str, float]:
    return {"days_left": round(days_left, 2), "used": used, "limit": limit, "growth_per_day": per_day,
            "full_at_epoch_seconds": (now + timedelta(days=days_left)).timestamp()}


def _claims(results: Mapping[str, Vector], now: datetime, horizon: int, days: int, scope: Scope,
            section: str, slug: str, trend: str) -> list[Finding]:
    found = []
    for series in _joined(results, q.CLAIM_CAPACITY.key, q.CLAIM_USED_FIT_NOW.key, q.CLAIM_USED_FORECAST.key,
                          ("namespace", "persistentvolumeclaim")):
        left = days_until_limit(series.limit, series.fitted_now, series.forecast, horizon)
        if left is None or left > days:
            continue
        namespace, claim = series.labels.get("namespace", ""), series.labels.get("persistentvolumeclaim", "")
        per_day = (series.forecast - series.fitted_now) / horizon * DAY_SECONDS
        share = series.fitted_now / series.limit if series.limit else 1.0
        new_size_gib = max(1, math.ceil(series.limit * EXPAND_FACTOR / GIB))
        found.append(Finding(
            key=f"cost/{scope.cluster_key}/{slug}/{namespace}/{claim}",
            section=section,
            subject=f"PersistentVolumeClaim {namespace}/{claim}{scope.subject_suffix}",
            detail=(f"{share:.0%} used ({format_bytes(series.fitted_now)} of {format_bytes(series.limit)}), "
                    f"growing {format_bytes(per_day)} a day {trend}: {_when(now, left)}"),
            severity=_severity(left),
            fix=Fix(runbook=EXPAND_PVC_RUNBOOK, params={"namespace": namespace, "name": claim,
                                                        "size": f"{new_size_gib}Gi"},
                    title=f"Grow {namespace}/{claim} to {new_size_gib}Gi"),
            numbers=_numbers(now, left, series.fitted_now, series.limit, per_day),
        ))
    return found


def _filesystems(results: Mapping[str, Vector], now: datetime, horizon: int, days: int, scope: Scope,
                 section: str, slug: str, trend: str) -> list[Finding]:
    found = []
    for series in _joined(results, q.FILESYSTEM_SIZE.key, q.FILESYSTEM_AVAIL_FIT_NOW.key,
                          q.FILESYSTEM_AVAIL_FORECAST.key, ("instance", "device", "mountpoint")):
        # Used = size - available, so the filesystem is full when the available bytes reach 0.
        used_now, used_later = series.limit - series.fitted_now, series.limit - series.forecast
        left = days_until_limit(series.limit, used_now, used_later, horizon)
        if left is None or left > days:
            continue
        instance, mountpoint = series.labels.get("instance", ""), series.labels.get("mountpoint", "")
        per_day = (used_later - used_now) / horizon * DAY_SECONDS
        found.append(Finding(
            key=f"cost/{scope.cluster_key}/{slug}/node/{instance}:{mountpoint}",
            section=section,
            subject=f"Filesystem {mountpoint} on {instance}{scope.subject_suffix}",
            detail=(f"{format_bytes(max(series.fitted_now, 0.0))} free of {format_bytes(series.limit)} "
                    f"({series.labels.get('device', '')}), shrinking {format_bytes(per_day)} a day {trend}: "
                    f"{_when(now, left)}"),
            severity=_severity(left),
            numbers=_numbers(now, left, used_now, series.limit, per_day),
        ))
    return found


def _quota_amount(resource: str, value: float) -> str:
    if any(hint in resource for hint in BYTE_RESOURCE_HINTS):
        return format_bytes(value)
    return f"{value:.3g}"


def _quotas(results: Mapping[str, Vector], now: datetime, horizon: int, days: int, scope: Scope,
            section: str, slug: str, trend: str) -> list[Finding]:
    found = []
    for series in _joined(results, q.QUOTA_HARD.key, q.QUOTA_USED_FIT_NOW.key, q.QUOTA_USED_FORECAST.key,
                          ("namespace", "resourcequota", "resource")):
        left = days_until_limit(series.limit, series.fitted_now, series.forecast, horizon)
        if left is None or left > days:
            continue
        namespace = series.labels.get("namespace", "")
        quota, resource = series.labels.get("resourcequota", ""), series.labels.get("resource", "")
        per_day = (series.forecast - series.fitted_now) / horizon * DAY_SECONDS
        found.append(Finding(
            key=f"cost/{scope.cluster_key}/{slug}/{namespace}/{quota}/{resource}",
            section=section,
            subject=f"ResourceQuota {namespace}/{quota} ({resource}){scope.subject_suffix}",
            detail=(f"{_quota_amount(resource, series.fitted_now)} of "
                    f"{_quota_amount(resource, series.limit)} used, growing "
                    f"{_quota_amount(resource, per_day)} a day {trend}: {_when(now, left)}"),
            severity=_severity(left),
            numbers=_numbers(now, left, series.fitted_now, series.limit, per_day),
        ))
    return found


def capacity_forecast(results: Mapping[str, Vector], *, now: datetime, lookback_days: int, forecast_days: int,
                      scope: Scope) -> CapacityForecast:
    """Claims, node filesystems and quotas predicted to reach their limit within `forecast_days`."""
    horizon = forecast_days * DAY_SECONDS
    section = q.SECTION_FILLS.format(days=forecast_days)
    slug = q.SECTION_SLUGS[q.SECTION_FILLS]
    trend = f"by the {lookback_days}-day trend"
    args = (results, now, horizon, forecast_days, scope, section, slug, trend)
    volumes = _claims(*args) + _filesystems(*args)
    quotas = _quotas(*args)
    ordered = sorted(volumes + quotas, key=lambda f: (f.numbers["days_left"], f.key))
    return CapacityForecast(tuple(ordered), volumes=len(volumes), quotas=len(quotas))


def pinned_hpas(results: Mapping[str, Vector], *, pinned_share: float, lookback_days: int,
                scope: Scope) -> list[Finding]:
    """HPAs at their maxReplicas for at least `pinned_share` of the look-back, with a raise proposed."""
    def ident(labels: Labels) -> tuple[str, str]:
        return labels.get("namespace", ""), labels.get("horizontalpodautoscaler", "")

    maxima = {ident(labels): value for labels, value in results.get(q.HPA_MAX_REPLICAS.key, ())}
    targets = {ident(labels): labels for labels, _ in results.get(q.HPA_TARGETS.key, ())}
    slug = q.SECTION_SLUGS[q.SECTION_PINNED]
    found = []
    for labels, share in sorted(results.get(q.HPA_AT_MAX_SHARE.key, ()), key=lambda item: ident(item[0])):
        namespace, hpa = ident(labels)
        if share < pinned_share or (namespace, hpa) not in maxima:
            continue
        maximum = int(maxima[(namespace, hpa)])
        target = targets.get((namespace, hpa), {})
        kind, name = target.get("scaletargetref_kind", ""), target.get("scaletargetref_name", "")
        raised = min(max(maximum + 1, math.ceil(maximum * HPA_RAISE_FACTOR)),
                     int(maximum * HPA_RAISE_LIMIT_FACTOR), HPA_REPLICAS_CEILING)
        fix = None
        if kind == "Deployment" and name and raised > maximum:
            fix = Fix(runbook=HPA_RUNBOOK, params={"namespace": namespace, "name": name, "replicas": raised},
                      title=f"Raise the maxReplicas of the HPA of {name} to {raised}")
        scales = f" (scales {kind} {name})" if name else ""
        found.append(Finding(
            key=f"cost/{scope.cluster_key}/{slug}/{namespace}/{hpa}",
            section=q.SECTION_PINNED,
            subject=f"HorizontalPodAutoscaler {namespace}/{hpa}{scope.subject_suffix}",
            detail=(f"at its maxReplicas of {maximum} for {share:.0%} of the last "
                    f"{plural(lookback_days, 'day')}{scales}: load beyond that is not served by more "
                    "replicas"),
            severity="warning",
            fix=fix,
            numbers={"share_at_max": round(share, 4), "max_replicas": float(maximum)},
        ))
    return found
