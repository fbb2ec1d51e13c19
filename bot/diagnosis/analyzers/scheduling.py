"""scheduling: pods cannot be placed on any node.

Explicit evidence: pods Pending with PodScheduled=False (Unschedulable) and the scheduler's
FailedScheduling events, whose message counts the nodes by reason ("0/6 nodes are available:
3 Insufficient nvidia.com/gpu, 3 node(s) had untolerated taint ..."); the cluster autoscaler's
NotTriggerScaleUp. A pod waiting for an unbound PersistentVolumeClaim is a storage problem,
not this one.

A DaemonSet shows it differently: a node whose taint its pods do not tolerate drops out of its
desired count (so "3/3 available" hides the node without an agent), and the pods already there
become misscheduled. Taints set by Kubernetes itself (control plane, not-ready, unreachable,
pressure) are part of its design, not a cause.
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


SYSTEM_TAINTS = re.compile(r"^(?:node-role\.kubernetes\.io/|node\.kubernetes\.io/|node\.cloudprovider\.kubernetes\.io/"
                           r"|ToBeDeletedByClusterAutoscaler|DeletionCandidateOfClusterAutoscaler)")


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Kubernetes' toleration matching: key (empty with Exists: every key), Equal/Exists, effect."""
    for toleration in tolerations:
        key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
        if key and key != taint.get("key"):
            continue
        if not key and operator != "Exists":
            continue
        if operator == "Equal" and (toleration.get("value") or "") != (taint.get("value") or ""):
            continue
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        return True
    return False


def _daemonset_taints(ctx: Context, found: WorkloadFindings) -> Hypothesis | None:
    view = found.view
    if found.ref.kind != "DaemonSet" or view is None:
        return None
    status = view.raw.get("status") or {}
    misscheduled = int(status.get("numberMisscheduled") or 0)
    tolerations = (view.template.get("spec") or {}).get("tolerations") or []
    untolerated = [(node, taint) for node in ctx.nodes for taint in node.taints
                   if taint.get("effect") in ("NoSchedule", "NoExecute") and not SYSTEM_TAINTS.match(taint.get("key", ""))
                   and not tolerates(tolerations, taint)]
    if not untolerated or not (misscheduled or any(a.name.startswith("KubeDaemonSet") for a in ctx.alerts)):
        return None
    taints = sorted({f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for _, t in untolerated})
    nodes = sorted({node.name for node, _ in untolerated})
    supporting = [Evidence(f"node(s) {', '.join(nodes[:4])} carry the taint {', '.join(taints[:2])}, which the pods "
                           f"of {found.ref} do not tolerate (no matching toleration)", "kubernetes",
                           f"Node {nodes[0]} spec.taints; {found.ref} spec.template.spec.tolerations")]
    if misscheduled:
        supporting.append(Evidence(f"{found.ref}: {misscheduled} pod(s) misscheduled (on nodes they may no longer "
                                   f"run on), desired {view.desired}", "kubernetes", f"{found.ref} status"))
    return Hypothesis(
        "scheduling", found.ref, 0.85 if misscheduled else 0.7,
        f"{found.ref} cannot run on {len(nodes)} node(s) whose taint {taints[0]} it does not tolerate.", supporting,
        explicit=True, signal_key="available_replicas",
        action=f"Add a toleration for {taints[0]} to {found.ref.name} if it must run there (a node agent usually "
               "must), or remove the taint from the nodes.")


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = [h for found in findings if (h := _daemonset_taints(ctx, found)) is not None]
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
