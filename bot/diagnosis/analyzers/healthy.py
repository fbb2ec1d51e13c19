"""not_an_issue: nothing to fix — a heartbeat alert, or a system that is healthy.

A heartbeat (Watchdog, InfoInhibitor, ...) fires by design to prove the alerting pipeline
works. A failed Job whose CronJob has succeeded since is history (`superseded`). Otherwise "healthy" must be shown, not assumed: the alerted workloads have every
replica available, no pod is failing, no fresh Warning event concerns them, and no golden
signal is bad now (pods can be Ready while a release returns 5xx or a saturated pool answers
slowly: a bad signal is never "nothing is broken", see `BAD_NOW`); it weighs more when the
alerts have already resolved. An actionable alert (not of an informational severity) that still
fires says its own expression may still be true: unless golden signals were read and are fine
now, "healthy" then stays below conclusive, and the engine answers `unknown` with "nothing is
broken" as a weak lead. Anything the investigation could not check lowers the
confidence: "could not check" is not "found nothing".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.context.model import Context, Signal
from bot.diagnosis.findings import WorkloadFindings
from bot.diagnosis.model import Evidence, Hypothesis
from bot.diagnosis.superseded import later_success

FRESH = timedelta(minutes=15)
INFORMATIONAL_SEVERITIES = ("info", "none")  # the kubernetes-mixin's non-actionable alerts
STILL_FIRING = 0.45  # below the engine's CONCLUSIVE: an actionable alert's expression is still true
ERROR_RATIO_BAD = 0.05  # 5xx in more than one request in twenty
LATENCY_JUMP_BAD = 2.0  # p95 latency at least doubled at a change point...
LATENCY_STILL_UP = 0.8  # ...and still near the higher level at the last sample


def _error_ratio_bad(signal: Signal) -> str | None:
    latest = signal.latest
    if latest is not None and latest >= ERROR_RATIO_BAD:
        return f"{signal.title} is {latest:.1%} now"
    return None


def _latency_bad(signal: Signal) -> str | None:
    change, latest = signal.change, signal.latest
    if change is None or latest is None or change.before <= 0:
        return None
    if change.ratio >= LATENCY_JUMP_BAD and latest >= LATENCY_STILL_UP * change.after:
        return f"{signal.title} went from {change.before:.3g}s to {change.after:.3g}s and is {latest:.3g}s now"
    return None


# golden signal key -> what makes it bad now (a sentence), declared here rather than in the body
BAD_NOW: dict[str, Callable[[Signal], str | None]] = {"error_ratio": _error_ratio_bad, "latency_p95": _latency_bad}


def bad_signals(ctx: Context) -> list[Evidence]:
    """The golden signals that are bad at the last sample, as evidence against "healthy"."""
    bad = []
    for signal in ctx.signals:
        judge = BAD_NOW.get(signal.key)
        why = judge(signal) if judge else None
        if why:
            bad.append(Evidence(why, "prometheus", f"PromQL: {signal.query}"))
    return bad


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
    history = [e for found in findings if (e := later_success(ctx, found.ref)) is not None]
    if history and len(history) == len(findings) and not bad_signals(ctx):
        return [Hypothesis("not_an_issue", None, 0.85, "Nothing is broken now: " + history[0].text + ".", history,
                           action="Nothing to fix; delete the failed Job (or wait for the history limit) to clear "
                                  "the alert.")]
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
    contradicting += bad_signals(ctx)
    if not supporting or contradicting:
        return []
    if resolved:
        supporting.append(Evidence("every alert of the incident has resolved", "alert", "incident alerts"))
    actionable = [a for a in ctx.alerts if a.status == "firing"
                  and a.labels.get("severity", "").lower() not in INFORMATIONAL_SEVERITIES]
    if actionable:  # shown against it, yet not a veto: alerts lag, and Ready pods are facts
        contradicting.append(Evidence(f"{actionable[0].name} (severity {actionable[0].labels.get('severity', 'none')})"
                                      " still fires: its expression is still true", "alert",
                                      f"Alert {actionable[0].name}"))
    # an alert can keep firing after its cause ended (`keep_firing_for`, a slow `for:`): golden
    # signals that were read and are fine now show it; without them, "healthy" is not shown
    signals_fine = any(s.points for key in BAD_NOW for s in ctx.signal(key))
    confidence = (0.8 if resolved else STILL_FIRING if actionable and not signals_fine else 0.5) \
        - 0.15 * min(2, len(ctx.gaps))
    return [Hypothesis(
        "not_an_issue", None, confidence,
        "Nothing is broken now: " + "; ".join(e.text for e in supporting[:2]) + ".", supporting, contradicting,
        action="Nothing to fix now; if the alert keeps firing for a healthy system, tune its rule.")]
