"""memory_limit: containers killed for exceeding their memory limit, or growing towards it.

Explicit evidence: a recent termination with reason OOMKilled (exit code 137), kubelet
OOMKilling events, kube-state-metrics' last-terminated reason. Supporting: the working set near
the limit, a steady climb, a rollout that lowered the limit. Against: the node itself under
memory pressure evicting pods (that is node_failure), OOMs long before the trouble.
"""

from __future__ import annotations

from bot.context.kube_facts import bytes_quantity, parse_quantity
from bot.context.model import Context
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target, lowered_limit
from bot.diagnosis.model import Hypothesis

NEAR_LIMIT = 0.9


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        supporting, contradicting = [], []
        ooms = found.oom
        for pod, container in ooms[:3]:
            supporting.append(ev.container_termination(pod, container, ctx.now))
        oom_events = [e for e in found.events if "OOM" in e.reason or "OOMKill" in e.message]
        supporting += [ev.event(e, ctx.now) for e in oom_events[:2]]
        memory_lines = found.error_lines("memory")
        supporting += [ev.log_line(e) for e in memory_lines[:2]]
        limit_text, peak_ratio, best = None, None, None
        for signal in ctx.signal("memory_vs_limit"):
            if signal.labels.get("namespace", found.ref.namespace) != found.ref.namespace:
                continue
            if signal.peak is not None and (peak_ratio is None or signal.peak > peak_ratio):
                peak_ratio = signal.peak
                best = signal
        containers = {c.name: c for pod, c in (ooms or found.containers_in_trouble)}
        if not containers:
            containers = {c.name: c for p in found.pods for c in p.containers if not c.init}
        limits = {name: c.limits.get("memory") for name, c in containers.items() if c.limits.get("memory")}
        if limits:
            name, limit_text = next(iter(limits.items()))
        if peak_ratio is not None:
            supporting.append(ev.signal(best, f"memory working set peaked at {ev.pct(peak_ratio)} of the limit"
                                              f"{' (' + limit_text + ')' if limit_text else ''} in the last hour"
                                              + (f", rising since {ev.ago(best.change.at, ctx.now)}"
                                                 if best.change and best.change.after > best.change.before else "")))
        cut = lowered_limit(found, "memory")
        if cut:
            supporting.append(ev.Evidence(
                f"revision {found.rollout.current.number} lowered the memory limit from {cut[0]} to {cut[1]}",
                "rollout", f"ReplicaSet {found.rollout.current.name} vs {found.rollout.previous.name}"))
        pressure = [p for p in found.evicted if "memory" in (p.message or "").lower()]
        if pressure:
            contradicting.append(ev.Evidence(f"{len(pressure)} pod(s) were evicted for node memory pressure, "
                                             "not killed at their own limit", "kubernetes",
                                             f"Pod {pressure[0].ref} status"))
        if ooms:
            confidence, explicit = 0.9, True
        elif memory_lines and peak_ratio and peak_ratio >= NEAR_LIMIT:
            confidence, explicit = 0.6, False
        elif peak_ratio is not None and peak_ratio >= NEAR_LIMIT and found.failing:
            confidence, explicit = 0.45, False
        elif memory_lines and (found.crashes or found.failing):
            confidence, explicit = 0.7, True  # the runtime says it ran out (a heap or allocation limit)
        elif memory_lines:
            confidence, explicit = 0.35, False
        else:
            continue
        confidence -= 0.3 * bool(contradicting)
        target = fix_target(found)
        restarts = max((c.restarts for _, c in ooms), default=0)
        container = ooms[0][1].name if ooms else (next(iter(limits), None))
        limit = (ooms[0][1].limits.get("memory") if ooms else limit_text) or "its limit"
        if ooms:
            summary = (f"{target} is running out of memory: container {container or '?'} was OOMKilled "
                       f"({restarts} restarts) at its {limit} memory limit")
        elif peak_ratio is not None:
            summary = f"{target} is near its {limit} memory limit (peak {ev.pct(peak_ratio)})"
        else:
            summary = f"{target} runs out of memory (limit {limit}): {memory_lines[0].line.strip()[:200]}"
        if cut:
            summary += f", cut from {cut[0]} to {cut[1]} in revision {found.rollout.current.number}"
        facts = {"container": container} if container else {}
        if limit and parse_quantity(limit):
            facts |= {"memory_limit": limit, "suggested_memory_limit": bytes_quantity(2 * parse_quantity(limit))}
        hypotheses.append(Hypothesis(
            "memory_limit", target, confidence, summary + ".", supporting, contradicting, explicit, facts=facts,
            action=f"Raise the memory limit of {container or 'the container'} (now {limit}) or find what grows; "
                   "restarting only postpones the next OOM kill.",
            signal_key="memory_vs_limit"))
    return hypotheses
