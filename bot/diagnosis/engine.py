"""DIAGNOSE: run every analyzer over the gathered context and rank what they propose.

Ranking prefers causes over symptoms and explicit messages over correlation: analyzers encode
the first in their confidences (a crash loop is never a category; OOMKilled, an expired
certificate or a missing ConfigMap is), and an explicit hypothesis gets a small bonus over a
timing-based one of equal confidence. Two hypotheses for the same category and object are one.
The diagnosis is inconclusive when nothing reaches CONCLUSIVE, or when a different cause is
within TIE of the first: the RCA then says so instead of sounding sure. When nothing reaches
CONCLUSIVE (or nothing was proposed at all) the first answer is `unknown` (`unknown.py`): the
unexplained symptoms and the object to look at first, the weak leads after it.

An analyzer that raises is logged and recorded as a gap; the others still run. No analyzer
ever looks at an incident's or scenario's name: they read evidence only.
"""

from __future__ import annotations

import logging

from bot.context.kube_facts import controller_of, gitops_owner
from bot.context.model import Context, Gap, ObjectRef
from bot.diagnosis import rules
from bot.diagnosis.analyzers import (
    capacity,
    certificate,
    config,
    cpu,
    dependency,
    deploy,
    healthy,
    image,
    memory,
    network,
    node,
    quota,
    scheduling,
    storage,
)
from bot.diagnosis.findings import WorkloadFindings, all_findings, workload_findings
from bot.diagnosis.model import Diagnosis, Evidence, Hypothesis
from bot.diagnosis.superseded import later_success
from bot.diagnosis.unknown import unknown_hypothesis

log = logging.getLogger(__name__)
ANALYZERS = (memory, cpu, deploy, config, image, dependency, network, scheduling, node, storage, capacity, certificate,
             quota, healthy)
# analyzers that judge the whole incident, not one workload's cause: not run on dependencies
SYMPTOM_ONLY = (healthy,)
CONFIDENT_UPSTREAM = 0.7  # a dependency's own cause this sure explains its "not serving"
EXPLICIT_BONUS = 0.04
CONCLUSIVE = 0.5
TIE = 0.05
MAX_HYPOTHESES = 6


def score(hypothesis: Hypothesis) -> float:
    return hypothesis.confidence + (EXPLICIT_BONUS if hypothesis.explicit else 0.0)


# Causes whose confident presence makes other categories their likely consequence: a node that
# is down takes its capacity with it, so pods that cannot be placed elsewhere follow from it.
CONSEQUENCES = {"node_failure": ("scheduling", "capacity")}
CONFIDENT_CAUSE = 0.85


def _demote_consequences(hypotheses: list[Hypothesis]) -> None:
    causes = {h.category for h in hypotheses if h.explicit and h.confidence >= CONFIDENT_CAUSE}
    demoted = {c for cause in causes for c in CONSEQUENCES.get(cause, ())}
    for hypothesis in hypotheses:
        if hypothesis.category in demoted:
            rules.apply(hypothesis, "consequence_of_a_confident_cause")


