"""`/ops explain <target>` and `opsbot explain <target>`: an answer from stored evidence only.

Three targets are answered, each from rows the bot already wrote (nothing is inferred that no
row or file says, and no model is asked):

- `INC-12`: what happened (the incident's own row and its alerts), the cause with its confidence
  (or "unknown" and what was not explained), three to five lines of evidence, what was proposed
  and why, what ran, what is pending and on whom, and similar past incidents (hypotheses to
  check, from `bot.postmortem.memory`). Built on the postmortem's facts, so both say the same.
- `P-17`: a proposed step's policy decision with every gate (as recorded when it was proposed),
  its plan and dry run, and who may approve it until when.
- a runbook id: what it does, its parameters, its verification and rollback, and its autonomy
  level in each environment the policy declares.
- an alert name (`bot.ask.explain_alert`) and a workload such as `deploy/shop/checkout`
  (`bot.ask.explain_workload`): these also read Prometheus or Kubernetes, once, before the
  snapshot is opened (`gather`); what could not be read is a line of the answer. A runbook id
  wins over an alert name spelled the same.

Anything else is `NotAnswered` naming the forms that are answered. `visibility_refusal` says
when the asker may not see a target: an incident or a step is shown only in a channel the
policy's `channels` allow (when it lists any); runbooks are the team's configuration, not
incident data, and are shown anywhere; alerts and workloads list incidents, so they are not.

Invariants: reads only (one snapshot, never a write); `Explanation` holds plain text (the Slack
and terminal renderers escape and lay it out, so both say exactly the same); the same rows
give the same explanation (no clock is read, but the terminal's for an alert's 30 days); secret
parameters are masked (the plan lists them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.engine import reading
from bot.db.models import Investigation, Proposal, TimelineEntry
from bot.diagnosis.model import CATEGORY_TITLES
from bot.policy.engine import autonomy_for
from bot.policy.model import Environment, Policy
from bot.postmortem.facts import NoSuchIncident, postmortem_facts
from bot.postmortem.memory import MIN_SCORE, similar
from bot.remediation import store
from bot.remediation.catalog import Catalog
from bot.remediation.propose import MASK
from bot.remediation.runbook_model import Runbook
from bot.slack.render.proposal import STATES

if TYPE_CHECKING:
    from bot.context.clusters import ClusterDirectory
    from bot.remediation.kit import RemediationKit

FORMS = ("INC-12 (an incident)", "P-17 (a proposed step)", "a runbook id such as restart-deployment",
         "an alert name such as KubePodCrashLooping", "a workload such as deploy/shop/checkout")
MIN_EVIDENCE, MAX_EVIDENCE = 3, 5
MAX_SIMILAR = 3
MAX_DIFF = 8
PENDING = ("proposed", "approved", "running", "verifying", "unverified", "rollback_requested", "rolling_back")
RAN = ("running", "verifying", "succeeded", "failed", "rolled_back", "rollback_failed", "unverified", "accepted",
       "unverified_expired", "rollback_requested", "rolling_back")
GATE_MARK = {"pass": "✓", "deny": "✗", "needs_approval": "…"}
_INCIDENT = re.compile(r"(?i)inc-(\d{1,18})")
_PROPOSAL = re.compile(r"(?i)p-(\d{1,18})")


@dataclass(frozen=True)
class Part:
    """One section of the answer: a heading and its lines (plain text, unescaped)."""

    heading: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    target: str  # "INC-12", "P-17", "runbook restart-deployment"
    headline: str
    parts: tuple[Part, ...]


class NotAnswered(ValueError):
    """A target that is not explained: an unknown form, or a reference to nothing. One line."""


class Refused(NotAnswered):
    """A target the asker may not see from where they asked. One line."""


@dataclass(frozen=True)
class Target:
    kind: str  # incident | proposal | runbook | alert | workload
    key: str  # the id (digits), the runbook id, the alert name or `Kind/namespace/name`


def parse_target(text: str, catalog: Catalog, rule_names: Callable[[], set[str]] | None = None) -> Target:
    """`INC-12`, `P-17` (any case), a runbook id of the catalog, a workload (`deploy/ns/name`),
    a CamelCase alert name or any alerting rule `rule_names()` knows; NotAnswered otherwise."""
    from bot.ask.explain_alert import looks_like_alert
    from bot.ask.explain_workload import parse_workload

    word = text.strip()
    if found := _INCIDENT.fullmatch(word):
        return Target("incident", found.group(1))
    if found := _PROPOSAL.fullmatch(word):
        return Target("proposal", found.group(1))
    if catalog.get(word) is not None:
        return Target("runbook", word)
    if workload := parse_workload(word):
        return Target("workload", str(workload))
    if looks_like_alert(word) or (word and rule_names is not None and word in rule_names()):
        return Target("alert", word)
    _not_answered(word if len(word) <= 40 else word[:39] + "…")


def _not_answered(word: str) -> NoReturn:
    what = f"Nothing to explain for {word!r}" if word else "Explain what?"
    raise NotAnswered(f"{what}: /ops explain answers {', '.join(FORMS[:-1])} or {FORMS[-1]}.")


def _label(target: Target) -> str:
    return {"incident": "INC-", "proposal": "P-"}.get(target.kind, f"{target.kind} ") + target.key


def visibility_refusal(policy: Policy, target: Target, channel_id: str | None, channel_name: str | None) -> str | None:
    """Why the asker may not see `target` from this channel, or None. Where the policy lists
    `channels` (ids or names), incidents and steps are explained only in those; the terminal
    (no channel: whoever runs it reads the database already) is never refused."""
    if target.kind == "runbook" or not policy.channels or (channel_id is None and channel_name is None):
        return None
    names = {channel_id, channel_name, f"#{channel_name}" if channel_name else None} - {None}
    if names & set(policy.channels):
        return None
    return (f"{_label(target)} is not explained in this channel: "
            "the policy shows incidents and steps only in its listed channels.")


def answer(kit: RemediationKit, text: str, channel_id: str | None, channel_name: str | None) -> Explanation:
    """`/ops explain <text>` asked in a channel: parsed, checked against the policy's channels,
    then read in one snapshot. NotAnswered (or Refused) carries the one line to say instead.
    Prometheus' rules are asked for at most once: to recognise a rule name, then to explain it."""
    from bot.ask.explain_alert import read_rules

    rules: list = []

    def rule_names() -> set[str]:
        rules[:] = rules or [read_rules(kit.clusters)]
        return rules[0].names()

    target = parse_target(text, kit.catalog, rule_names)
    refusal = visibility_refusal(kit.policy, target, channel_id, channel_name)
    if refusal:
        raise Refused(refusal)
    outside = rules[0] if rules and target.kind == "alert" else gather(kit.factory, kit.clusters, target)
    with reading(kit.factory) as session:
        return explain(session, target, kit.catalog, kit.policy, outside, kit.clock())


