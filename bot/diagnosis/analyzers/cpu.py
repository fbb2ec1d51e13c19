"""cpu_limit: a CPU limit too low, so the container is throttled and slow or fails its probes.

Evidence: the CFS throttling ratio from cAdvisor, CPU use pinned at the limit, the
CPUThrottlingHigh alert, liveness probes timing out and the kubelet restarting the container
(exit 137/143, not OOMKilled), a rollout that lowered the limit. Against: no CPU limit at all
(nothing to throttle).
"""

from __future__ import annotations

from bot.context.kube_facts import cpu_quantity, parse_quantity
from bot.context.model import Context
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target, lowered_limit
from bot.diagnosis.model import Evidence, Hypothesis

HIGH_THROTTLING = 0.25
SEVERE_THROTTLING = 0.5
PROBE_TIMEOUT_WORDS = ("context deadline exceeded", "timeout", "timed out", "Client.Timeout")


def _harm(ctx: Context, found: WorkloadFindings, restarts: list) -> list[Evidence]:
    """What the throttling costs: restarts, pods out of service, latency or errors rising."""
    harm: list[Evidence] = []
    if found.failing and not restarts:
        harm.append(Evidence(f"{len(found.failing)} pod(s) of {found.ref} are not ready", "kubernetes",
                             f"pods of {found.ref}"))
    for key, what in (("latency_p95", "p95 latency"), ("error_ratio", "5xx ratio")):
        for signal in ctx.signal(key):
            change = signal.change
            if change and change.after > change.before * 1.3 and change.after > 0:
                shown = (f"{change.before * 1000:.0f} ms to {change.after * 1000:.0f} ms" if key == "latency_p95"
                         else f"{ev.pct(change.before)} to {ev.pct(change.after)}")
                harm.append(ev.signal(signal, f"{what} rose from {shown} {ev.ago(change.at, ctx.now)}"))
    return harm[:2]


def _pods_of(found: WorkloadFindings) -> set[str]:
    return {p.ref.name for p in found.pods}


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        pods = _pods_of(found)
        supporting: list[Evidence] = []
        contradicting: list[Evidence] = []
        throttling = [s for s in ctx.signal("cpu_throttling") if s.labels.get("pod") in pods or not s.labels.get("pod")]
        worst = max(throttling, key=lambda s: s.latest or 0, default=None)
        ratio = max((s.latest or 0 for s in throttling), default=None)
        peak = max((s.peak or 0 for s in throttling), default=None)
        if worst is not None and peak:
            supporting.append(ev.signal(worst, f"{ev.pct(ratio)} of CPU periods throttled now on "
                                               f"{worst.labels.get('pod', 'the pods')} (peak {ev.pct(peak)})"))
        alerts = [a for a in ctx.alerts if a.name == "CPUThrottlingHigh" and a.status == "firing"
                  and (a.labels.get("pod") in pods or a.labels.get("namespace") == found.ref.namespace)]
        for alert in alerts[:1]:
            supporting.append(Evidence(f"CPUThrottlingHigh is firing: {alert.annotations.get('description', '')}"[:300],
                                       "alert", f"Alert CPUThrottlingHigh {alert.labels.get('pod', '')}"))
        probe_kills = [e for e in found.events if e.reason in ("Unhealthy", "Killing")
                       and ("liveness" in e.message.lower() or "startup" in e.message.lower())
                       and any(w.lower() in e.message.lower() for w in PROBE_TIMEOUT_WORDS)]
        supporting += [ev.event(e, ctx.now) for e in probe_kills[:2]]
        killed = [(p, c) for p, c in found.crashes if (c.last_exit_code or c.exit_code) in (137, 143)]
        supporting += [ev.container_termination(p, c, ctx.now) for p, c in killed[:1]]
        limits = [c.limits.get("cpu") for p in found.pods for c in p.containers if not c.init]
        limit = next((x for x in limits if x), None)
        usage = [s for s in ctx.signal("cpu_usage") if s.labels.get("pod") in pods]
        limit_cores = parse_quantity(limit)
        busiest = max(usage, key=lambda s: s.peak or 0, default=None)
        if busiest is not None and limit_cores:
            share = (busiest.peak or 0) / limit_cores
            if share >= 0.85:
                supporting.append(ev.signal(busiest, f"CPU use peaked at {busiest.peak:.2f} cores, {ev.pct(share)} of "
                                                     f"the {limit} limit"))
        if not limit and found.pods:
            contradicting.append(Evidence("the containers have no CPU limit: they cannot be throttled", "kubernetes",
                                          f"{found.ref} spec.template resources"))
        lowered = lowered_limit(found, "cpu")
        if lowered:
            supporting.append(Evidence(f"revision {found.rollout.current.number} lowered the CPU limit from "
                                       f"{lowered[0]} to {lowered[1]}", "rollout",
                                       f"ReplicaSet {found.rollout.current.name}"))
        harm = _harm(ctx, found, probe_kills or killed)
        supporting += harm
        harmed = bool(harm or probe_kills or killed)
        if not harmed:
            contradicting.append(Evidence("no harm is visible: no restarts, no pod failing, latency and errors flat",
                                          "kubernetes", f"pods and signals of {found.ref}"))
        if peak is not None and peak >= SEVERE_THROTTLING:
            confidence = 0.8
        elif peak is not None and peak >= HIGH_THROTTLING:
            confidence = 0.65
        elif alerts:
            confidence = 0.55
        else:
            continue
        confidence += 0.08 * bool(probe_kills or killed) + 0.05 * bool(lowered)
        confidence -= 0.4 * bool(not limit and found.pods)
        if not harmed:
            confidence = min(confidence, 0.4)  # throttled but serving well: a tuning note, not an incident
        target = fix_target(found)
        summary = (f"{target} is CPU-throttled at its {limit or 'CPU'} limit: {ev.pct(peak)} of CPU periods "
                   f"throttled at peak")
        if probe_kills or killed:
            summary += ", so liveness probes time out and the kubelet restarts the container"
        container = next((c.name for p in found.pods for c in p.containers if not c.init and c.limits.get("cpu")), None)
        facts = {"container": container} if container else {}
        if limit_cores:
            facts |= {"cpu_limit": limit, "suggested_cpu_limit": cpu_quantity(2 * limit_cores)}
        hypotheses.append(Hypothesis(
            "cpu_limit", target, confidence, summary + ".", supporting, contradicting, explicit=bool(alerts), facts=facts,
            action=f"Raise the CPU limit (now {limit or 'unset'}) or remove it; check the probes' timeouts.",
            signal_key="cpu_throttling"))
    return hypotheses

