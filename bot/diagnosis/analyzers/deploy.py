"""bad_deploy: a recent rollout introduced the fault, so rolling back is the remedy.

Evidence, strongest first: pods of the new revision fail while pods of the previous one keep
serving; the failures (crashes, errors, a 5xx change point) began after the new revision was
created; the template diff changes something that can break a program (image, command, args,
env, config references, probes). Against: pods of the old revision fail too (the fault does
not follow the version), the new revision changes nothing that runs, the new pods are only
Pending (that is scheduling), or there is no previous revision to go back to (a first deploy:
config_error or image_pull then).

Pods need not fail: a release that returns 5xx or answers slowly keeps every pod Ready. A
golden signal that stepped up shortly after the new revision was created (`REGRESSIONS`) and
is still up is the evidence then, with the same checks of what the revision changed.
"""

from __future__ import annotations

from datetime import timedelta

from bot.context.model import Context, TemplateChange
from bot.diagnosis import evidence as ev
from bot.diagnosis import rules
from bot.diagnosis.findings import WorkloadFindings, of_revision, short
from bot.diagnosis.model import Evidence, Hypothesis
from bot.redaction import MASK

RUNTIME_FIELDS = (".image", ".command", ".args", ".env", ".envFrom", "Probe", ".volumeMounts", "spec.volumes",
                  "annotations.checksum", ".securityContext", ".workingDir", ".ports", "serviceAccountName")
CHANGE_POINT_WINDOW = timedelta(minutes=30)
# golden signal -> (how much it must have grown at the change point, floor after, still-up share now)
REGRESSIONS = {"error_ratio": (2.0, 0.02, 0.5), "latency_p95": (1.5, 0.0, 0.7)}
HEALTHY_PODS_REGRESSION = 0.7


def signal_regressions(ctx: Context, created_at, workload=None) -> list[Evidence]:
    """Golden signals of `workload` (or of no one workload) that stepped up within
    CHANGE_POINT_WINDOW after `created_at` and are still up."""
    found = []
    for key, (factor, floor, still) in REGRESSIONS.items():
        for signal in ctx.signal(key, workload):
            change, latest = signal.change, signal.latest
            if change is None or latest is None or created_at is None:
                continue
            grew = change.after >= max(factor * change.before, floor) and change.after > change.before
            if grew and created_at <= change.at <= created_at + CHANGE_POINT_WINDOW and latest >= still * change.after:
                delay = int((change.at - created_at).total_seconds())
                what = (f"5xx ratio rose from {ev.pct(change.before)} to {ev.pct(change.after)}" if key == "error_ratio"
                        else f"p95 latency rose from {change.before * 1000:.0f} ms to {change.after * 1000:.0f} ms")
                found.append(ev.signal(signal, f"{what} {delay} s after the new revision was created"))
    return found


def _runtime_changes(changes: list[TemplateChange]) -> list[TemplateChange]:
    return [c for c in changes if any(marker in c.path for marker in RUNTIME_FIELDS)]


def describe_change(change: TemplateChange) -> str:
    if change.before == change.after == MASK:  # a secret's value changed (bot.context.rollout masks it)
        return f"{change.path} changed (value hidden)"
    if change.before is None:
        return f"{change.path} added ({short(change.after, 80)})"
    if change.after is None:
        return f"{change.path} removed (was {short(change.before, 80)})"
    return f"{change.path}: {short(change.before, 80)} → {short(change.after, 80)}"


