"""The postmortem's facts, read from the database only: nothing is inferred that no row says.

`postmortem_facts(session, incident_id)` returns plain data (JSON-ready) that the Markdown
template, `opsbot postmortem --format json` and, later, the Block Kit renderer all read:

- summary: title, severity, status, cluster/namespace/service, alert names and counts;
- key times (UTC, ISO 8601) and durations in seconds: first alert (earliest `startsAt`, else
  first seen), thread opened (`slack.card_posted`), acknowledged, diagnosed (the RCA's
  investigation finished), mitigated (the first step that succeeded), resolved; TTA, TTD, TTM
  and TTR are measured from the first alert, and absent when either end is;
- root cause: the stored RCA's first hypothesis with its confidence and evidence, or
  `unknown` (the RCA said so, or no RCA exists: then `rca` says why);
- actions: every proposed step with its policy decision, approvers, status, and the
  verification's numbers before and after;
- resolution: `bot-mitigated` (a step the bot proposed succeeded, verified, and the incident
  resolved after it), `bot-assisted` (the bot's RCA or steps were there, people resolved it),
  `human-resolved` (neither), or `open`;
- timeline: every entry in UTC, consecutive entries of the same kind folded into one with a
  count (the bot's own failures, `*.failed` and `slack.*`, are kept like any other);
- the incident's life: who declared it (if a person did), its commander, who or what resolved
  it (`source`, or the person's name) with their note, how many times it resolved (`resolution_number`:
  a reopened and re-resolved incident's postmortem says so), the latest status update, and
  its follow-ups (open and done).

Invariant: the same rows give the same facts (no clock is read); text that came from outside
(alert labels, log lines in evidence) was redacted when it was stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Alert, FollowUp, Incident, Investigation, Proposal, ProposalApproval, TimelineEntry

MAX_EVIDENCE = 5
SUCCEEDED = "succeeded"


class NoSuchIncident(LookupError):
    pass


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    return int((end - start).total_seconds()) if start and end and end >= start else None


def _first(entries: list[TimelineEntry], *kinds: str) -> datetime | None:
    return next((e.at for e in entries if e.kind in kinds), None)


def _folded(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    folded: list[dict[str, Any]] = []
    for entry in entries:
        last = folded[-1] if folded else None
        if last is not None and last["kind"] == entry.kind and last["actor"] == entry.actor:
            last["count"] += 1
            last["until"] = _iso(entry.at)
            continue
        folded.append({"at": _iso(entry.at), "kind": entry.kind, "actor": entry.actor, "count": 1,
                       "until": None, "detail": _detail(entry.payload or {})})
    return folded


def _detail(payload: dict[str, Any]) -> str:
    """One short line from a timeline payload: its most telling fields, in a fixed order."""
    keys = ("reason", "why", "cause", "runbook", "status", "by", "error", "note", "related", "follows")
    parts = [f"{k}={payload[k]}" for k in keys if payload.get(k) not in (None, "", [], {})]
    return ", ".join(str(p) for p in parts)[:200]


def _unknown(rca: str) -> dict[str, Any]:
    """The root cause when there is none to name; the same keys as a named one."""
    return {"category": "unknown", "resource": None, "confidence": None, "summary": None, "inconclusive": True,
            "evidence": [], "rca": rca}


def _root_cause(investigation: Investigation | None) -> dict[str, Any]:
    if investigation is None:
        return _unknown("no investigation was made")
    if investigation.status != "done" or not investigation.result:
        why = (investigation.result or {}).get("skipped") or investigation.error or investigation.status
        return _unknown(f"no RCA: {why}")
    report = investigation.result
    hypotheses = report.get("hypotheses") or []
    if not hypotheses:
        return _unknown("the RCA found no cause")
    top = hypotheses[0]
    return {"category": top.get("category"), "resource": top.get("resource"), "confidence": top.get("confidence"),
            "summary": top.get("summary"), "inconclusive": bool(report.get("inconclusive")),
            "evidence": [e.get("text") for e in (top.get("supporting") or [])[:MAX_EVIDENCE]],
            "rca": "the bot's RCA"}


def _actions(session: Session, incident_id: int) -> list[dict[str, Any]]:
    proposals = session.execute(select(Proposal).where(Proposal.incident_id == incident_id)
                                .order_by(Proposal.created_at, Proposal.id)).scalars().all()
    actions = []
    for proposal in proposals:
        approvers = session.execute(select(ProposalApproval.user_id).where(
            ProposalApproval.proposal_id == proposal.id).order_by(ProposalApproval.at)).scalars().all()
        result = proposal.result or {}
        actions.append({
            "proposal": f"P-{proposal.id}", "runbook": proposal.runbook_id, "title": proposal.title,
            "target": proposal.target, "requested_by": proposal.requested_by, "status": proposal.status,
            "policy": (proposal.decision or {}).get("decision"), "policy_reason": (proposal.decision or {}).get("reason"),
            "approvers": list(approvers), "rejected_by": proposal.rejected_by,
            "started_at": _iso(proposal.started_at), "finished_at": _iso(proposal.finished_at),
            "verification": {k: result[k] for k in ("before", "after", "error") if k in result},
        })
    return actions


def resolution_kind(incident: Incident, root: dict[str, Any], actions: list[dict[str, Any]],
                    mitigated_at: datetime | None) -> str:
    if incident.resolved_at is None:  # kept when a resolved incident is later closed
        return "open" if incident.is_open else incident.status
    bot_steps = [a for a in actions if a["status"] == SUCCEEDED and a["requested_by"].startswith("opsbot")]
    if bot_steps and mitigated_at and incident.resolved_at and mitigated_at <= incident.resolved_at:
        return "bot-mitigated"
    if actions or root.get("rca") == "the bot's RCA":
        return "bot-assisted"
    return "human-resolved"


def _follow_ups(session: Session, incident_id: int) -> list[dict[str, Any]]:
    rows = session.execute(select(FollowUp).where(FollowUp.incident_id == incident_id)
                           .order_by(FollowUp.id)).scalars().all()
    return [{"id": f"F-{row.id}", "text": row.text, "owner": row.owner, "created_by": row.created_by,
             "done": row.closed_at is not None, "closed_by": row.closed_by} for row in rows]


def postmortem_facts(session: Session, incident_id: int) -> dict[str, Any]:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NoSuchIncident(f"INC-{incident_id} does not exist")
    alerts = session.execute(select(Alert).where(Alert.incident_id == incident_id)).scalars().all()
    entries = session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                              .order_by(TimelineEntry.seq)).scalars().all()
    investigation = session.execute(select(Investigation).where(Investigation.incident_id == incident_id)
                                    .order_by(Investigation.round.desc())).scalars().first()
    first_alert = min((a.starts_at or a.first_seen_at for a in alerts), default=None) or incident.created_at
    actions = _actions(session, incident_id)
    mitigated = min((datetime.fromisoformat(a["finished_at"].replace("Z", "+00:00")) for a in actions
                     if a["status"] == SUCCEEDED and a["finished_at"]), default=None)
    times = {"first_alert": first_alert, "opened": incident.created_at,
             "thread_opened": _first(entries, "slack.card_posted"),
             "acknowledged": _first(entries, "incident.acknowledged"),
             "diagnosed": investigation.finished_at if investigation and investigation.status == "done" else None,
             "mitigated": mitigated, "resolved": incident.resolved_at}
    root = _root_cause(investigation)
    names = sorted({a.name for a in alerts})
    return {
        "incident": f"INC-{incident.id}", "title": incident.title, "severity": incident.severity,
        "status": incident.status, "cluster": incident.cluster, "namespace": incident.namespace,
        "service": incident.service, "source": incident.source, "declared_by": incident.declared_by,
        "commander": incident.commander, "resolved_by": incident.resolved_by,
        "resolution_note": incident.resolution_note, "resolution_number": incident.resolutions,
        "latest_update": incident.latest_update, "follow_ups": _follow_ups(session, incident_id),
        "alerts": {"names": names, "count": len(alerts), "firing": sum(a.status == "firing" for a in alerts)},
        "times": {key: _iso(value) for key, value in times.items()},
        "durations": {"tta": _seconds(first_alert, times["acknowledged"]),
                      "ttd": _seconds(first_alert, times["diagnosed"]),
                      "ttm": _seconds(first_alert, times["mitigated"]),
                      "ttr": _seconds(first_alert, times["resolved"])},
        "root_cause": root, "actions": actions,
        "resolution": resolution_kind(incident, root, actions, mitigated),
        "reopened": sum(e.kind == "incident.reopened" for e in entries),
        "timeline": _folded(list(entries)),
    }
