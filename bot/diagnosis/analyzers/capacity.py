"""capacity: load exceeds what the workload can serve.

The object to fix is what bounds the replicas: an HPA pinned at its maximum is named first
(scaling the Deployment directly would be undone by the HPA within seconds; the runbook raises
the HPA's maxReplicas), the Deployment second. Without a maxed HPA, the workload.

Evidence: its HorizontalPodAutoscaler at maxReplicas while wanting more (ScalingLimited,
KubeHpaMaxedOut), traffic that stepped up (a change point in the request rate), CPU use near
the pods' requests across replicas, latency rising with the load, the program saying that its
workers, queue or pool are full (uWSGI's listen queue, a rejected execution, php-fpm's
max_children). Against: pods crashing or
printing program errors (a fault, not load), heavy CPU throttling at a low limit (cpu_limit).
"""

from __future__ import annotations

import math

from bot.context.model import Context, HpaView, Signal
from bot.diagnosis import evidence as ev
from bot.diagnosis import rules
from bot.diagnosis.findings import WorkloadFindings
from bot.diagnosis.model import Evidence, Hypothesis

TRAFFIC_STEP = 1.5


def _hpa(ctx: Context, found: WorkloadFindings) -> HpaView | None:
    return next((h for h in ctx.hpas if h.target == found.ref), None)


def growing_backlog(ctx: Context, found: WorkloadFindings) -> Signal | None:
    """A queue or lag series in the workload's namespace that kept growing (×2 and mostly up)."""
    for signal in ctx.signal("backlog"):
        if signal.labels.get("namespace") not in (None, found.ref.namespace) or len(signal.points) < 6:
            continue
        values = [v for _, v in signal.points]
        rises = sum(1 for a, b in zip(values, values[1:], strict=False) if b > a)
        if values[-1] >= 2 * max(values[0], 1) and rises >= 0.6 * (len(values) - 1):
            return signal
    return None


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        hpa = _hpa(ctx, found)
        supporting: list[Evidence] = []
        contradicting: list[Evidence] = []
        maxed = bool(hpa and hpa.max_replicas and hpa.current is not None and hpa.current >= hpa.max_replicas)
        limited = hpa.conditions.get("ScalingLimited") if hpa else None
        if maxed:
            text = (f"HPA {hpa.ref.name} is at its maximum of {hpa.max_replicas} replicas"
                    + (f" and wants {hpa.desired}" if hpa.desired and hpa.desired > hpa.max_replicas else ""))
            if limited and limited[0] == "True":
                text += f" (ScalingLimited: {limited[1]})"
            supporting.append(Evidence(text, "kubernetes", f"{hpa.ref} status"))
        alerts = [a for a in ctx.alerts if a.name in ("KubeHpaMaxedOut", "KubeHpaReplicasMismatch")
                  and a.status == "firing" and a.labels.get("namespace") == found.ref.namespace]
        supporting += [Evidence(f"{a.name} is firing for {a.labels.get('horizontalpodautoscaler', '?')}", "alert",
                                f"Alert {a.name}") for a in alerts[:1]]
        surge = None
        for signal in ctx.signal("request_rate", found.ref):
            change = signal.change
            if change and change.before > 0 and change.after / change.before >= TRAFFIC_STEP:
                surge = signal
                supporting.append(ev.signal(signal, f"traffic rose from {change.before:.0f} to {change.after:.0f} "
                                                    f"requests/s {ev.ago(change.at, ctx.now)} "
                                                    f"(×{change.after / change.before:.1f})"))
        backlog = growing_backlog(ctx, found)
        if backlog is not None:
            first, last = backlog.points[0][1], backlog.latest or 0
            supporting.append(ev.signal(backlog, f"{backlog.labels.get('__name__', 'backlog')} grew from {first:.0f} "
                                                 f"to {last:.0f} over the last hour"))
        for signal in ctx.signal("latency_p95", found.ref):
            if signal.change and signal.change.after > signal.change.before * 1.3:
                supporting.append(ev.signal(signal, f"p95 latency rose from {signal.change.before * 1000:.0f} ms to "
                                                    f"{signal.change.after * 1000:.0f} ms"))
        saturated = found.key_lines(("saturation",)) if found.error_lines("saturation") else []
        supporting += [ev.log_line(e) for e in saturated[:2]]
        crashes = found.crashes or found.oom or found.waiting.get("CrashLoopBackOff")
        if crashes:
            contradicting.append(Evidence("pods are crashing: a fault, not only load", "kubernetes", f"pods of {found.ref}"))
        throttled = [s for s in ctx.signal("cpu_throttling", found.ref) if (s.peak or 0) >= 0.5]
        if throttled:
            contradicting.append(ev.signal(throttled[0], f"CPU throttling peaks at {ev.pct(throttled[0].peak)}: "
                                                         "the CPU limit may be the bottleneck"))
        if maxed:
            confidence = 0.85 if (surge or alerts or (limited and limited[0] == "True")) else 0.7
        elif alerts:
            confidence = 0.6
        elif saturated and not found.crashes:  # the program's own words: no worker left
            confidence = 0.75 if surge else 0.7
        elif backlog is not None and not found.crashes:
            confidence = 0.65
        elif surge and found.failing:
            confidence = 0.5
        else:
            continue
        summary = f"{found.ref} cannot keep up with its load"
        if maxed:
            summary += f": HPA {hpa.ref.name} is pinned at {hpa.max_replicas} replicas"
        if surge and surge.change:
            summary += f"; traffic is ×{surge.change.after / surge.change.before:.1f}"
        base = hpa.max_replicas if maxed and hpa and hpa.max_replicas else (found.view.desired if found.view else None)
        facts = {"suggested_replicas": str(max(base + 1, math.ceil(base * 1.5)))} if base else {}
        facts["scale_target"] = found.ref.name
        facts["replicas_owner"] = "hpa" if hpa is not None else "deployment"
        action = ("Raise the maxReplicas of HPA " + hpa.ref.name if maxed and hpa else "Scale out") + \
            " and check the nodes have room; find where the extra traffic comes from."
        signal_key = "request_rate" if surge else "hpa_replicas"
        found_here = [Hypothesis("capacity", found.ref, confidence - 0.1 * maxed, summary + ".", supporting,
                                 contradicting, explicit=maxed, facts=facts, action=action, signal_key=signal_key)]
        if hpa is not None and maxed:
            found_here.append(Hypothesis("capacity", hpa.ref, confidence, summary + ".", supporting, contradicting,
                                         True, facts=facts, action=action, signal_key=signal_key))
        for hypothesis in found_here:
            rules.apply(hypothesis, "pods_crash", int(bool(crashes)))
            rules.apply(hypothesis, "cpu_limit_throttles", int(bool(throttled)))
        hypotheses += found_here
    return hypotheses