def gather(factory, clusters: ClusterDirectory, target: Target) -> Any:
    """What an alert or workload answer reads outside the database (Prometheus' rules, the
    workload from Kubernetes), before the snapshot opens; None for the other targets."""
    from bot.ask import explain_alert, explain_workload

    if target.kind == "alert":
        return explain_alert.read_rules(clusters)
    if target.kind != "workload":
        return None
    ref = explain_workload.parse_ref(target.key)
    with reading(factory) as session:
        cluster = explain_workload.latest_cluster(session, ref)
    return explain_workload.read_workload(clusters, cluster, ref)


def explain(session: Session, target: Target, catalog: Catalog, policy: Policy, outside: Any = None,
            now: datetime | None = None) -> Explanation:
    """The explanation of a parsed target; NotAnswered when it refers to nothing. `outside` is
    `gather`'s read (without it, an alert or workload answer says Prometheus or Kubernetes was
    not asked); `now` ends an alert's 30 days (the terminal passes none: the current time)."""
    from bot.ask import explain_alert, explain_workload

    if target.kind == "alert":
        read = outside or explain_alert.RulesRead(failures=("Could not read the rule: Prometheus was not asked.",))
        return explain_alert.explain_alert(session, target.key, read, now or datetime.now(UTC))
    if target.kind == "workload":
        ref = explain_workload.parse_ref(target.key)
        read = outside or explain_workload.WorkloadRead(None, failures=["Kubernetes was not asked."])
        return explain_workload.explain_workload(session, ref, read, catalog, policy)
    if target.kind == "incident":
        return explain_incident(session, int(target.key))
    if target.kind == "proposal":
        return explain_proposal(session, int(target.key), catalog, policy)
    runbook = catalog.get(target.key)
    if runbook is None:
        _not_answered(target.key)
    return explain_runbook(runbook, policy)


