"""`opsbot runbooks lint|test`, `opsbot policy explain`, `opsbot audit verify`: read-only tools.

None of them changes anything: `runbooks test` replays a scenario's diagnosis in memory (the
sandbox serves its cluster; nothing is written, not even a dry run leaves the process) and
prints what would be proposed, with the parameters and the policy's decision.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from bot.policy import engine
from bot.policy.model import load_policies
from bot.remediation import catalog, operations
from bot.remediation.kit import step_facts
from bot.runtime import config_dir


def lint(folder: Path) -> tuple[int, list[str]]:
    """(exit code, lines)."""
    try:
        loaded = catalog.load_catalog(folder)
    except catalog.CatalogError as exc:
        return 1, str(exc).splitlines()
    lines = [f"warning: {w}" for w in loaded.warnings]
    lines.append(f"{len(loaded.runbooks)} runbook(s) valid in {folder}: {', '.join(sorted(loaded.runbooks))}")
    return 0, lines


# Slack's mention syntax, which the policy engine writes for Slack: `<@U1>`, `<@U1|alice>`,
# `<!subteam^S1>`, `<!subteam^S1|@oncall>`, `<#C1|ops>`, `<!here>`. A terminal gets the label
# when there is one, else the plain id.
SLACK_MENTION = re.compile(r"<(?P<kind>@|#|!subteam\^|!)(?P<id>[^|>]+)(?:\|(?P<label>[^>]*))?>")
PLAIN_PREFIX = {"@": "", "#": "#", "!subteam^": "", "!": "@"}


def plain_mentions(text: str) -> str:
    """`text` with Slack mentions replaced by names or ids a terminal shows as they are."""
    def plain(match: re.Match) -> str:
        kind, label = match.group("kind"), match.group("label")
        return ("#" + label if kind == "#" else label) if label else PLAIN_PREFIX[kind] + match.group("id")
    return SLACK_MENTION.sub(plain, text)


def _gate_lines(decision: engine.Decision) -> list[str]:
    """The decision and every gate's result, for a terminal (no Slack mention syntax)."""
    lines = [f"decision: {decision.decision} (rule {decision.rule}): {decision.reason}"]
    if decision.hint:
        lines.append(f"hint: {decision.hint}")
    lines.append(f"autonomy: {decision.autonomy}; approvals needed: {decision.approvals_needed}"
                 + (f" from {', '.join(decision.approver_groups)}" if decision.approver_groups else ""))
    lines += [f"  {g.gate:<18} {g.outcome:<15} {g.rule:<28} {g.reason}" for g in decision.gates]
    return [plain_mentions(line) for line in lines]


def explain(runbooks: Path, policies: Path, runbook_id: str, namespace: str | None, params: dict[str, str],
            actor: str | None, groups: list[str], channel: str | None, pods: int, replica_factor: float | None,
            phase: str, at: datetime | None, labels: dict[str, str]) -> tuple[int, list[str]]:
    loaded = catalog.load_catalog(runbooks)
    policy = load_policies(policies)
    runbook = loaded.get(runbook_id)
    if runbook is None:
        return 2, [f"no runbook {runbook_id!r}; known: {', '.join(sorted(loaded.runbooks))}"]
    given = {**params, **({"namespace": namespace} if namespace and "namespace" in runbook.params else {})}
    values, problems = catalog.resolve_params(runbook, {}, labels, given)
    step = runbook.steps[0]
    facts = step_facts(runbook, step, runbook.id, step.id, tuple(problems))
    now = at or datetime.now(UTC)
    request = engine.Request(step=facts, phase=phase, now=now, namespace=namespace,
                             target=f"{runbook.id}:{namespace or '-'}", labels=labels, actor=actor,
                             actor_groups=frozenset(groups), channel=channel, requester="opsbot",
                             approvals=tuple(engine.Approval(f"U{i}", now) for i in range(
                                 step.approval.approvals)) if phase == "execute" else (),
                             pods_affected=pods, replica_factor=replica_factor)
    decision = engine.decide(request, policy, engine.State())
    lines = [f"runbook {runbook.id}, step {step.id} ({step.operation}), phase {phase}, at {now:%Y-%m-%d %H:%M} UTC",
             f"params: {json.dumps(values)}"] + _gate_lines(decision)
    return (0 if decision.decision != "deny" else 1), lines


TEST_BUDGET_SECONDS = 60.0  # `runbooks test`'s investigation budget (production's is 10 s by default)


