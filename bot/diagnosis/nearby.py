"""Also broken nearby: workloads in the investigated namespaces that are in trouble too, but
that no hypothesis connects to the alerted subject. Pure.

Several things break at once in real clusters; the RCA stays about the alerted subject and
mentions the neighbours in one line each, so that nobody mistakes one for the other and
nobody misses the second fire. A neighbour that a hypothesis names (a dependency behind a
Service, a node) is part of the diagnosis, not "nearby".
"""

from __future__ import annotations

from collections import Counter

from bot.context.focus import pod_unhealthy
from bot.context.model import Context, PodView
from bot.diagnosis.model import Hypothesis

MAX_NEIGHBOURS = 4


def _how(pods: list[PodView]) -> str:
    reasons: Counter[str] = Counter()
    for pod in pods:
        waiting = next((c.reason for c in pod.containers if c.state == "waiting" and c.reason), None)
        terminated = next((c.last_reason for c in pod.containers if c.last_reason), None)
        reasons[waiting or pod.reason or (pod.phase if pod.phase != "Running" else None) or terminated
                or "not Ready"] += 1
    return ", ".join(f"{n} {reason}" for reason, n in reasons.most_common(2))


def broken_nearby(ctx: Context, hypotheses: list[Hypothesis]) -> list[str]:
    """One line per troubled workload outside the focus and the hypotheses, at most MAX_NEIGHBOURS."""
    named = set(ctx.focus) | {h.resource for h in hypotheses if h.resource is not None}
    troubled: dict = {}
    for pod in ctx.pods:
        if pod.workload is None or pod.workload in named or pod.ref in named:
            continue
        if pod.ref.namespace in ctx.subject.namespaces and pod_unhealthy(pod, ctx.incident_start):
            troubled.setdefault(pod.workload, []).append(pod)
    return [f"{ref}: {len(pods)} pod(s) in trouble ({_how(pods)})"
            for ref, pods in sorted(troubled.items())[:MAX_NEIGHBOURS]]
