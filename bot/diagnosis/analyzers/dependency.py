"""dependency_unreachable: a database, service or DNS name the workload needs is failing.

Evidence: the failing pods' logs say they could not connect (refused, timed out, no such host,
reset), naming the host; that host is an in-cluster Service without ready endpoints, or a
probe or exporter of it reports down (`up`, `probe_success`, `pg_up` == 0). Lines that healthy
pods print just as well are noise and do not count. Errors that only the workload's pods on one
node log, while its pods elsewhere do not, speak against the dependency (see `node.py`). The object to fix is the failing workload
(a failed Job is re-run); the dependency's own workload is offered as the next hypothesis.
"""

from __future__ import annotations

from bot.context.model import Context, DependencyView
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target, node_local_connection_errors
from bot.diagnosis.model import Evidence, Hypothesis

LOCAL_TO_NODES_PENALTY = 0.35  # the dependency answers the same workload's pods on other nodes


def _deps_for(ctx: Context, found: WorkloadFindings) -> list[DependencyView]:
    pods = {p.ref for p in found.pods}
    return [d for d in ctx.dependencies if any(p in pods for p in d.pods)]


def dependency_state(ctx: Context, dep: DependencyView, down_signals: list) -> str:
    """"up", "down" or "unknown" now: its Service's ready endpoints, else the workloads behind it
    (every desired replica ready), with a probe or exporter reading 0 right now meaning down."""
    if any(s.latest == 0 for s in down_signals):
        return "down"
    if dep.service is not None and dep.ready_endpoints is not None:
        return "up" if dep.ready_endpoints > 0 else "down"
    views = [ctx.workload(ref) for ref in dep.backends]
    views = [v for v in views if v is not None and v.desired is not None]
    if views:
        return "up" if all((v.ready or 0) >= (v.desired or 0) and (v.desired or 0) > 0 for v in views) else "down"
    return "unknown"


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        lines = found.connection_errors()
        if not lines:
            continue
        deps = _deps_for(ctx, found)
        supporting: list[Evidence] = [ev.log_line(e) for e in found.key_lines(("dependency",))]
        contradicting: list[Evidence] = []
        main = deps[0] if deps else None
        for dep in deps[:2]:
            if dep.service is not None and dep.ready_endpoints == 0:
                supporting.append(Evidence(f"Service {dep.service} has no ready endpoints", "kubernetes",
                                           f"Endpoints {dep.service.namespace}/{dep.service.name}"))
            elif dep.service is not None and dep.ready_endpoints:
                supporting.append(Evidence(f"Service {dep.service} has {dep.ready_endpoints} ready endpoint(s) now: "
                                           "it may have recovered, or the path to it is broken", "kubernetes",
                                           f"Endpoints {dep.service.namespace}/{dep.service.name}"))
        down = [s for s in ctx.signal("dependency_down") if s.latest == 0 or s.lowest == 0]
        for signal in down[:2]:
            name = signal.labels.get("__name__", "up")
            target = signal.labels.get("instance") or signal.labels.get("service") or signal.labels.get("job") or "?"
            supporting.append(ev.signal(signal, f"{name} of {target} reported 0 (down) in the last hour"))
        failing_runs = bool(found.crashes or found.failing)
        confidence = 0.8 if failing_runs else 0.6
        if any(d.service is not None and d.ready_endpoints == 0 for d in deps) or down:
            confidence += 0.07
        if len(lines) == 1 and not failing_runs:
            confidence -= 0.2
        local = node_local_connection_errors(ctx, found)
        shown_down = down or any(d.service is not None and d.ready_endpoints == 0 for d in deps)
        if local is not None and not shown_down:
            contradicting.append(Evidence(
                f"only the {local.reporting} pod(s) of {found.ref.name} on {', '.join(local.nodes)} log these "
                f"connection errors; its {local.clean} pod(s) on other nodes, whose logs cover the trouble, log "
                "none: what they reach answers, so the trouble may be on that node's side", "log",
                f"logs of {found.ref} by spec.nodeName"))
            confidence -= LOCAL_TO_NODES_PENALTY
        host = main.host if main else None
        target = found.ref if found.ref.kind == "Job" else fix_target(found)
        what = f"{host}" if host else "a dependency"
        if main and main.service is not None:
            what = f"{main.service.name} ({host})"
        summary = f"{target} fails because it cannot reach {what}: {lines[0].line.strip()[:300]}"
        action = f"Restore {what} (check its pods and endpoints), then " + (
            f"re-run {found.ref.name}." if found.ref.kind == "Job" else f"let {found.ref.name} reconnect.")
        # Still down now (no ready endpoints): the fix is the dependency itself. Back up (a
        # transient outage): the fix is on the side that gave up, e.g. re-running the Job.
        state = dependency_state(ctx, main, down) if main else "unknown"
        still_down = state == "down" and bool(main.backends)
        backend = next((b for b in (main.backends if main else []) if b != found.ref), None)
        recovered = state == "up"
        client = Hypothesis("dependency_unreachable", target, confidence - 0.1 * still_down, summary, supporting,
                            contradicting, explicit=True, action=action, signal_key="error_ratio",
                            facts={"dependency_recovered": "true" if recovered else "false",
                                   **({"dependency": main.host} if main else {})})
        hypotheses.append(client)
        if target != fix_target(found):
            hypotheses.append(Hypothesis("dependency_unreachable", fix_target(found), client.confidence - 0.15,
                                         summary, supporting, contradicting, True, action=action))
        if backend is not None:
            hypotheses.append(Hypothesis(
                "dependency_unreachable", backend, confidence if still_down else confidence - 0.2,
                f"{backend} behind {what} " + ("is not serving (no ready endpoints)" if still_down else
                                               "was not reachable when the errors were logged (it serves now)"
                                               if recovered else "is not serving")
                + f", so {found.ref} could not reach it: {lines[0].line.strip()[:200]}",
                supporting, contradicting, True,
                action=f"Bring {backend.name} back (replicas, pods, events), then let {found.ref.name} reconnect."))
    return hypotheses