def rank(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    _demote_consequences(hypotheses)
    best: dict[tuple[str, str], Hypothesis] = {}
    for hypothesis in hypotheses:
        key = (hypothesis.category, hypothesis.resource_text)
        kept = best.get(key)
        if kept is None or score(hypothesis) > score(kept):
            best[key] = hypothesis
    return sorted(best.values(), key=lambda h: (-score(h), h.category, h.resource_text))[:MAX_HYPOTHESES]


def is_inconclusive(ranked: list[Hypothesis]) -> bool:
    if not ranked or ranked[0].category == "unknown" or ranked[0].confidence < CONCLUSIVE:
        return True
    rival = next((h for h in ranked[1:] if h.category != ranked[0].category), None)
    return rival is not None and score(rival) >= score(ranked[0]) - TIE


def describe_subject(ctx: Context) -> str:
    names = sorted({a.name for a in ctx.alerts if a.status == "firing"} or {a.name for a in ctx.alerts})
    focus = ", ".join(str(ref) for ref in ctx.focus[:3]) or ", ".join(ctx.subject.namespaces) or "the cluster"
    where = f" in cluster {ctx.cluster}" if ctx.cluster else ""
    located = f"; found from the alert labels: {'; '.join(ctx.subject.located[:3])}" if ctx.subject.located else ""
    return f"{focus}{where} (alerts: {', '.join(names[:4])}{'…' if len(names) > 4 else ''}{located})"


def _run(analyzer, ctx: Context, findings: list[WorkloadFindings], gaps: list[Gap]) -> list[Hypothesis]:
    name = getattr(analyzer, "__name__", type(analyzer).__name__).rsplit(".", 1)[-1]
    try:
        return list(analyzer.analyze(ctx, findings))
    except Exception as exc:  # noqa: BLE001 - one analyzer's bug must not cost the diagnosis
        log.exception("analyzer %s failed", name)
        gap = Gap(f"the {name} analysis", f"it failed ({type(exc).__name__})")
        if gap not in gaps:
            gaps.append(gap)
        return []


def _chain(ctx: Context, backend) -> Evidence | None:
    """How the focus' errors lead to `backend`: client → host → Service → endpoints → workload."""
    dep = next((d for d in ctx.dependencies if backend in d.backends), None)
    if dep is None:
        return None
    client = dep.pods[0].name if dep.pods else "the alerted pods"
    service = f" → Service {dep.service}" + (f" ({dep.ready_endpoints} ready endpoint(s))"
                                             if dep.ready_endpoints is not None else "") if dep.service else ""
    return Evidence(f"chain: {client}'s errors name {dep.host}{service} → {backend}", "kubernetes",
                    f"logs of {client}; {dep.service or dep.host}")


def _upstream(ctx: Context, analyzers, gaps: list[Gap]) -> list[Hypothesis]:
    """What the dependency workloads' own evidence says: a cause upstream of the symptom
    explains it (rule `upstream_cause`), with the chain as its first evidence."""
    hypotheses = []
    for found in (workload_findings(ctx, ref) for ref in ctx.upstream):
        if not (found.failing or found.errors or found.events or found.rollout_recent):
            continue
        chain = _chain(ctx, found.ref)
        for analyzer in analyzers:
            for hypothesis in _run(analyzer, ctx, [found], gaps):
                if chain is not None:
                    hypothesis.supporting.insert(0, chain)
                rules.apply(hypothesis, "upstream_cause")
                hypotheses.append(hypothesis)
    return hypotheses


def _objects_of(ctx: Context, workload: ObjectRef) -> set[ObjectRef]:
    """The workload and what its pods use: the objects a cause "in" a dependency may name."""
    used = {workload}
    for pod in ctx.pods:
        if pod.workload != workload and pod.owner != workload:
            continue
        kinds = {"configMap": "ConfigMap", "secret": "Secret", "persistentVolumeClaim": "PersistentVolumeClaim"}
        used |= {ObjectRef(kinds[v.kind], pod.ref.namespace, v.source) for v in pod.volumes if v.kind in kinds
                 and v.source}
        if pod.node:
            used.add(ObjectRef("Node", None, pod.node))
    return used


def _demote_explained(ctx: Context, hypotheses: list[Hypothesis]) -> None:
    """A dependency that "is not serving" is a symptom once its own evidence names why (an
    explicit cause on it or on what its pods use): rule `explained_by_its_cause`."""
    for backend in dict.fromkeys(b for dep in ctx.dependencies for b in dep.backends):
        objects = _objects_of(ctx, backend)
        explained = any((h.explicit or h.confidence >= CONFIDENT_UPSTREAM + 0.1) and h.confidence >= CONFIDENT_UPSTREAM
                        and h.category != "dependency_unreachable" and h.resource in objects for h in hypotheses)
        if not explained:
            continue
        for hypothesis in hypotheses:
            if hypothesis.category == "dependency_unreachable" and hypothesis.resource == backend:
                rules.apply(hypothesis, "explained_by_its_cause")


def _mark_gitops(ctx: Context, hypotheses: list[Hypothesis]) -> None:
    """A workload that Argo CD or Flux applies: a direct change would be reverted at the next
    sync, so the hypothesis says so and carries `gitops` (no runbook is proposed for it)."""
    for hypothesis in hypotheses:
        view = ctx.workload(hypothesis.resource)
        owner = gitops_owner(view.raw) if view is not None else None
        if owner is not None:
            hypothesis.facts["gitops"] = owner
            hypothesis.supporting.append(Evidence(f"{hypothesis.resource} is applied by {owner}: a direct change "
                                                  "would be reverted at its next sync", "kubernetes",
                                                  f"{hypothesis.resource} metadata"))
            hypothesis.action += f" Make the change in Git: {owner.split(' (')[0]} would revert a direct one."


def _demote_history(ctx: Context, hypotheses: list[Hypothesis]) -> None:
    """Causes of a Job failure that its CronJob made good since are history: rule
    `superseded_by_a_later_success`. A hypothesis about the CronJob is history only when its
    evidence is about the superseded runs' pods and none of a run that still fails."""
    old = [ref for ref in ctx.focus if later_success(ctx, ref) is not None]
    if not old:
        return
    pods_of = {ref: [p.ref.name for p in ctx.pods if p.owner == ref] for ref in ctx.focus if ref.kind == "Job"}
    old_pods = [name for ref in old for name in pods_of.get(ref, [])]
    live_pods = [name for ref, names in pods_of.items() if ref not in old for name in names]
    owners = {controller_of(ctx.workload(ref).raw) for ref in old}

    def about(hypothesis: Hypothesis, names: list[str]) -> bool:
        return any(name in e.ref or name in e.text for e in hypothesis.supporting for name in names)
    for hypothesis in hypotheses:
        if hypothesis.category == "not_an_issue":
            continue
        if hypothesis.resource in old or (hypothesis.resource in owners and about(hypothesis, old_pods)
                                          and not about(hypothesis, live_pods)):
            rules.apply(hypothesis, "superseded_by_a_later_success")


def diagnose(ctx: Context, analyzers=ANALYZERS) -> Diagnosis:
    """Rank what `analyzers` (modules or objects with `analyze(ctx, findings)`) propose, about
    the focus and about the dependency workloads its errors lead to."""
    findings = all_findings(ctx)
    proposed: list[Hypothesis] = []
    gaps = list(ctx.gaps)
    for analyzer in analyzers:
        proposed += _run(analyzer, ctx, findings, gaps)
    proposed += _upstream(ctx, [a for a in analyzers if a not in SYMPTOM_ONLY], gaps)
    _demote_explained(ctx, proposed)
    _demote_history(ctx, proposed)
    ranked = rank(proposed)
    _mark_gitops(ctx, ranked)
    if not ctx.subject.heartbeat and (not ranked or ranked[0].confidence < CONCLUSIVE):
        ranked = [unknown_hypothesis(ctx, findings, ranked), *ranked][:MAX_HYPOTHESES]
    return Diagnosis(hypotheses=ranked, inconclusive=is_inconclusive(ranked), gaps=gaps,
                     subject=describe_subject(ctx))
