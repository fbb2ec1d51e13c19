"""Answers to questions asked in an incident thread, from the incident's own evidence.

Three parts, kept apart:
- `load_evidence` (queries only): the incident's state (the catch-up view), its latest stored
  RCA (`Investigation.result`, shape in `bot.diagnosis.report`), its proposals with their
  policy decisions, and the policy's approver groups. Nothing is gathered anew: an answer says
  what the bot found and stored, never something it did not check.
- `build_answer` (pure): one builder per intent, declared in `BUILDERS`, from that evidence to
  an `Answer` (untrusted text lines, escaped by the renderer); no intent is "not understood",
  which lists what can be answered. Every answer names its source (which RCA, when), and says
  so when the evidence it needs is not there instead of inventing it.
- `ThreadQuestions.answer` (the flow): load, build, post in the thread through the gateway
  (which redacts everything), share the stored graph as a PNG when asked for it, and record
  `ask.answered` on the timeline. A Slack failure is logged and recorded as `slack.failed`,
  never raised: a question can never break the listener.

The graph intent re-renders the graph stored with the RCA (`bot.slack.graph`), and says from when
the data is; a signal named in the question ("graph error rate", "memory") is queried from
Prometheus now instead (`bot.ask.fresh_graph`), or the answer says why it could not be.

Slack's retries of one event are dropped before the listener (`bot.slack.inbound`, by
`event_id`), so a question is answered once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.ask.fresh_graph import fresh_graph, wanted_signal
from bot.ask.intents import INTENTS, Intent, match
from bot.clock import Clock
from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Proposal
from bot.incidents import investigations
from bot.incidents.catchup import CatchUpView, catchup_view
from bot.incidents.service import incident_of_message
from bot.policy.model import Policy
from bot.slack.gateway import SlackError, SlackGateway
from bot.slack.graph import render_graph
from bot.slack.render.answers import render_answer
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
MAX_EVIDENCE = 5
MAX_LOG_LINES = 15
MAX_ITEMS = 8
WAITING = ("proposed", "unverified")  # a person's decision is awaited
APPLIED = ("running", "verifying", "succeeded", "failed", "rolled_back", "rollback_failed", "unverified",
           "accepted", "rollback_requested", "rolling_back", "unverified_expired")


@dataclass(frozen=True)
class Line:
    """One line of an answer: `text` is untrusted (escaped by the renderer); `code` lines are
    shown preformatted; `people` are Slack user ids shown as mentions after the text."""

    text: str
    code: bool = False
    people: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    reference: str
    intent: str | None  # None: the question was not understood
    heading: str
    lines: tuple[Line, ...]
    source: str  # where the answer comes from, shown under it
    graph: dict[str, Any] | None = None  # the stored graph, shared as a PNG after the message


@dataclass(frozen=True)
class StepFacts:
    id: int
    runbook: str
    target: str
    status: str
    approver_groups: tuple[str, ...]
    approvals_needed: int


@dataclass(frozen=True)
class GroupFacts:
    """An approver group as the policy declares it (its live members are resolved at click time)."""

    users: tuple[str, ...]
    slack_usergroup: str | None
    pagerduty: bool


@dataclass(frozen=True)
class Evidence:
    incident: CatchUpView
    report: dict[str, Any]  # the latest finished RCA; empty when there is none
    rca_status: str | None  # the latest investigation's status (None: never investigated)
    rca_round: int | None
    rca_at: datetime | None
    files_shared: bool
    steps: tuple[StepFacts, ...] = ()
    groups: dict[str, GroupFacts] = field(default_factory=dict)


def _groups(policy: Policy | None) -> dict[str, GroupFacts]:
    if policy is None:
        return {}
    return {name: GroupFacts(tuple(group.users), group.slack_usergroup, group.uses_pagerduty)
            for name, group in policy.approver_groups.items()}


def load_evidence(session: Session, incident: Incident, policy: Policy | None) -> Evidence:
    """What the answers read about `incident`, loaded in one snapshot (queries only)."""
    row = investigations.latest_for(session, incident.id)
    proposals = session.execute(select(Proposal).where(Proposal.incident_id == incident.id)
                                .order_by(Proposal.id)).scalars().all()
    steps = tuple(StepFacts(p.id, p.runbook_id, p.target, p.status,
                            tuple((p.decision or {}).get("approver_groups") or ()),
                            int((p.decision or {}).get("approvals_needed") or 0)) for p in proposals)
    done = row is not None and row.status == "done"
    return Evidence(catchup_view(session, incident), (row.result or {}) if done else {},
                    row.status if row is not None else None, row.round if row is not None else None,
                    row.finished_at if row is not None else None,
                    bool(row is not None and row.files_posted_at), steps, _groups(policy))


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "an unknown time"


def _source(ev: Evidence) -> str:
    if ev.report:
        return f"From the root cause analysis stored at {_when(ev.rca_at)} (round {ev.rca_round})."
    if ev.rca_status in ("pending", "running"):
        return "The root cause analysis is still running: ask again when it is in the thread."
    if ev.rca_status is None:
        return "This incident has no root cause analysis."
    return "The root cause analysis did not finish, so there is no stored evidence."


def _evidence_lines(items: list[dict[str, Any]], prefix: str) -> list[Line]:
    return [Line(f"{prefix}{e.get('text', '')} ({e.get('source', '?')}: {e.get('ref', '')})")
            for e in items[:MAX_EVIDENCE]]


def _no_report(ev: Evidence, intent: Intent, heading: str) -> Answer:
    return Answer(ev.incident.reference, intent.name, heading, (Line("No stored evidence to answer from yet."),),
                  _source(ev))


def _why(ev: Evidence, intent: Intent) -> Answer:
    heading = f"Why {ev.incident.reference} happened"
    hypotheses = ev.report.get("hypotheses") or []
    if not ev.report:
        return _no_report(ev, intent, heading)
    if not hypotheses:
        lines = [Line("No analyzer found a cause: nothing checked explains the symptoms.")]
        return Answer(ev.incident.reference, intent.name, heading, tuple(lines), _source(ev))
    top = hypotheses[0]
    lines = [Line(f"{top.get('category')} on {top.get('resource')} "
                  f"(confidence {float(top.get('confidence') or 0) * 100:.0f} %): {top.get('summary')}")]
    if ev.report.get("inconclusive"):
        lines.append(Line("The analysis is inconclusive: treat this as the best lead, not the cause."))
    lines += _evidence_lines(top.get("supporting") or [], "For: ")
    lines += _evidence_lines(top.get("contradicting") or [], "Against: ")
    if top.get("action"):
        lines.append(Line(f"Next step: {top['action']}"))
    others = [f"{h.get('category')} ({float(h.get('confidence') or 0) * 100:.0f} %)" for h in hypotheses[1:4]]
    if others:
        lines.append(Line("Also weighed: " + ", ".join(others)))
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), _source(ev))


def _rollout_diff(material: dict[str, Any] | None) -> list[Line]:
    """The rollout diff sections of the evidence file (`# ref: revision a -> b` and its lines)."""
    lines: list[Line] = []
    section = False
    for text in str((material or {}).get("text") or "").splitlines():
        if text.startswith("# "):
            section = " revision " in text and " -> " in text
            if section:
                lines.append(Line(text[2:]))
        elif section and text.strip():
            lines.append(Line(text, code=True))
    return lines[:MAX_ITEMS * 2]


def _changed(ev: Evidence, intent: Intent) -> Answer:
    heading = f"What changed around {ev.incident.reference}"
    lines = _rollout_diff(ev.report.get("material"))
    seen = {line.text for line in lines}
    for hypothesis in ev.report.get("hypotheses") or []:
        for item in hypothesis.get("supporting") or []:
            if item.get("source") == "rollout" and item.get("text") not in seen:
                seen.add(item.get("text"))
                lines.append(Line(f"{item.get('text')} ({item.get('ref', '')})"))
    marks = [m for m in ((ev.report.get("graph") or {}).get("marks") or []) if m.get("label") != "alert fired"]
    lines += [Line(f"{m['label']} at {_when(datetime.fromtimestamp(m['at'], UTC))}") for m in marks[:MAX_ITEMS]]
    lines += [Line(f"P-{s.id} {s.runbook} on {s.target} (the bot's step): {s.status.replace('_', ' ')}")
              for s in ev.steps if s.status in APPLIED][:MAX_ITEMS]
    if not lines:
        lines = [Line("Nothing: no rollout, configuration change or step was found in the stored evidence"
                      + ("" if ev.report else " (there is none yet)") + ".")]
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), _source(ev))


def _checked(ev: Evidence, intent: Intent) -> Answer:
    heading = f"What was checked for {ev.incident.reference}"
    if not ev.report:
        return _no_report(ev, intent, heading)
    timings = ev.report.get("timings") or {}
    lines = [Line(f"Checked: {', '.join(f'{name} ({seconds:.2f} s)' for name, seconds in timings.items())}")] \
        if timings else [Line("Checked: nothing was gathered.")]
    hypotheses = ev.report.get("hypotheses") or []
    lines.append(Line(f"Weighed {len(hypotheses)} hypothes{'is' if len(hypotheses) == 1 else 'es'}"
                      + (": " + ", ".join(str(h.get("category")) for h in hypotheses[:MAX_ITEMS]) if hypotheses
                         else ".")))
    gaps = ev.report.get("gaps") or []
    lines += [Line(f"Could not check {g.get('what')}: {g.get('why')}") for g in gaps[:MAX_ITEMS]]
    if not gaps:
        lines.append(Line("Nothing was left unchecked: every source answered."))
    nearby = ev.report.get("nearby") or []
    if nearby:
        lines.append(Line("Also broken nearby: " + "; ".join(map(str, nearby[:MAX_ITEMS]))))
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), _source(ev))


def _log_tail(material: dict[str, Any] | None) -> list[Line]:
    """The last lines of the first log section in the evidence file."""
    sections: list[tuple[str, list[str]]] = []
    for text in str((material or {}).get("text") or "").splitlines():
        if text.startswith("# logs of "):
            sections.append((text[2:], []))
        elif text.startswith("# "):
            sections.append(("", []))
        elif sections and sections[-1][0] and text.strip():
            sections[-1][1].append(text)
    for title, lines in sections:
        if title and lines:
            return [Line(f"The last lines of the {title}:")] + [Line(t, code=True) for t in lines[-MAX_LOG_LINES:]]
    return []


def _logs(ev: Evidence, intent: Intent) -> Answer:
    heading = f"Logs of {ev.incident.reference}"
    if not ev.report:
        return _no_report(ev, intent, heading)
    templates = ev.report.get("log_templates") or []
    lines: list[Line] = []
    if templates:
        lines = [Line("Log templates whose rate jumped:")] + [Line(t, code=True) for t in templates[:MAX_ITEMS]]
    lines += _log_tail(ev.report.get("material"))
    logged = [e for h in (ev.report.get("hypotheses") or [])[:1] for e in (h.get("supporting") or [])
              if e.get("source") == "log"]
    if not lines:
        lines = _evidence_lines(logged, "") or [Line("No log lines were stored with the analysis.")]
    if ev.files_shared and ev.report.get("material"):
        lines.append(Line(f"The full evidence file ({ev.report['material'].get('filename')}) is in this thread."))
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), _source(ev))


def _graph(ev: Evidence, intent: Intent) -> Answer:
    heading = f"Graph for {ev.incident.reference}"
    graph = ev.report.get("graph")
    if not graph:
        if not ev.report:
            return _no_report(ev, intent, heading)
        lines = (Line("No graph was stored with the analysis: no signal had data when it ran."),)
        return Answer(ev.incident.reference, intent.name, heading, lines, _source(ev))
    series = graph.get("series") or []
    lines = [Line(f"{graph.get('title')} ({len(series)} series), image below."),
             Line(str(graph.get("query") or ""), code=True)]
    lines += [Line(f"{m['label']} at {_when(datetime.fromtimestamp(m['at'], UTC))}")
              for m in (graph.get("marks") or [])[:MAX_ITEMS]]
    source = _source(ev) + " The graph is the one stored then; Prometheus was not queried again."
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), source, graph)


def _approvers(ev: Evidence, intent: Intent) -> Answer:
    heading = f"Who can approve in {ev.incident.reference}"
    waiting = [s for s in ev.steps if s.status in WAITING]
    lines: list[Line] = []
    for step in waiting[:MAX_ITEMS]:
        needs = f"{step.approvals_needed} approval{'s' if step.approvals_needed != 1 else ''}"
        lines.append(Line(f"P-{step.id} {step.runbook} on {step.target} ({step.status}) needs {needs} from: "
                          f"{', '.join(step.approver_groups) or 'no group'}"))
    names = dict.fromkeys(g for s in (waiting or ev.steps) for g in s.approver_groups)
    for name in names:
        group = ev.groups.get(name)
        if group is None:
            lines.append(Line(f"{name}: not in the policy loaded now"))
            continue
        also = ([f"Slack user group {group.slack_usergroup}"] if group.slack_usergroup else []) + \
            (["whoever PagerDuty has on call"] if group.pagerduty else [])
        lines.append(Line(f"{name}:" + (f" {', '.join(also)}" if also else ""), people=group.users))
    if not waiting:
        lines.insert(0, Line("No step is waiting for approval." + (" The steps proposed were approvable by:"
                                                                   if names else "")))
    source = "From the incident's proposals and the policy loaded now; membership is checked again at each click."
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines), source)


def _status(ev: Evidence, intent: Intent) -> Answer:
    view = ev.incident
    lines = [Line(f"{view.status.replace('_', ' ')}, severity {view.severity}"
                  + (f", resolved by {view.resolved_by}" if view.resolved_by else "")),
             Line("Commander:" if view.commander else "Commander: nobody yet",
                  people=(view.commander,) if view.commander else ()),
             Line(f"Cause: {view.cause}")]
    lines += [Line(f"Step {s}") for s in view.steps]
    if view.latest_update:
        lines.append(Line(f"Latest update ({_when(view.latest_update_at)}): {view.latest_update}"))
    lines += [Line(f"Follow-up {text}", people=(owner,) if owner else ()) for text, owner in view.follow_ups]
    return Answer(view.reference, intent.name, f"{view.reference} · {view.title}", tuple(lines),
                  "From the incident as it stands now.")


def _similar(ev: Evidence, intent: Intent) -> Answer:
    heading = f"Incidents like {ev.incident.reference}"
    if not ev.report:
        return _no_report(ev, intent, heading)
    similar = ev.report.get("similar") or []
    lines = [Line(f"{item.get('incident')} ({float(item.get('score') or 0) * 100:.0f} % similar: "
                  f"{'; '.join(item.get('reasons') or [])}): {item.get('title')}. Was {item.get('category')}"
                  f" on {item.get('resource')}; {str(item.get('resolution') or 'unknown').replace('-', ' ')}"
                  + (f" with {item['fixed_by']}" if item.get("fixed_by") else "") + ".")
             for item in similar[:MAX_ITEMS]]
    if not lines:
        lines = [Line("None: no past incident in the memory resembles this one.")]
    return Answer(ev.incident.reference, intent.name, heading, tuple(lines),
                  _source(ev) + " Past incidents are leads to check, not this incident's cause.")


BUILDERS: dict[str, Callable[[Evidence, Intent], Answer]] = {
    "why": _why, "changed": _changed, "checked": _checked, "logs": _logs, "graph": _graph,
    "approvers": _approvers, "status": _status, "similar": _similar,
}


def not_understood(reference: str) -> Answer:
    """What the bot says to a question no intent matches: what it can answer, with examples."""
    lines = tuple(Line(f"“{i.example}” — {i.answers}") for i in INTENTS)
    return Answer(reference, None, f"I can't answer that from {reference}'s evidence. I can answer:", lines,
                  "Mention me in this thread with one of these questions.")


def build_answer(intent: Intent | None, ev: Evidence) -> Answer:
    """The answer to `intent` from `ev` (pure); None is the not-understood answer."""
    return not_understood(ev.incident.reference) if intent is None else BUILDERS[intent.name](ev, intent)


class ThreadQuestions:
    """Answers questions in incident threads (the app_mention listener calls it after acking)."""

    def __init__(self, factory: sessionmaker[Session], gateway: SlackGateway, clock: Clock,
                 policy: Callable[[], Policy | None] = lambda: None,
                 prometheus: Callable[[str | None], str | None] = lambda _cluster: None):
        """`policy`: the policy in force when a question is answered (read at each answer);
        `prometheus`: the Prometheus URL of a cluster, for a graph asked for by name."""
        self._factory, self._gateway, self._clock, self._policy = factory, gateway, clock, policy
        self._prometheus = prometheus

    def _fresh(self, stored: Answer, evidence: Evidence, key: str, cluster: str | None) -> Answer:
        """The named signal queried now (`bot.ask.fresh_graph`); else the stored graph, saying why."""
        now = self._clock()
        graph, why_not = fresh_graph(self._prometheus(cluster), evidence.report, key, now)
        if graph is None:
            return replace(stored, source=f"{stored.source} Asked for {key.replace('_', ' ')}: {why_not}.")
        lines = (Line(f"{graph['title']} ({len(graph['series'])} series), image below."),
                 Line(str(graph["query"]), code=True))
        return Answer(stored.reference, "graph", f"Graph of {key.replace('_', ' ')}", lines,
                      f"Queried from Prometheus at {_when(now)}.", graph)

    def incident_of_thread(self, channel: str | None, thread_ts: str | None) -> int | None:
        """The incident whose thread this is (its root is the incident's card), else None."""
        with reading(self._factory) as session:
            return incident_of_message(session, channel, thread_ts)

    def answer(self, incident_id: int, channel: str, thread_ts: str, question: str, user: str) -> Answer | None:
        """Answer `question` in the thread; None when the incident is gone. Never raises SlackError."""
        intent = match(question)
        with reading(self._factory) as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                return None
            evidence = load_evidence(session, incident, self._policy())
            answer, cluster = build_answer(intent, evidence), incident.cluster
        if intent is not None and intent.name == "graph" and (key := wanted_signal(question)):
            answer = self._fresh(answer, evidence, key, cluster)
        rendered = render_answer(answer)
        failure = None
        try:
            self._gateway.post_message(channel, rendered["text"], rendered["blocks"], thread_ts=thread_ts)
            if answer.graph is not None:
                png = render_graph(answer.graph)
                self._gateway.upload_files(channel, thread_ts, [(f"{answer.reference.lower()}-graph.png", png,
                                                                 str(answer.graph.get("title") or "graph"))])
        except SlackError as exc:
            log.warning("answer to a question in %s not posted: %s", answer.reference, exc)
            failure = exc
        with unit_of_work(self._factory) as session:
            now = self._clock()
            chain.append(session, incident_id, "ask.answered", f"slack:{user}",
                         {"intent": answer.intent, "posted": failure is None}, now)
            if failure is not None:
                chain.append(session, incident_id, "slack.failed", ACTOR,
                             {"method": failure.method, "error": failure.error, "answer": answer.intent}, now)
        return answer