def _when(moment: datetime | str | None) -> str:
    """A time as people read it in UTC; `facts` carry ISO strings, rows datetimes."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _confidence(value: float | None) -> str:
    if value is None:
        return "confidence unknown"
    words = "high" if value >= 0.85 else "medium" if value >= 0.6 else "low"
    return f"confidence {value:.2f} ({words})"


# -- INC-N --------------------------------------------------------------------------------

def explain_incident(session: Session, incident_id: int) -> Explanation:
    try:
        facts = postmortem_facts(session, incident_id)
    except NoSuchIncident:
        raise NotAnswered(f"INC-{incident_id} does not exist.") from None
    report = _report(session, incident_id)
    proposals = {f"P-{p.id}": p for p in store.of_incident(session, incident_id)}
    considered = _considered(session, incident_id)
    parts = (_happened(facts), _cause(facts, report), _evidence(report),
             _proposed(facts, considered), _ran(facts), _pending(facts, proposals),
             _similar(session, incident_id))
    where = " / ".join(x for x in (facts["cluster"], facts["namespace"], facts["service"]) if x)
    headline = (f"{facts['incident']}: {facts['title']} — severity {facts['severity']}, {facts['status']}"
                + (f" ({where})" if where else ""))
    return Explanation(facts["incident"], headline, parts)


def _report(session: Session, incident_id: int) -> dict[str, Any] | None:
    latest = session.execute(select(Investigation).where(Investigation.incident_id == incident_id)
                             .order_by(Investigation.round.desc())).scalars().first()
    return latest.result if latest is not None and latest.status == "done" and latest.result else None


def _considered(session: Session, incident_id: int) -> dict[str, Any]:
    """The last `remediation.considered` entry: the cause the bot proposed steps for."""
    entry = session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id,
                                                        TimelineEntry.kind == "remediation.considered")
                            .order_by(TimelineEntry.seq.desc())).scalars().first()
    return (entry.payload or {}) if entry is not None else {}


def _happened(facts: dict[str, Any]) -> Part:
    alerts = facts["alerts"]
    names = ", ".join(alerts["names"][:5]) + (f" and {len(alerts['names']) - 5} more" if len(alerts["names"]) > 5
                                              else "")
    opened = (f"declared by {facts['declared_by']}" if facts["declared_by"] else f"from {facts['source']}")
    lines = [f"Opened {_when(facts['times']['opened'])} {opened}: {alerts['count']} alert(s), "
             f"{alerts['firing']} firing" + (f" ({names})" if names else "") + "."]
    times = facts["times"]
    if times["acknowledged"]:
        lines.append(f"Acknowledged {_when(times['acknowledged'])}.")
    if facts["commander"]:
        lines.append(f"Commander: {facts['commander']}.")
    if facts["latest_update"]:
        lines.append(f"Latest update: {facts['latest_update']}")
    if times["resolved"]:
        note = f": {facts['resolution_note']}" if facts["resolution_note"] else ""
        lines.append(f"Resolved {_when(times['resolved'])} by {facts['resolved_by'] or 'unknown'} "
                     f"({facts['resolution']}){note}.")
    if facts["reopened"]:
        lines.append(f"Reopened {facts['reopened']} time(s).")
    return Part("What happened", tuple(lines))


def _cause(facts: dict[str, Any], report: dict[str, Any] | None) -> Part:
    root = facts["root_cause"]
    gaps = (report or {}).get("gaps") or []
    not_checked = [f"could not check {g.get('what')}: {g.get('why')}" for g in gaps[:3]]
    if root["category"] in ("unknown", None):
        lines = [f"Unknown ({root['rca']})."]
        if root.get("evidence"):
            lines.append("Not explained by any rule: " + "; ".join(root["evidence"][:MAX_EVIDENCE]) + ".")
        return Part("Cause", tuple(lines + not_checked))
    title = CATEGORY_TITLES.get(root["category"], root["category"])
    sure = "inconclusive: the evidence points several ways" if root["inconclusive"] else _confidence(
        root["confidence"])
    on = f" on {root['resource']}" if root["resource"] else ""
    return Part("Cause", (f"{title}{on}, {sure}.", f"{root['summary']}", *not_checked))


def _evidence(report: dict[str, Any] | None) -> Part:
    top = ((report or {}).get("hypotheses") or [{}])[0]
    items = (top.get("supporting") or [])[:MAX_EVIDENCE]
    if not items:
        return Part("Evidence", ("No evidence stored: the RCA supported no cause.",))
    lines = [f"{e.get('text')} ({e.get('ref')})" for e in items]
    if len(lines) < MIN_EVIDENCE:
        lines.append(f"(only {len(lines)} line(s) of evidence stored)")
    return Part("Evidence", tuple(lines))


def _proposed(facts: dict[str, Any], considered: dict[str, Any]) -> Part:
    actions = facts["actions"]
    if not actions:
        why = considered.get("why") or ("no runbook matched the cause" if considered else "the bot considered no step")
        return Part("Proposed", (f"Nothing ({why}).",))
    lines = []
    for action in actions:
        asked = ("the bot, for the cause " + str(considered.get("cause") or "of its RCA")
                 if action["requested_by"].startswith("opsbot") else f"asked for by {action['requested_by']}")
        lines.append(f"{action['proposal']} {action['runbook']} on {action['target']} ({asked}); "
                     f"policy: {action['policy']}: {action['policy_reason']}.")
    return Part("Proposed", tuple(lines))


def _ran(facts: dict[str, Any]) -> Part:
    lines = []
    for action in facts["actions"]:
        if action["status"] not in RAN:
            continue
        approved = f", approved by {', '.join(action['approvers'])}" if action["approvers"] else ""
        check = action["verification"]
        numbers = (f"; check before {check.get('before')}, after {check.get('after')}"
                   if "before" in check or "after" in check else "")
        error = f"; {check['error']}" if check.get("error") else ""
        lines.append(f"{action['proposal']} {STATES.get(action['status'], ('', action['status']))[1]} "
                     f"(started {_when(action['started_at'])}{approved}){numbers}{error}.")
    return Part("Ran", tuple(lines) or ("Nothing ran.",))


def _pending(facts: dict[str, Any], proposals: dict[str, Proposal]) -> Part:
    lines = []
    for action in facts["actions"]:
        row = proposals[action["proposal"]]
        if action["status"] == "proposed":
            decision = row.decision or {}
            groups = ", ".join(decision.get("approver_groups") or []) or "(no group)"
            lines.append(f"{action['proposal']} waits for {decision.get('approvals_needed', 1)} approval(s) from "
                         f"{groups}, until {_when(row.expires_at)}.")
        elif action["status"] == "unverified":
            lines.append(f"{action['proposal']} is applied but unverified: someone decides, Roll back or Accept.")
        elif action["status"] in PENDING:
            lines.append(f"{action['proposal']} is {STATES.get(action['status'], ('', action['status']))[1]}; "
                         "the bot carries it on.")
    for item in facts["follow_ups"]:
        if not item["done"]:
            lines.append(f"{item['id']} {item['text']} (on {item['owner'] or 'nobody yet'}).")
    return Part("Pending", tuple(lines) or ("Nothing.",))


def _similar(session: Session, incident_id: int) -> Part:
    found = similar(session, incident_id, MAX_SIMILAR)
    if not found:
        return Part("Similar past incidents", (f"None reaches the minimum similarity of {MIN_SCORE:.2f}.",))
    lines = [f"{past.reference} ({past.score * 100:.0f} % similar: {'; '.join(past.reasons)}): {past.title}; was "
             f"{CATEGORY_TITLES.get(past.category, past.category)}, {past.resolution}"
             + (f", step {past.fixed_by}" if past.fixed_by else "") + "." for past in found]
    return Part("Similar past incidents — hypotheses to check, not the cause", tuple(lines))


# -- P-N ----------------------------------------------------------------------------------

def explain_proposal(session: Session, proposal_id: int, catalog: Catalog, policy: Policy) -> Explanation:
    row = session.get(Proposal, proposal_id)
    if row is None:
        raise NotAnswered(f"P-{proposal_id} does not exist.")
    state = STATES.get(row.status, ("", row.status))[1]
    headline = f"P-{row.id}: {row.title} — {state} (INC-{row.incident_id}, runbook {row.runbook_id})"
    return Explanation(f"P-{row.id}", headline, (_decision(row), _plan(row), _dry_run(row),
                                                  _approval(session, row, catalog, policy)))


def _decision(row: Proposal) -> Part:
    decision = row.decision or {}
    lines = [f"{decision.get('decision', 'none recorded')} (rule {decision.get('rule', '—')}): "
             f"{decision.get('reason', '—')}; decided when proposed, {_when(row.created_at)}."]
    if decision.get("hint"):
        lines.append(f"Hint: {decision['hint']}.")
    lines.append(f"Autonomy: {decision.get('autonomy', row.autonomy)}.")
    lines += [f"{GATE_MARK.get(g.get('outcome'), '?')} {g.get('gate')}: {g.get('reason')} (rule {g.get('rule')})"
              for g in decision.get("gates") or []]
    lines.append("It is decided again when a button is clicked and just before the step runs.")
    return Part("Policy decision", tuple(lines))


def _plan(row: Proposal) -> Part:
    plan = row.plan or {}
    secret = set(plan.get("secret_params") or [])
    params = ", ".join(f"{k}={MASK if k in secret else v}" for k, v in sorted(row.params.items()))
    lines = [f"{plan.get('summary') or row.title}.", f"Target {row.target}, risk {row.risk}.",
             f"Parameters: {params or 'none'}.",
             f"Pods affected: {plan.get('pods_affected', 0)}"
             + (f", replicas ×{plan['replica_factor']:.2f}" if plan.get("replica_factor") else "") + "."]
    diff = plan.get("diff") or []
    lines += [f"{path}: {before} → {after}" for path, before, after in diff[:MAX_DIFF]]
    if len(diff) > MAX_DIFF:
        lines.append(f"… and {len(diff) - MAX_DIFF} more change(s)")
    return Part("Plan", tuple(lines))


def _dry_run(row: Proposal) -> Part:
    return Part("Dry run", (str((row.plan or {}).get("dry_run") or "not run"),))


def _approval(session: Session, row: Proposal, catalog: Catalog, policy: Policy) -> Part:
    decision = row.decision or {}
    groups = list(decision.get("approver_groups") or [])
    approvals = [a.user_id for a in store.approvals(session, row.id)]
    if not decision.get("approvals_needed"):
        lines = ["No approval needed: the policy lets this step run without one."]
    else:
        lines = [f"{decision['approvals_needed']} approval(s) from {', '.join(groups) or '(no group: nobody)'}."]
        lines += [f"{name}: {_members(policy, name)}." for name in groups]
        runbook = catalog.get(row.runbook_id)
        step = next((s for s in runbook.steps if s.id == row.step_id), None) if runbook else None
        if step is not None and not step.approval.requester_may_approve:
            lines.append(f"Not {row.requested_by}, who asked for it.")
    lines.append("Approved so far by " + (", ".join(approvals) if approvals else "nobody") + ".")
    if row.status == "proposed":
        lines.append(f"The buttons work until {_when(row.expires_at)}; then the step expires.")
    else:
        lines.append(f"No longer waiting: {STATES.get(row.status, ('', row.status))[1]}.")
    return Part("Who may approve", tuple(lines))


def _members(policy: Policy, name: str) -> str:
    group = policy.approver_groups.get(name)
    if group is None:
        return "not in the policy, so nobody"
    sources = ([", ".join(group.users)] if group.users else []) + \
        ([f"Slack user group {group.slack_usergroup}"] if group.slack_usergroup else []) + \
        ([f"PagerDuty on-call ({', '.join(group.pagerduty_schedules + group.pagerduty_escalation_policies)})"]
         if group.uses_pagerduty else [])
    return "; ".join(sources) or "no members configured, so nobody"


# -- runbook id ---------------------------------------------------------------------------

def explain_runbook(runbook: Runbook, policy: Policy) -> Explanation:
    headline = (f"Runbook {runbook.id}: {runbook.title}" + ("" if runbook.enabled else " (disabled)")
                + f" — owners {', '.join(runbook.owners)}")
    match = runbook.match
    when = "; ".join(part for part in (
        f"causes {', '.join(match.categories)}" if match.categories else "",
        f"kinds {', '.join(match.resource_kinds)}" if match.resource_kinds else "",
        f"alerts {', '.join(match.alerts)}" if match.alerts else "",
        f"labels {', '.join(match.labels)}" if match.labels else "",
        f"facts {', '.join(f'{k}={v}' for k, v in sorted(match.facts.items()))}" if match.facts else "") if part)
    does = ([" ".join(runbook.description.split())] if runbook.description else []) + \
        [f"Proposed by the bot for: {when or 'any diagnosis'}."] + \
        [f"Step {s.id}: {s.title} (operation {s.operation}, risk {s.risk}, timeout {s.timeout_seconds} s)."
         for s in runbook.steps]
    return Explanation(f"runbook {runbook.id}", headline, (
        Part("What it does", tuple(does)), _parameters(runbook), _verification(runbook), _rollback(runbook),
        Part("Approval", tuple(f"Step {s.id}: " + (f"{s.approval.approvals} approval(s) from "
                                                   f"{', '.join(s.approval.groups) or '(no group)'}, "
                                                   f"the buttons work {s.approval.request_ttl_seconds // 60} min"
                                                   if s.approval.required else "no approval required") + "."
                               for s in runbook.steps)),
        _autonomy(runbook, policy)))


def _parameters(runbook: Runbook) -> Part:
    lines = []
    for name, spec in runbook.params.items():
        notes = [spec.type] + ([f"from {spec.source}"] if spec.source else []) + \
            ([f"default {spec.default}"] if spec.default is not None else []) + \
            ([f"at least {_number(spec.minimum)}"] if spec.minimum is not None else []) + \
            ([f"at most {_number(spec.maximum)}"] if spec.maximum is not None else []) + \
            ([f"matching {spec.pattern}"] if spec.pattern else []) + \
            (["optional"] if not spec.required else []) + (["secret: masked wherever shown"] if spec.secret else [])
        lines.append(f"{name} ({', '.join(notes)})" + (f": {spec.description}" if spec.description else ""))
    return Part("Parameters", tuple(lines) or ("None.",))


def _number(value: float) -> str:
    """16777216, not 1.67772e+07: a bound is read exactly (bytes, replicas)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _verification(runbook: Runbook) -> Part:
    lines = []
    for s in runbook.steps:
        if s.verify is None:
            lines.append(f"Step {s.id}: no check.")
            continue
        v = s.verify
        what = f" ({v.description})" if v.description else ""
        check = (f"SQL on {v.database}: {' '.join(v.sql.split())} is true" if v.sql is not None
                 else f"{' '.join(v.promql.split())} {v.compare} {v.threshold:g}")
        lines.append(f"Step {s.id}{what}: {check} within {v.within_seconds} s, polled every {v.poll_seconds} s.")
    return Part("Verification", tuple(lines))


def _rollback(runbook: Runbook) -> Part:
    lines = []
    for s in runbook.steps:
        how = ("none: " + s.rollback.none if s.rollback and s.rollback.none else
               f"operation {s.rollback.operation}" if s.rollback else "none declared")
        lines.append(f"Step {s.id}: {how}; when the check fails: {s.on_failure}.")
    return Part("Rollback", tuple(lines))


def _autonomy(runbook: Runbook, policy: Policy) -> Part:
    """The level in each declared environment, by the engine's own `autonomy_for`: each
    environment is asked about alone (a policy copy holding just it, matched by a marker label),
    so the answer is exactly the engine's, first matching rule or the default."""
    lines = []
    for name in policy.environments:
        alone = policy.model_copy(update={"environments": {name: Environment(labels={"opsbot/explain": name})}})
        lines.append(f"{name}: {autonomy_for(alone, runbook.id, None, {'opsbot/explain': name})}")
    alone = policy.model_copy(update={"environments": {}})
    lines.append(f"any other namespace: {autonomy_for(alone, runbook.id, None, {})}")
    return Part("Autonomy per environment (observe · suggest · approve · auto)", tuple(lines))

