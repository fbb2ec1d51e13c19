"""node_failure: a node is NotReady or under memory, disk or PID pressure.

Explicit evidence: the node's conditions (Ready False/Unknown, MemoryPressure / DiskPressure /
PIDPressure True, a PLEG or kubelet message), its unreachable/not-ready taints, node events
(NodeNotReady, EvictionThresholdMet, SystemOOM, ImageGCFailed), pods evicted because "the node
was low on resource", and the node alerts (named by `node`, or by an `instance` on one of the
node's addresses, as node-exporter's are). Correlation: the failing pods sit on that node while
the same workloads' pods elsewhere are fine; or only the workload's pods on that node log
connection errors while its pods elsewhere reach the same dependencies. A node that is Ready again with its alerts resolved
is history, not the cause of what is failing now.
"""

from __future__ import annotations

import re

from bot.context.model import AlertView, Context, NodeView, ObjectRef
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, node_local_connection_errors, short
from bot.diagnosis.model import Evidence, Hypothesis

PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
NODE_EVENT_REASONS = ("NodeNotReady", "EvictionThresholdMet", "SystemOOM", "ImageGCFailed", "FreeDiskSpaceFailed",
                      "NodeHasDiskPressure", "NodeHasInsufficientMemory", "NodeHasInsufficientPID", "Rebooted",
                      "KubeletNotReady", "ContainerGCFailed", "NodeNotSchedulable")
NODE_ALERTS = ("KubeNodeNotReady", "KubeNodeUnreachable", "KubeNodePressure", "KubeletDown", "KubeNodeReadinessFlapping",
               "KubeNodeEviction", "KubeletPlegDurationHigh", "NodeFilesystemAlmostOutOfSpace", "NodeMemoryHighUtilization")
NODE_EXPORTER_PREFIX = "Node"  # node-exporter's mixin names its alerts Node* (NodeHighNumberConntrackEntriesUsed, ...)
NODE_LOCAL_CONFIDENCE = 0.75
_LOW_ON = re.compile(r"low on resource: ([\w-]+)", re.I)


def _host(instance: str | None) -> str | None:
    """The host of a Prometheus `instance` label (`10.0.1.7:9100`, `[fd00::7]:9100`, `node-a`)."""
    if not instance:
        return None
    if instance.startswith("["):
        return instance[1:].split("]", 1)[0]
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def node_alerts(ctx: Context, name: str, node: NodeView | None) -> list[AlertView]:
    """The node-level alerts about `name`: the mixin's node alerts and node-exporter's (`Node*`),
    named by their `node` label or, as node-exporter's are, by an `instance` on one of the
    node's addresses."""
    addresses = set(node.addresses) if node else set()
    return [a for a in ctx.alerts if (a.name in NODE_ALERTS or a.name.startswith(NODE_EXPORTER_PREFIX))
            and (a.labels.get("node") == name or (addresses and _host(a.labels.get("instance")) in addresses))]


def _candidates(ctx: Context, findings: list[WorkloadFindings]) -> list[str]:
    names = list(ctx.subject.nodes)
    for node in ctx.nodes:
        if node.name not in names and any(a.status == "firing" for a in node_alerts(ctx, node.name, node)):
            names.append(node.name)
    for found in findings:
        for pod in found.failing + found.evicted:
            if pod.node and pod.node not in names:
                names.append(pod.node)
        local = node_local_connection_errors(ctx, found)
        for name in local.nodes if local else ():
            if name not in names:
                names.append(name)
    for node in ctx.nodes:
        bad = not node.ready or any(node.conditions.get(p, ("False",))[0] == "True" for p in PRESSURES)
        if bad and node.name not in names and any(p.node == node.name for p in ctx.pods if p.ref.namespace
                                                  in ctx.subject.namespaces):
            names.append(node.name)
    return names


def _node_problems(node: NodeView) -> list[str]:
    problems = []
    ready = node.conditions.get("Ready")
    if ready and ready[0] != "True":
        problems.append(f"Ready is {ready[0]}" + (f" ({ready[1]}: {short(ready[2] or '', 120)})" if ready[1] else ""))
    elif ready and ready[2] and "PLEG" in ready[2]:
        problems.append(f"kubelet: {short(ready[2], 120)}")
    for pressure in PRESSURES:
        state = node.conditions.get(pressure)
        if state and state[0] == "True":
            problems.append(f"{pressure} is True" + (f" ({short(state[2] or '', 100)})" if state[2] else ""))
    return problems


