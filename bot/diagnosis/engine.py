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

from bot.context.model import Context, Gap
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
from bot.diagnosis.findings import all_findings
from bot.diagnosis.model import Diagnosis, Hypothesis
from bot.diagnosis.unknown import unknown_hypothesis

log = logging.getLogger(__name__)
ANALYZERS = (memory, cpu, deploy, config, image, dependency, network, scheduling, node, storage, capacity, certificate,
             quota, healthy)
EXPLICIT_BONUS = 0.04
CONCLUSIVE = 0.5
TIE = 0.05
MAX_HYPOTHESES = 6


def score(hypothesis: Hypothesis) -> float:
    return hypothesis.confidence + (EXPLICIT_BONUS if hypothesis.explicit else 0.0)


# Causes whose confident presence makes other categories their likely consequence: a node that
# is down takes its capacity with it, so pods that cannot be placed elsewhere follow from it.
CONSEQUENCES = {"node_failure": ("scheduling", "capacity")}
CONSEQUENCE_PENALTY = 0.1
CONFIDENT_CAUSE = 0.85


def _demote_consequences(hypotheses: list[Hypothesis]) -> None:
    causes = {h.category for h in hypotheses if h.explicit and h.confidence >= CONFIDENT_CAUSE}
    demoted = {c for cause in causes for c in CONSEQUENCES.get(cause, ())}
    for hypothesis in hypotheses:
        if hypothesis.category in demoted:
            hypothesis.confidence = max(0.0, hypothesis.confidence - CONSEQUENCE_PENALTY)


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


def diagnose(ctx: Context, analyzers=ANALYZERS) -> Diagnosis:
    """Rank what `analyzers` (modules or objects with `analyze(ctx, findings)`) propose."""
    findings = all_findings(ctx)
    proposed: list[Hypothesis] = []
    gaps = list(ctx.gaps)
    for analyzer in analyzers:
        name = getattr(analyzer, "__name__", type(analyzer).__name__).rsplit(".", 1)[-1]
        try:
            proposed += analyzer.analyze(ctx, findings)
        except Exception as exc:  # noqa: BLE001 - one analyzer's bug must not cost the diagnosis
            log.exception("analyzer %s failed", name)
            gaps.append(Gap(f"the {name} analysis", f"it failed ({type(exc).__name__})"))
    ranked = rank(proposed)
    if not ctx.subject.heartbeat and (not ranked or ranked[0].confidence < CONCLUSIVE):
        ranked = [unknown_hypothesis(ctx, findings, ranked), *ranked][:MAX_HYPOTHESES]
    return Diagnosis(hypotheses=ranked, inconclusive=is_inconclusive(ranked), gaps=gaps,
                     subject=describe_subject(ctx))
