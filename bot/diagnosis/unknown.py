"""unknown: the honest answer when the symptoms are real and no rule explains them.

A confident wrong cause is the worst answer an RCA can give at 3 a.m.; "I don't know, and
here is what I saw" is a useful one. When no hypothesis reaches `CONCLUSIVE` (or none exists)
and the alerts are not heartbeats, the engine puts an `unknown` hypothesis first. It

- names the object a responder would look at first: the first focus workload (what the alerts
  are about), else the weak candidate's object, else the first object the alerts name;
- lists the unexplained symptoms, each with where it comes from: pods in trouble and how,
  golden signals bad now, signals with a change point, log templates whose rate jumped (drain3),
  recent changes nearby (a rollout, fresh Warning events);
- says what could not be checked (the gaps), so "found nothing" and "could not look" differ;
- keeps the weak candidates after it, so top-3 still shows the leads.

Invariants: pure; never proposes anything (remediation skips an inconclusive RCA); the text
quotes evidence already gathered and redacted upstream.
"""

from __future__ import annotations

from datetime import timedelta

from bot.context.model import Context, ObjectRef, Signal
from bot.diagnosis import evidence as ev
from bot.diagnosis.analyzers.healthy import bad_signals
from bot.diagnosis.findings import WorkloadFindings, short
from bot.diagnosis.model import Evidence, Hypothesis

MAX_SYMPTOMS = 8
CHANGE_RATIO = 2.0  # a signal that at least doubled (or halved) at its change point moved
FRESH_WARNING = timedelta(minutes=30)


def look_first(ctx: Context, candidates: list[Hypothesis]) -> ObjectRef | None:
    """The object a responder would open first when the cause is unknown."""
    if ctx.focus:
        return ctx.focus[0]
    named = next((h.resource for h in candidates if h.resource is not None), None)
    if named is not None:
        return named
    subject = ctx.subject
    for refs in (subject.workloads, subject.pods, subject.claims, subject.other):
        if refs:
            return refs[0]
    return ObjectRef("Node", None, subject.nodes[0]) if subject.nodes else None


def _pod_symptoms(found: WorkloadFindings, ctx: Context) -> list[Evidence]:
    items = []
    for pod, container in (found.oom + found.crashes)[:2]:
        items.append(ev.container_termination(pod, container, ctx.now))
    for pods in found.waiting.values():
        for pod, container in pods[:1]:
            items.append(ev.container_waiting(pod, container))
    not_ready = [p for p in found.failing if p.phase == "Running" and not p.ready]
    if not_ready and not items:
        items.append(Evidence(f"{len(not_ready)} pod(s) of {found.ref} are Running but not Ready", "kubernetes",
                              f"pods of {found.ref}"))
    if found.pending:
        items.append(Evidence(f"{len(found.pending)} pod(s) of {found.ref} are Pending", "kubernetes",
                              f"pods of {found.ref}"))
    return items


def _moved(signal: Signal) -> Evidence | None:
    change = signal.change
    if change is None or signal.key in ("restarts", "hpa_replicas", "available_replicas"):
        return None
    if change.ratio >= CHANGE_RATIO or (change.before > 0 and change.after / change.before <= 1 / CHANGE_RATIO):
        who = ", ".join(f"{k}={v}" for k, v in sorted(signal.labels.items()) if k in ("pod", "container", "service"))
        return ev.signal(signal, f"{signal.title}{' (' + who + ')' if who else ''} changed at "
                                 f"{change.at:%H:%M} UTC from {change.before:.3g} to {change.after:.3g}")
    return None


def unexplained_symptoms(ctx: Context, findings: list[WorkloadFindings]) -> list[Evidence]:
    """What is wrong that no hypothesis explains, strongest first, at most MAX_SYMPTOMS."""
    items: list[Evidence] = []
    for found in findings[:3]:
        items += _pod_symptoms(found, ctx)
    items += bad_signals(ctx)
    items += [e for e in (_moved(s) for s in ctx.signals) if e is not None][:3]
    for view in ctx.logs:
        for template in view.templates:
            if template.jumped:
                items.append(Evidence(f"log template jumped in {view.pod.name} ({view.container}): "
                                      f"{short(template.template, 200)} ({template.recent} recent, "
                                      f"{template.baseline} before)", "log",
                                      f"Pod {view.pod.namespace}/{view.pod.name} logs ({view.container})"))
                break
    for found in findings[:3]:
        rollout = found.rollout
        if found.rollout_recent and rollout and rollout.current:
            items.append(Evidence(f"{found.ref} rolled out revision {rollout.current.number} "
                                  f"{ev.ago(rollout.current.created_at, ctx.now)}", "rollout",
                                  f"{found.ref} rollout history"))
        fresh = [e for e in found.warning_events() if e.last_at and e.last_at >= ctx.now - FRESH_WARNING]
        items += [ev.event(e, ctx.now) for e in fresh[:2]]
    unique: dict[str, Evidence] = {}
    for item in items:
        unique.setdefault(item.text, item)
    return list(unique.values())[:MAX_SYMPTOMS]


def unknown_hypothesis(ctx: Context, findings: list[WorkloadFindings], candidates: list[Hypothesis]) -> Hypothesis:
    """The `unknown` answer: what to look at, what is unexplained, and the weak leads."""
    target = look_first(ctx, candidates)
    symptoms = unexplained_symptoms(ctx, findings)
    firing = sorted({a.name for a in ctx.alerts if a.status == "firing"})
    if not symptoms and firing:
        symptoms.append(Evidence(f"the alert{'s' if len(firing) > 1 else ''} {', '.join(firing[:4])} "
                                 "fire, but nothing in the evidence read shows the fault", "alert",
                                 f"Alert {', '.join(firing[:4])}"))
    lead = candidates[0] if candidates else None
    about = str(target) if target is not None else "the alerted objects"
    summary = f"No rule explains what is wrong with {about}: the evidence does not name a cause"
    if lead is not None:
        summary += f" (the best lead, {lead.category} on {lead.resource_text}, is too weak at " \
                   f"{lead.confidence:.0%})"
    gaps = [g.what for g in ctx.gaps[:3]]
    action = f"Look at {about} first: " + ("; ".join(s.text for s in symptoms[:2]) if symptoms
                                           else "its pods, events and logs") + "."
    if gaps:
        action += " Not checked: " + ", ".join(gaps) + "."
    return Hypothesis("unknown", target, lead.confidence if lead else 0.0, summary + ".", symptoms,
                      action=action, signal_key=lead.signal_key if lead else None)
