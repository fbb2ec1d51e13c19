"""The stored RCA: a diagnosis and the context it came from, as redacted JSON. Pure.

This is what the investigations table keeps, what the Slack renderer and the graph read, and
what the timeline records in short. Everything is redacted here, once, before it is stored: a
secret printed in a log line never reaches the database row, Slack or the timeline.

Shape (version 1):
    {"version": 1, "subject": str, "inconclusive": bool,
     "hypotheses": [{"category", "resource", "confidence", "summary", "explicit", "action",
                     "supporting": [{"text", "source", "ref"}], "contradicting": [...]}],
     "gaps": [{"what", "why"}], "nearby": [str], "timings": {gatherer: seconds},
     "owners": [str], "log_templates": [str],
     "graph": {"title", "unit", "query", "series": [{"label", "points": [[epoch, value]]}],
               "marks": [{"label", "at": epoch}]} | null,
     "material": {"filename", "text"} | null,
     "similar": [...]}  # added by the RCA stage when past incidents resemble this one (bot.postmortem.memory)

`owners` is the top hypothesis' object up through its owners (Pod → ReplicaSet → Deployment;
an object that is no workload, such as a ConfigMap or a Node, is followed by the workload
investigated), `log_templates` the log templates whose rate jumped: what the memory of past
incidents compares.
"""

from __future__ import annotations

from typing import Any

from bot.context.model import Context, Signal
from bot.diagnosis.findings import all_findings
from bot.diagnosis.model import Diagnosis, Hypothesis
from bot.diagnosis.nearby import broken_nearby
from bot.redaction import redact, redact_data

VERSION = 1
GRAPH_FALLBACKS = ("restarts", "available_replicas", "error_ratio", "memory_vs_limit", "cpu_throttling")
MAX_GRAPH_SERIES = 4
MATERIAL_LINES = 120
MAX_JUMPED_TEMPLATES = 10


def _hypothesis(h: Hypothesis) -> dict[str, Any]:
    return {"category": h.category, "resource": h.resource_text, "confidence": round(h.confidence, 3),
            "summary": h.summary, "explicit": h.explicit, "action": h.action,
            "supporting": [vars(e) for e in h.supporting], "contradicting": [vars(e) for e in h.contradicting],
            "facts": resource_facts(h) | h.facts, "rules": list(h.rules)}


def resource_facts(h: Hypothesis) -> dict[str, str]:
    """The object to fix, as facts a runbook's params can read (`diagnosis.namespace`, ...)."""
    if h.resource is None:
        return {}
    return {"kind": h.resource.kind, "name": h.resource.name, **({"namespace": h.resource.namespace}
                                                                  if h.resource.namespace else {})}


def _moves(signal: Signal) -> bool:
    peak, low = signal.peak or 0.0, signal.lowest or 0.0
    return signal.change is not None or (peak - low) > 0.05 * max(abs(peak), abs(low), 1e-9)


def _graph_signals(ctx: Context, diagnosis: Diagnosis) -> list[Signal]:
    """The top hypothesis' signal, else the first fallback that shows something happening (a
    flat line tells nobody anything), else the first with data at all."""
    keys = [h.signal_key for h in diagnosis.hypotheses[:1] if h.signal_key] + list(GRAPH_FALLBACKS)
    candidates = [[s for s in ctx.signal(key) if len(s.points) >= 2] for key in dict.fromkeys(keys)]
    chosen = next((found for found in candidates if any(_moves(s) for s in found)),
                  next((found for found in candidates if found), []))
    chosen.sort(key=lambda s: -(abs((s.peak or 0) - (s.lowest or 0))))
    return chosen[:MAX_GRAPH_SERIES]


def _marks(ctx: Context, signals: list[Signal]) -> list[dict[str, Any]]:
    marks = []
    firing = [a.starts_at for a in ctx.alerts if a.starts_at and a.status == "firing"] or \
        [a.starts_at for a in ctx.alerts if a.starts_at]
    if firing:
        marks.append({"label": "alert fired", "at": min(firing).timestamp()})
    for ref in ctx.focus[:1]:
        rollout = ctx.rollout(ref)
        if rollout and rollout.current and rollout.previous and rollout.current.created_at:
            marks.append({"label": f"revision {rollout.current.number}", "at": rollout.current.created_at.timestamp()})
    change = next((s.change for s in signals if s.change), None)
    if change:
        marks.append({"label": "change", "at": change.at.timestamp()})
    start = min((s.points[0][0] for s in signals), default=ctx.now).timestamp()
    return [m for m in marks if m["at"] >= start]


