"""scheduling: pods cannot be placed on any node.

Explicit evidence: pods Pending with PodScheduled=False (Unschedulable) and the scheduler's
FailedScheduling events, whose message counts the nodes by reason ("0/6 nodes are available:
3 Insufficient nvidia.com/gpu, 3 node(s) had untolerated taint ..."); the cluster autoscaler's
NotTriggerScaleUp. A pod waiting for an unbound PersistentVolumeClaim is a storage problem,
not this one.
"""

from __future__ import annotations

import re

from bot.context.model import Context
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target, short
from bot.diagnosis.model import Evidence, Hypothesis

_REASON = re.compile(r"(\d+) (Insufficient [\w./-]+|node\(s\) (?:[^,.{]|\{[^}]*\})+|Too many pods)")
_STORAGE = re.compile(r"unbound (?:immediate )?PersistentVolumeClaims|persistentvolumeclaim \"[^\"]+\" not found|"
                      r"volume node affinity conflict|pod has unbound", re.I)


def scheduler_reasons(message: str) -> list[str]:
    """The reasons a FailedScheduling message gives, most nodes first ("3 Insufficient cpu")."""
    found = [(int(count), text.strip()) for count, text in _REASON.findall(message)]
    return [f"{count} {text}" for count, text in sorted(found, key=lambda item: -item[0])]


def _what_the_pods_ask(found: WorkloadFindings, reasons: list[str]) -> list[Evidence]:
    """The part of the pod spec the scheduler could not satisfy, in the spec's own words."""
    pod = (found.pending or found.pods or [None])[0]
    if pod is None:
        return []
    spec, said, evidence = pod.spec, " ".join(reasons), []
    where = f"Pod {pod.ref.namespace}/{pod.ref.name} spec"
    if "Insufficient" in said:
        asks = []
        for c in spec.get("containers") or []:
            requests = ((c.get("resources") or {}).get("requests")) or {}
            wanted = {k: v for k, v in requests.items() if f"Insufficient {k}" in said}
            if wanted:
                asks.append(f"{c.get('name')} requests " + ", ".join(f"{k} {v}" for k, v in wanted.items()))
        if asks:
            evidence.append(Evidence("each pod asks: " + "; ".join(asks), "kubernetes", where))
    if "affinity/selector" in said or "node affinity" in said:
        selector = spec.get("nodeSelector")
        affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution")
        terms = [f"{k}={v}" for k, v in (selector or {}).items()]
        for term in (affinity or {}).get("nodeSelectorTerms") or []:
            terms += [f"{e.get('key')} {e.get('operator')} {','.join(e.get('values') or [])}"
                      for e in term.get("matchExpressions") or []]
        if terms:
            evidence.append(Evidence("the pods require nodes with " + "; ".join(terms) + ", which no node has",
                                     "kubernetes", where))
    if "anti-affinity" in said:
        evidence.append(Evidence("the pods require anti-affinity (one per node), so replicas cannot exceed the "
                                 "nodes that qualify", "kubernetes", where))
    if "taint" in said:
        tolerations = [t.get("key") for t in spec.get("tolerations") or [] if t.get("key")]
        evidence.append(Evidence("the pods tolerate " + (", ".join(tolerations) if tolerations else "no custom taint"),
                                 "kubernetes", where))
    return evidence


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        pending = {p.ref for p in found.pending}
        # only pods still waiting: a FailedScheduling for a pod placed since is over
        events = [e for e in found.warning_events("FailedScheduling") if e.involved in pending
                  or e.involved.kind != "Pod"]
        messages = [e.message for e in events] + [p.conditions.get("PodScheduled", ("", None, ""))[2] or ""
                                                  for p in found.pending]
        messages = [m for m in messages if m]
        if not found.pending and not events:
            continue
        storage = any(_STORAGE.search(m) for m in messages)
        supporting: list[Evidence] = [ev.event(e, ctx.now) for e in events[:2]]
        if not events:
            pod = found.pending[0]
            supporting.append(Evidence(f"{pod.ref.name} is Pending: {short(messages[0] if messages else '', 200)}",
                                       "kubernetes", f"Pod {pod.ref.namespace}/{pod.ref.name} status.conditions"))
        scale = [e for e in found.events if e.reason in ("NotTriggerScaleUp", "FailedScaleUp")]
        supporting += [ev.event(e, ctx.now) for e in scale[:1]]
        reasons = scheduler_reasons(messages[0]) if messages else []
        contradicting = []
        if storage:
            contradicting.append(Evidence("the scheduler waits for a PersistentVolumeClaim to bind: a storage problem",
                                          "event", "FailedScheduling message"))
        supporting += _what_the_pods_ask(found, reasons)
        target = fix_target(found)
        pending = len(found.pending) or len({e.involved for e in events})
        summary = f"{pending} pod(s) of {target} cannot be scheduled"
        if reasons:
            summary += ": " + ", ".join(reasons[:3])
        confidence = 0.9 if (found.pending and messages) else 0.6
        if events and all(e.last_at and e.last_at < ctx.incident_start for e in events) and not found.pending:
            confidence = 0.3
        confidence -= 0.45 * storage
        facts = {}
        # control-plane nodes are tainted by design: they never count as a reason
        relevant = [r for r in reasons if not re.search(r"control-plane|node-role\.kubernetes\.io/master", r)]
        anti_affinity_only = bool(relevant) and all("anti-affinity" in r for r in relevant)
        placed = [p for p in found.pods if p not in found.pending and p.phase == "Running"]
        if anti_affinity_only and placed and target.kind == "Deployment":
            facts["suggested_replicas"] = str(len(placed))  # as many as the nodes can take one each
            facts["scale_target"] = found.ref.name
            facts["replicas_owner"] = "hpa" if any(h.target == found.ref for h in ctx.hpas) else "deployment"
        hypotheses.append(Hypothesis(
            "scheduling", target, confidence, summary + ".", supporting, contradicting, explicit=True, facts=facts,
            action="Free or add capacity that matches the pods' requests, selectors and tolerations, or relax them; "
                   "restarting or deleting pods changes nothing.", signal_key="available_replicas"))
    return hypotheses