def test_against_scenario(runbooks: Path, policies: Path, runbook_id: str, scenario_path: Path) -> tuple[int, list[str]]:
    """What `runbook_id` would propose for the scenario's diagnosis (nothing is written)."""
    from bot.context.clusters import ClusterAccess, _url_client
    from bot.context.gather import gather
    from bot.context.model import AlertView
    from bot.diagnosis.engine import diagnose
    from bot.diagnosis.report import build_report
    from bot.remediation.kube_write import KubeWriter, WriteError
    from bot.sandbox.kube import KubeApiServer, SandboxCluster
    from bot.sandbox.scenario import load_scenario

    loaded = catalog.load_catalog(runbooks)
    policy = load_policies(policies)
    runbook = loaded.get(runbook_id)
    if runbook is None:
        return 2, [f"no runbook {runbook_id!r}; known: {', '.join(sorted(loaded.runbooks))}"]
    scenario = load_scenario(scenario_path)
    sandbox = SandboxCluster(now=scenario.now)
    sandbox.load(scenario.cluster.objects, scenario.cluster.events, [s.model_dump() for s in scenario.cluster.logs])
    alerts = [AlertView(a.labels.get("alertname", ""), a.status, dict(a.labels), dict(a.annotations), a.starts_at,
                        a.ends_at) for a in scenario.alerts]
    lines = []
    with KubeApiServer(sandbox) as server:
        # a generous budget: the sandbox is local, so a slow or busy machine must not change the
        # answer from one run to the next; what still could not be read is said, not hidden
        ctx = gather(alerts, scenario.now, ClusterAccess(None, _url_client(server.base_url), None),
                     budget_seconds=TEST_BUDGET_SECONDS)
        report = build_report(ctx, diagnose(ctx))
        top = (report.get("hypotheses") or [{}])[0]
        lines.append(f"diagnosis: {top.get('category', 'none')} {top.get('resource', '-')} "
                     f"({'inconclusive' if report.get('inconclusive') else 'conclusive'})")
        lines += [f"  could not check {gap['what']}: {gap['why']}" for gap in report.get("gaps") or []]
        candidates, skipped = catalog.match(loaded, top.get("category", ""), top.get("facts") or {},
                                            [{"name": a.name, "status": a.status, "labels": a.labels} for a in alerts])
        chosen = next((c for c in candidates if c.runbook.id == runbook_id), None)
        if chosen is None:
            why = next((s for s in skipped if s.startswith(runbook_id + ":")), None)
            lines.append(f"{runbook_id} would not be proposed: " + (why or "it does not match this diagnosis"))
            return 1, lines
        lines.append(f"params: {json.dumps(chosen.params)}")
        step = runbook.steps[0]
        api = _url_client(server.base_url)()
        try:
            values = {k: catalog.render(v, chosen.params) for k, v in step.input.items()}
            plan = operations.plan(KubeWriter(api), step.operation, values)
            lines.append(f"plan: {plan.summary}")
            lines += [f"  {path}: {before} -> {after}" for path, before, after in plan.diff]
            pods, factor = plan.pods_affected, plan.replica_factor
        except (WriteError, operations.InputError) as exc:
            lines.append(f"plan: refused: {exc}")
            pods, factor = 0, None
        finally:
            api.close()
    request = engine.Request(step=step_facts(runbook, step, runbook.id, step.id), phase="propose", now=scenario.now,
                             namespace=chosen.params.get("namespace"), target=top.get("resource", "-"),
                             labels=dict(alerts[0].labels) if alerts else {}, requester="opsbot", pods_affected=pods,
                             replica_factor=factor)
    lines += _gate_lines(engine.decide(request, policy, engine.State()))
    lines.append("(nothing was changed: the scenario's cluster lives in this process only)")
    return 0, lines


def audit_verify(factory, incident: int | None, key: bytes | None = None, anchors: Path | None = None,
                 unsigned_before: datetime | None = None) -> tuple[int, list[str]]:
    """Every timeline's chain (and MACs, with the audit key: entries before `unsigned_before`
    may lack one); with `anchors`, the anchored heads too (`bot.timeline.anchors`). Exit 1 on
    any problem, 2 when the input cannot be read."""
    from sqlalchemy import select

    from bot.db.engine import reading
    from bot.db.models import Incident, TimelineEntry
    from bot.timeline.anchors import read_records, verify_anchors
    from bot.timeline.chain import verify_incident

    records, notes = [], []
    if anchors is not None:
        try:
            with open(anchors, encoding="utf-8", errors="replace") as handle:
                records, other = read_records(handle)
        except OSError as exc:
            return 2, [f"cannot read the anchors {anchors}: {exc.strerror}"]
        if not records:
            return 2, [f"no anchor records in {anchors}"]
        notes.append(f"{len(records)} anchor record(s) read" + (f", {other} other line(s) skipped" if other else ""))
    problems, checked = [], 0
    with reading(factory) as session:  # one snapshot: an append while checking is no "deleted entry"
        query = select(Incident).order_by(Incident.id)
        if incident is not None:
            query = query.where(Incident.id == incident)
        for row in session.execute(query).scalars():
            checked += 1
            problems += verify_incident(session, row, key, unsigned_before)
        if records:
            problems += verify_anchors(session, records, key)
        if key is None and session.execute(select(TimelineEntry.id).where(TimelineEntry.mac.is_not(None))
                                           .limit(1)).first():
            notes.append("entries carry MACs but OPSBOT_AUDIT_KEY is not set: the MACs were not checked")
    if incident is not None and checked == 0:
        return 2, [f"no incident INC-{incident}"]
    if problems:
        return 1, notes + problems + [f"{len(problems)} problem(s) in {checked} incident timeline(s)"]
    return 0, notes + [f"{checked} incident timeline(s) intact"]


def dirs(settings) -> tuple[Path, Path]:
    return config_dir(settings.runbooks_dir, "runbooks"), config_dir(settings.policies_dir, "policies")


INCIDENT_REFERENCE = re.compile(r"(?:INC-)?(\d+)", re.IGNORECASE)


def incident_number(text: str) -> int:
    """The id in an incident reference as people write it: `INC-12`, `inc-12` or `12`
    (ValueError otherwise)."""
    match = INCIDENT_REFERENCE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an incident reference (INC-12 or 12)")
    return int(match.group(1))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