def _graph(ctx: Context, diagnosis: Diagnosis) -> dict[str, Any] | None:
    signals = _graph_signals(ctx, diagnosis)
    if not signals:
        return None
    first = signals[0]
    series = [{"label": ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k in ("pod", "container",
                                                                                           "persistentvolumeclaim",
                                                                                           "node", "service"))
               or first.title, "points": [[t.timestamp(), v] for t, v in s.points]} for s in signals]
    return {"title": first.title, "unit": first.unit, "query": first.query, "series": series,
            "marks": _marks(ctx, signals)}


def _material(ctx: Context, diagnosis: Diagnosis) -> dict[str, str] | None:
    """Long material for a file: the failing pods' log tails and the rollout diff."""
    parts: list[str] = []
    for found in all_findings(ctx)[:2]:
        rollout = found.rollout
        if rollout and rollout.changes and found.rollout_recent:
            parts.append(f"# {found.ref}: revision {rollout.previous.number} -> {rollout.current.number}")
            parts += [f"{c.path}: {c.before!r} -> {c.after!r}" for c in rollout.changes]
            parts.append("")
    shown = 0
    for view in ctx.logs:
        if shown >= 3 or not view.lines:
            continue
        shown += 1
        parts.append(f"# logs of {view.pod} ({view.container}{', previous instance' if view.previous else ''})")
        parts += view.lines[-MATERIAL_LINES:]
        parts.append("")
    if not parts:
        return None
    return {"filename": "rca-evidence.txt", "text": redact("\n".join(parts))}


def _owners(ctx: Context, diagnosis: Diagnosis) -> list[str]:
    ref = diagnosis.top.resource if diagnosis.top else None
    pod = next((p for p in ctx.pods if p.ref == ref), None)
    owned = next((p for p in ctx.pods if ref is not None and ref in (p.owner, p.workload)), None)
    if pod is not None:
        chain = [pod.ref, pod.owner, pod.workload]
    elif owned is not None:
        chain = [ref, owned.workload]
    else:
        chain = [ref, *ctx.focus[:1]]
    return [str(r) for r in dict.fromkeys(r for r in chain if r is not None)]


def _jumped_templates(ctx: Context) -> list[str]:
    jumped = sorted((t for view in ctx.logs for t in view.templates if t.jumped), key=lambda t: -t.recent)
    return list(dict.fromkeys(t.template for t in jumped))[:MAX_JUMPED_TEMPLATES]


def build_report(ctx: Context, diagnosis: Diagnosis) -> dict[str, Any]:
    report = {
        "version": VERSION, "subject": diagnosis.subject, "inconclusive": diagnosis.inconclusive,
        "hypotheses": [_hypothesis(h) for h in diagnosis.hypotheses],
        "gaps": [{"what": g.what, "why": g.why} for g in diagnosis.gaps],
        "nearby": broken_nearby(ctx, diagnosis.hypotheses),
        "timings": {k: round(v, 4) for k, v in ctx.timings.items()},
        "graph": _graph(ctx, diagnosis), "material": _material(ctx, diagnosis),
        "now": ctx.now.timestamp(), "owners": _owners(ctx, diagnosis), "log_templates": _jumped_templates(ctx),
    }
    return redact_data(report)


def rca_text(report: dict[str, Any]) -> str:
    """The RCA as one plain text (what `opsbot eval` searches for mentions, and the PagerDuty note)."""
    lines = [report.get("subject", "")]
    for index, h in enumerate(report.get("hypotheses") or []):
        lines.append(f"{index + 1}. [{h['category']}] {h['resource']}: {h['summary']}")
        if index == 0:
            lines += [f"- {e['text']}" for e in h.get("supporting") or []]
            lines += [f"- against: {e['text']}" for e in h.get("contradicting") or []]
            lines.append(f"Next: {h.get('action', '')}")
    lines += [f"Also broken nearby: {line}" for line in report.get("nearby") or []]
    lines += [f"Could not check {g['what']}: {g['why']}" for g in report.get("gaps") or []]
    return "\n".join(lines)


def timeline_payload(report: dict[str, Any]) -> dict[str, Any]:
    """The short form recorded on the timeline: the ranking, not the evidence text."""
    return {"subject": report.get("subject"), "inconclusive": report.get("inconclusive"),
            "hypotheses": [{k: h[k] for k in ("category", "resource", "confidence")}
                           for h in (report.get("hypotheses") or [])[:5]],
            "gaps": [g["what"] for g in report.get("gaps") or []][:10], "timings": report.get("timings"),
            **({"similar": [s["incident"] for s in report["similar"]]} if report.get("similar") else {})}