def _image_of(found: WorkloadFindings) -> str | None:
    rollout = found.rollout
    images = rollout.image_of(rollout.current) if rollout else []
    return images[0] if images else None


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        rollout = found.rollout
        if rollout is None or rollout.current is None or rollout.previous is None:
            continue
        if not found.rollout_recent:
            continue  # a scale-up of an old revision is "in progress" too, but no rollout happened
        current, previous = rollout.current, rollout.previous
        regressions = signal_regressions(ctx, current.created_at, found.ref)
        if not found.failing and not regressions:
            continue
        supporting: list[Evidence] = []
        contradicting: list[Evidence] = []
        image = _image_of(found)
        changes = _runtime_changes(rollout.changes)
        supporting.append(Evidence(
            f"revision {current.number} ({current.name}{', image ' + image if image else ''}) was created "
            f"{ev.ago(current.created_at, ctx.now)}; the trouble began about {ev.ago(ctx.incident_start, ctx.now)}",
            "rollout", f"ReplicaSet {found.ref.namespace}/{current.name}"))
        if changes:
            supporting.append(Evidence("changed since revision " + str(previous.number) + ": "
                                       + "; ".join(describe_change(c) for c in changes[:4]), "rollout",
                                       f"pod template diff {previous.name} → {current.name}"))
        else:
            contradicting.append(Evidence(f"revision {current.number} changes nothing that runs "
                                          f"({', '.join(c.path for c in rollout.changes[:3]) or 'no template change'})",
                                          "rollout", f"pod template diff {previous.name} → {current.name}"))
        if found.failing_new and not found.failing_old:
            split = f"{found.failing_new} pod(s) of revision {current.number} fail"
            if found.healthy_old:
                split += f" while {found.healthy_old} pod(s) of revision {previous.number} keep serving"
            supporting.append(Evidence(split, "kubernetes", f"pods of {found.ref} by pod-template-hash"))
        healthy_new = [p for p in found.healthy if of_revision(p, current) and p.ready]
        if healthy_new and current.hash and found.failing:
            contradicting.append(Evidence(f"{len(healthy_new)} pod(s) of revision {current.number} itself are healthy",
                                          "kubernetes", f"pods of {found.ref} by pod-template-hash"))
        if found.failing_old:
            contradicting.append(Evidence(f"{found.failing_old} pod(s) of the previous revision fail too: the fault "
                                          "does not follow the version", "kubernetes", f"pods of {found.ref}"))
        only_pending = found.failing and all(p in found.pending for p in found.failing)
        if only_pending:
            contradicting.append(Evidence("the new pods are Pending (not scheduled), not failing to run", "kubernetes",
                                          f"pods of {found.ref}"))
        code_errors = found.key_lines(("code", "config"))
        supporting += [ev.log_line(e) for e in code_errors]
        supporting += regressions
        confidence = 0.55 if found.failing else HEALTHY_PODS_REGRESSION
        if found.failing_new and not found.failing_old and (found.healthy_old or previous.ready):
            confidence = 0.85
        elif found.failing_new and not found.failing_old:
            confidence = 0.7
        adjustments = {"program_errors_after_release": bool(code_errors),
                       "release_changes_nothing_that_runs": not changes,
                       "fault_does_not_follow_the_version": bool(found.failing_old),
                       "new_revision_healthy": bool(healthy_new and current.hash and found.failing),
                       "new_pods_only_pending": bool(only_pending)}
        summary = f"Revision {current.number} of {found.ref}" + (f" ({image})" if image else "") + (
            f" broke it: {found.failing_new or len(found.failing)} pod(s) of the new revision fail" if found.failing
            else f" made it worse with every pod Ready: {regressions[0].text}")
        if found.healthy_old:
            summary += f" while revision {previous.number} keeps serving"
        hypothesis = Hypothesis(
            "bad_deploy", found.ref, confidence, summary + ".", supporting, contradicting, explicit=False,
            facts={"rollout_recent": "true", "previous_revision": str(previous.number),
                   "current_revision": str(current.number)},
            action=f"Roll {found.ref.name} back to revision {previous.number}, then fix the change before redeploying.",
            signal_key="error_ratio")
        for name, applies in adjustments.items():
            rules.apply(hypothesis, name, int(applies))
        hypotheses.append(hypothesis)
    return hypotheses