def _memory_consumers(ctx: Context, node: str) -> list[Evidence]:
    """Who uses the node's memory now, including processes outside Kubernetes (system.slice)."""
    users = [s for s in ctx.signal("node_memory_consumers") if s.latest]
    users.sort(key=lambda s: -(s.latest or 0))
    if not users:
        return []
    parts = []
    for signal in users[:3]:
        who = signal.labels.get("pod") or signal.labels.get("id", "?").rsplit("/", 1)[-1]
        grew = signal.points[0][1]
        parts.append(f"{who} {ev.fmt_bytes(signal.latest)}" + (f" (was {ev.fmt_bytes(grew)})" if grew and
                                                               (signal.latest or 0) > 1.5 * grew else ""))
    return [ev.signal(users[0], f"largest memory users on {node}: " + ", ".join(parts))]


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    failing = [p for f in findings for p in f.failing + f.evicted]
    healthy = [p for f in findings for p in f.healthy]
    for name in _candidates(ctx, findings):
        node = ctx.node(name)
        ref = ObjectRef("Node", None, name)
        supporting: list[Evidence] = []
        contradicting: list[Evidence] = []
        problems = _node_problems(node) if node else []
        if problems:
            supporting.append(Evidence(f"node {name}: " + "; ".join(problems), "kubernetes",
                                       f"Node {name} status.conditions"))
        if node and any(p.startswith("MemoryPressure") for p in problems):
            supporting += _memory_consumers(ctx, name)
        taints = [t.get("key", "") for t in (node.taints if node else []) if t.get("key", "").startswith(
            ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready", "node.kubernetes.io/memory-pressure",
             "node.kubernetes.io/disk-pressure", "node.kubernetes.io/pid-pressure"))]
        if taints:
            supporting.append(Evidence(f"node {name} is tainted {', '.join(taints)}", "kubernetes", f"Node {name} spec"))
        events = [e for e in ctx.events if e.involved == ref and (e.reason in NODE_EVENT_REASONS or e.type == "Warning")
                  and not e.stale]
        supporting += [ev.event(e, ctx.now) for e in events[:2]]
        evicted = list({p.ref: p for p in failing if p.node == name and p.reason == "Evicted"}.values())
        if not evicted:
            evicted = [p for p in ctx.pods if p.node == name and p.reason == "Evicted" and p.created_at
                       and p.created_at >= ctx.incident_start - (ctx.now - ctx.incident_start)]
        for pod in evicted[:2]:
            supporting.append(Evidence(f"{pod.ref.namespace}/{pod.ref.name} was evicted: {short(pod.message or '', 160)}",
                                       "kubernetes", f"Pod {pod.ref.namespace}/{pod.ref.name} status"))
        if not any(p.startswith("MemoryPressure") for p in problems) and any("memory" in (p.message or "")
                                                                              for p in evicted):
            supporting += _memory_consumers(ctx, name)
        alerts = node_alerts(ctx, name, node)
        firing_alerts = [a for a in alerts if a.status == "firing"]
        for alert in alerts[:1]:
            said = alert.annotations.get("description") or alert.annotations.get("summary") or ""
            supporting.append(Evidence(f"{alert.name} ({alert.status}) for {name}" + (f": {short(said, 160)}"
                                                                                       if said else ""),
                                       "alert", f"Alert {alert.name}"))
        local = [(found.ref, found_local) for found in findings
                 if (found_local := node_local_connection_errors(ctx, found)) and name in found_local.nodes]
        for workload, found_local in local[:1]:
            supporting.append(Evidence(f"the connection errors of {workload} come only from its "
                                       f"{found_local.reporting} pod(s) on {name}; its {found_local.clean} pod(s) on "
                                       "other nodes log none", "log", f"logs of {workload} by spec.nodeName"))
        on_node = [p for p in failing if p.node == name]
        elsewhere = [p for p in healthy if p.node and p.node != name]
        if on_node and failing and len(on_node) == len([p for p in failing if p.node]):
            supporting.append(Evidence(f"all {len(on_node)} failing pod(s) run on {name}"
                                       + (f"; {len(elsewhere)} pod(s) of the same workloads on other nodes are fine"
                                          if elsewhere else ""), "kubernetes", f"pods by spec.nodeName={name}"))
        if not (problems or taints or evicted or firing_alerts or events):
            continue
        confidence = 0.88 if (problems or taints) else (0.7 if evicted else 0.45)
        if node is not None and node.ready and not problems and not firing_alerts:
            contradicting.append(Evidence(f"node {name} is Ready now and no node alert is firing", "kubernetes",
                                          f"Node {name} status.conditions"))
            confidence = min(confidence, 0.3)
        if problems and on_node and elsewhere:
            confidence += 0.05
        if problems and firing_alerts:
            confidence += 0.07  # the alerts name the node itself: what fails elsewhere follows from it
        if local and firing_alerts:
            # a node alert for exactly the node whose pods alone cannot connect: the node's side
            confidence = max(confidence, NODE_LOCAL_CONFIDENCE)
        resource_word = next((m.group(1) for p in evicted for m in [_LOW_ON.search(p.message or "")] if m), None)
        summary = f"Node {name} is unhealthy" + (f": {'; '.join(problems)}" if problems else "")
        if resource_word:
            summary += f"; it evicts pods for lack of {resource_word}"
        if on_node:
            summary += f"; {len(on_node)} failing pod(s) run there"
        if firing_alerts and not problems:
            summary += f"; {firing_alerts[0].name} is firing for it"
        if local:
            summary += f"; only {local[0][0].name}'s pods there cannot connect"
        hypotheses.append(Hypothesis(
            "node_failure", ref, confidence, summary + ".", supporting, contradicting, explicit=bool(problems),
            facts={"node_ready": "true" if node is not None and node.ready else "false"},
            action=f"Cordon {name} and move its pods (drain), then repair or replace the node.",
            signal_key="node_ready"))
    return hypotheses
