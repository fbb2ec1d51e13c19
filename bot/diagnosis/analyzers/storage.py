"""storage: a PersistentVolumeClaim that cannot bind or mount, or a volume that is full.

Explicit evidence: a Pending claim whose StorageClass does not exist or whose provisioning
failed (ProvisioningFailed), pods waiting for unbound claims, FailedMount / FailedAttachVolume
of a claim's volume (Multi-Attach), "No space left on device" in the logs, and the kubelet's
volume statistics showing the claim nearly full (KubePersistentVolumeFillingUp). The claim to
fix is the one the error names or the one mounted at the path the error names.
"""

from __future__ import annotations

import re

from bot.context.kube_facts import bytes_quantity, parse_quantity
from bot.context.log_signals import paths_in
from bot.context.model import ClaimView, Context, ObjectRef, PodView
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target
from bot.diagnosis.model import Evidence, Hypothesis

NEARLY_FULL = 0.1
FILLING_ALERTS = ("KubePersistentVolumeFillingUp", "KubePersistentVolumeInodesFillingUp", "KubePersistentVolumeErrors")
_CLAIM_IN_MESSAGE = re.compile(r'persistentvolumeclaim "?([a-z0-9][a-z0-9.-]*)"?', re.I)


def _claim_at_path(pod: PodView, paths: list[str]) -> str | None:
    claims = {v.name: v.source for v in pod.volumes if v.kind == "persistentVolumeClaim"}
    for container in pod.containers:
        for mount, volume in sorted(container.mounts.items(), key=lambda item: -len(item[0])):
            if volume in claims and any(p == mount or p.startswith(mount.rstrip("/") + "/") for p in paths):
                return claims[volume]
    return next(iter(claims.values()), None)


def _claims_of(found: WorkloadFindings) -> set[ObjectRef]:
    return {ObjectRef("PersistentVolumeClaim", p.ref.namespace, v.source) for p in found.pods for v in p.volumes
            if v.kind == "persistentVolumeClaim" and v.source}


def _claim_problem(ctx: Context, claim: ClaimView) -> tuple[list[Evidence], float, str] | None:
    events = [e for e in ctx.events if e.involved == claim.ref and e.type == "Warning" and not e.stale]
    supporting = [ev.event(e, ctx.now) for e in events[:2]]
    if claim.phase == "Pending":
        why = "is Pending"
        if claim.storage_class and claim.storage_class_exists is False:
            why += f": StorageClass {claim.storage_class} does not exist"
            supporting.insert(0, Evidence(f"StorageClass {claim.storage_class} named by {claim.ref.name} does not "
                                          "exist", "kubernetes", "storage classes"))
        return supporting + [Evidence(f"{claim.ref} {why}", "kubernetes", f"{claim.ref} status")], 0.9, why
    if claim.phase == "Lost":
        return supporting + [Evidence(f"{claim.ref} is Lost", "kubernetes", f"{claim.ref} status")], 0.85, "is Lost"
    return None


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses: list[Hypothesis] = []
    claims = {c.ref: c for c in ctx.claims}
    candidates: dict[ObjectRef, tuple[list[Evidence], float, str]] = {}

    def add(ref: ObjectRef, supporting: list[Evidence], confidence: float, why: str) -> None:
        old = candidates.get(ref)
        if old is None or confidence > old[1]:
            candidates[ref] = (supporting + (old[0] if old else []), confidence, why)
        else:
            old[0].extend(supporting)

    wanted = set(ctx.subject.claims) | {c for f in findings for c in _claims_of(f)}
    for ref in wanted:
        claim = claims.get(ref)
        problem = _claim_problem(ctx, claim) if claim else None
        if problem:
            add(ref, *problem)
    for signal in ctx.signal("volume_free"):
        ref = ObjectRef("PersistentVolumeClaim", signal.labels.get("namespace"), signal.labels.get("persistentvolumeclaim", "?"))
        if signal.latest is not None and signal.latest <= NEARLY_FULL:
            add(ref, [ev.signal(signal, f"{ref.name} has {ev.pct(signal.latest)} free space left "
                                        f"(was {ev.pct(signal.points[0][1])} an hour ago)")], 0.8,
                f"is nearly full ({ev.pct(signal.latest)} free)")
    for alert in ctx.alerts:
        if alert.name in FILLING_ALERTS and alert.labels.get("persistentvolumeclaim") and alert.status == "firing":
            ref = ObjectRef("PersistentVolumeClaim", alert.labels.get("namespace"), alert.labels["persistentvolumeclaim"])
            add(ref, [Evidence(f"{alert.name}: {alert.annotations.get('description', '')}"[:300], "alert",
                               f"Alert {alert.name}")], 0.75, "is filling up")
    for found in findings:
        lines = found.error_lines("storage")
        pods = {p.ref: p for p in found.pods}
        if lines:
            pod = pods.get(lines[0].pod)
            name = _claim_at_path(pod, paths_in(lines[0].line)) if pod else None
            target = ObjectRef("PersistentVolumeClaim", found.ref.namespace, name) if name else fix_target(found)
            add(target, [ev.log_line(e) for e in lines[:2]], 0.8, "is full (the application cannot write)")
        for event in found.warning_events("FailedMount", "FailedAttachVolume"):
            if re.search(r"configmap|secret", event.message, re.I):
                continue
            match = _CLAIM_IN_MESSAGE.search(event.message)
            name = match.group(1) if match else next((c.name for c in _claims_of(found)), None)
            if name:
                add(ObjectRef("PersistentVolumeClaim", found.ref.namespace, name), [ev.event(event, ctx.now)], 0.75,
                    "cannot be mounted")
        for event in found.warning_events("FailedScheduling"):
            if re.search(r"unbound (?:immediate )?PersistentVolumeClaims", event.message, re.I):
                for ref in _claims_of(found):
                    add(ref, [ev.event(event, ctx.now)], 0.7, "is not bound, so the pods cannot be scheduled")
            elif re.search(r"volume node affinity conflict", event.message, re.I):
                for ref in _claims_of(found):
                    add(ref, [ev.event(event, ctx.now)], 0.7,
                        "is bound to a volume no schedulable node can reach (volume node affinity conflict)")
    for ref, (supporting, confidence, why) in candidates.items():
        claim = claims.get(ref)
        expandable = claim.expandable if claim else None
        action = (f"Expand {ref.name} (its StorageClass allows expansion) or free space." if "full" in why
                  and expandable else f"Fix {ref.name}: " + ("create the StorageClass or point the claim at an "
                                                             "existing one." if "StorageClass" in why else
                                                             "free space or move to a larger volume."
                                                             if "full" in why else "check the volume and its driver."))
        size = parse_quantity(claim.capacity or claim.requested) if claim else None
        facts = {"claim_full": "true" if ("full" in why or "filling" in why) else "false",
                 "expandable": "true" if expandable else "false",
                 **({"claim_size": claim.capacity or claim.requested or "",
                     "suggested_claim_size": bytes_quantity(2 * size)} if size else {})}
        hypotheses.append(Hypothesis("storage", ref, confidence, f"{ref} {why}.", supporting[:4], [],
                                     explicit=True, action=action, signal_key="volume_free", facts=facts))
    return hypotheses
