"""quota_exceeded: a ResourceQuota or LimitRange refuses new pods.

Explicit evidence: the controllers' FailedCreate events ("pods \"x\" is forbidden: exceeded
quota: team-quota, requested: ..., used: ..., limited: ..."; "maximum memory usage per
Container is 1Gi, but limit is 2Gi" from a LimitRange), quotas whose used equals hard, and the
quota alerts. The object to fix is the quota (or limit range) that refuses; the workload whose
pods it refuses comes next.
"""

from __future__ import annotations

import re

from bot.context.kube_facts import parse_quantity
from bot.context.model import Context, ObjectRef, QuotaView
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target
from bot.diagnosis.model import Evidence, Hypothesis

_QUOTA = re.compile(r"(?:exceeded|failed) quota: ([a-z0-9][a-z0-9.-]*)", re.I)
_LIMIT_RANGE = re.compile(r"(?:maximum|minimum) [\w ]+ per (?:Container|Pod|PersistentVolumeClaim) is|"
                          r"must be (?:less|greater) than or equal to|LimitRange", re.I)
QUOTA_ALERTS = ("KubeQuotaExceeded", "KubeQuotaFullyUsed", "KubeQuotaAlmostFull")


def full_resources(quota: QuotaView) -> list[str]:
    full = []
    for name, hard in quota.hard.items():
        used = parse_quantity(quota.used.get(name))
        limit = parse_quantity(hard)
        if used is not None and limit is not None and limit > 0 and used >= limit:
            full.append(f"{name} {quota.used.get(name)}/{hard}")
    return full


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        refused = [e for e in found.events if e.reason in ("FailedCreate", "FailedCreatePodSandBox", "Forbidden")
                   and ("forbidden" in e.message.lower() or "quota" in e.message.lower())]
        if not refused:
            continue
        quota_name = next((m.group(1) for e in refused for m in [_QUOTA.search(e.message)] if m), None)
        limit_range = any(_LIMIT_RANGE.search(e.message) for e in refused)
        supporting = [ev.event(e, ctx.now) for e in refused[:2]]
        namespace = found.ref.namespace
        resource: ObjectRef | None = None
        if quota_name:
            resource = ObjectRef("ResourceQuota", namespace, quota_name)
            quota = next((q for q in ctx.quotas if q.ref == resource), None)
            if quota is not None and full_resources(quota):
                supporting.append(Evidence(f"ResourceQuota {quota_name} is full: {', '.join(full_resources(quota))}",
                                           "kubernetes", f"{resource} status"))
        elif limit_range:
            ranges = [r.ref for r in ctx.limit_ranges if r.ref.namespace == namespace]
            resource = ranges[0] if ranges else None
            if resource:
                supporting.append(Evidence(f"LimitRange {resource.name} in {namespace} sets the bound the pods exceed",
                                           "kubernetes", f"{resource} spec"))
        alerts = [a for a in ctx.alerts if a.name in QUOTA_ALERTS and a.labels.get("namespace") == namespace]
        supporting += [Evidence(f"{a.name} ({a.status}) for {a.labels.get('resourcequota', '?')}", "alert",
                                f"Alert {a.name}") for a in alerts[:1]]
        target = fix_target(found)
        what = f"ResourceQuota {quota_name}" if quota_name else (
            f"LimitRange {resource.name}" if resource else "a quota or limit range")
        summary = f"{what} in {namespace} refuses new pods of {target}: {refused[0].message[:200]}"
        action = (f"Raise {what} or lower the pods' requests/limits; free quota by scaling down something else."
                  if quota_name else f"Lower the pods' limits under {what}, or change it.")
        hypotheses.append(Hypothesis("quota_exceeded", resource or target, 0.9, summary, supporting, [], True,
                                     action=action, signal_key="available_replicas"))
        if resource is not None:
            hypotheses.append(Hypothesis("quota_exceeded", target, 0.78, summary, supporting, [], True, action=action))
    return hypotheses
