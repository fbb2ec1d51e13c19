"""not_an_issue: nothing to fix — a heartbeat alert, or a system that is healthy.

A heartbeat (Watchdog, InfoInhibitor, ...) fires by design to prove the alerting pipeline
works. Otherwise "healthy" must be shown, not assumed: the alerted workloads have every
replica available, no pod is failing, and no fresh Warning event concerns them; it weighs
more when the alerts have already resolved. Anything the investigation could not check
lowers the confidence: "could not check" is not "found nothing".
"""

from __future__ import annotations

from datetime import timedelta

from bot.context.model import Context
from bot.diagnosis.findings import WorkloadFindings
from bot.diagnosis.model import Evidence, Hypothesis

FRESH = timedelta(minutes=15)


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    if ctx.subject.heartbeat:
        names = ", ".join(sorted({a.name for a in ctx.alerts}))
        return [Hypothesis(
            "not_an_issue", None, 0.97,
            f"{names} is a heartbeat: it fires all the time by design, to prove that alerting works.",
            [Evidence(f"{names} is a heartbeat alert (severity {ctx.alerts[0].labels.get('severity', 'none')}); "
                      "opsbot never opens a thread for it", "alert", f"Alert {names}")],
            action="Nothing to do. Route heartbeats to a dead man's switch, not to people.")]
    if not findings:
        return []
    supporting: list[Evidence] = []
    contradicting: list[Evidence] = []
    resolved = all(a.status == "resolved" for a in ctx.alerts)
    # once every alert resolved, warnings from before the last resolution are the episode itself
    quiet_since = max((a.ends_at for a in ctx.alerts if a.ends_at), default=None) if resolved else None
    fresh_after = max(ctx.now - FRESH, quiet_since) if quiet_since else ctx.now - FRESH
    for found in findings:
        view = found.view
        if found.failing:
            contradicting.append(Evidence(f"{len(found.failing)} pod(s) of {found.ref} are in trouble", "kubernetes",
                                          f"pods of {found.ref}"))
        elif view is not None and view.desired is not None and found.ref.kind not in ("Job", "CronJob"):
            available = view.available if view.available is not None else view.ready
            if (available or 0) >= view.desired:
                supporting.append(Evidence(f"{found.ref}: {available}/{view.desired} replicas available, no pod failing",
                                           "kubernetes", f"{found.ref} status"))
            else:
                contradicting.append(Evidence(f"{found.ref}: only {available or 0}/{view.desired} replicas available",
                                              "kubernetes", f"{found.ref} status"))
        fresh = [e for e in found.warning_events() if e.last_at and e.last_at > fresh_after]
        if fresh:
            contradicting.append(Evidence(f"{len(fresh)} fresh Warning event(s) about {found.ref}", "event",
                                          f"events of {found.ref}"))
    if not supporting or contradicting:
        return []
    if resolved:
        supporting.append(Evidence("every alert of the incident has resolved", "alert", "incident alerts"))
    confidence = (0.8 if resolved else 0.5) - 0.15 * min(2, len(ctx.gaps))
    return [Hypothesis(
        "not_an_issue", None, confidence,
        "Nothing is broken now: " + "; ".join(e.text for e in supporting[:2]) + ".", supporting, contradicting,
        action="Nothing to fix now; if the alert keeps firing for a healthy system, tune its rule.")]
