"""PLAN: turn a diagnosis (or a person's `/ops run`) into proposed steps, each with its plan,
server-side dry run and policy decision, stored before anything is shown.

For the bot's own proposals only a conclusive diagnosis counts, and only runbooks that remedy
its top cause (`catalog.match`). Each proposal records: the rendered, typed parameters (secret
ones masked in everything shown), the plan (what changes, the diff, pods affected), the result
of a `dryRun=All` request (an API server that refuses the change refuses it now, not after an
approval), and the decision with every gate. Autonomy then decides what happens: observe (the
timeline only), suggest (described, no buttons), approve (Approve / Reject buttons), auto
(runs when the policy allows it without approval).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.db.engine import unit_of_work
from bot.db.models import Proposal
from bot.policy import engine
from bot.remediation import catalog, operations, sql_operations, store
from bot.remediation.kit import RemediationKit, step_facts
from bot.remediation.kube_write import KubeWriter, WriteError
from bot.remediation.runbook_model import Runbook, Step
from bot.remediation.sql_write import SqlWriter
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
MASK = "••••••"


@dataclass
class Outcome:
    proposal_id: int | None
    status: str
    problems: list[str]


def shown_params(runbook: Runbook, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as they may be shown and stored: secret ones masked."""
    return {k: (MASK if runbook.params.get(k) and runbook.params[k].secret else v) for k, v in params.items()}


def rendered_input(step: Step, params: dict[str, Any]) -> dict[str, Any]:
    return {key: catalog.render(value, params) for key, value in step.input.items()}


def _check_preconditions(runbook: Runbook, params: dict[str, Any], writer: KubeWriter | None) -> list[str]:
    problems = []
    for pre in runbook.preconditions:
        if pre.exists and writer is not None:
            kind, namespace = catalog.render(pre.exists["kind"], params), catalog.render(pre.exists.get("namespace"),
                                                                                        params)
            name = catalog.render(pre.exists["name"], params)
            try:
                writer.get(kind, namespace, name)
            except WriteError as exc:
                problems.append(f"precondition: {kind} {namespace or ''}/{name} {exc.kind.replace('_', ' ')}")
    return problems


def plan_step(writer: KubeWriter | SqlWriter | None, step: Step, params: dict[str, Any]
              ) -> tuple[dict[str, Any], operations.Plan | None, list[str]]:
    """(plan for storage, the live plan, problems): what the operation would change, read from
    the cluster, or the database for a postgres.* step (reads only: the dry run comes after the
    policy, see `dry_run`). Input that does not fit is refused before anything is read."""
    values = rendered_input(step, params)
    ops = sql_operations if sql_operations.is_sql(step.operation) else operations
    try:
        ops.validate_input(step.operation, values)
    except operations.InputError as exc:
        return {"summary": step.operation, "diff": [], "pods_affected": 0}, None, [str(exc)]
    if writer is None:
        return {"summary": f"{step.operation} {values}", "diff": [], "pods_affected": 0,
                "dry_run": "not run: Kubernetes is not configured"}, None, ["Kubernetes is not configured"]
    try:
        plan = ops.plan(writer, step.operation, values)
    except WriteError as exc:
        return {"summary": f"{step.operation} {values}", "diff": [], "pods_affected": 0,
                "dry_run": f"not run: {exc}"}, None, [f"cannot plan: {exc}"]
    stored = {"summary": plan.summary, "target": str(plan.target), "pods_affected": plan.pods_affected,
              "replica_factor": plan.replica_factor, "dry_run": "not run", "notes": plan.notes,
              "diff": [[path, before, after] for path, before, after in plan.diff]}
    return stored, plan, []


def dry_run(writer: KubeWriter | SqlWriter, plan: operations.Plan, stored: dict[str, Any]) -> list[str]:
    """Send the change with dryRun=All; the API server's answer goes into `stored`. A postgres.*
    step has no server-side dry run: its checks (primary, owner, names) answer instead."""
    try:
        outcome = plan.write(writer, True)
        stored["dry_run"] = str(outcome) if sql_operations.is_sql(plan.operation) else \
            "accepted by the API server (dryRun=All)"
        return []
    except WriteError as exc:
        stored["dry_run"] = f"refused: {exc}"
        return [f"dry run refused: {exc}"]


def _status_for(autonomy: str, decision: engine.Decision, problems: list[str]) -> str:
    if autonomy == "observe":
        return "observed"
    if decision.decision == "deny" or problems:
        return "denied"
    if autonomy == "suggest":
        return "described"
    if autonomy == "auto" and decision.decision == "allow":
        return "approved"
    return "proposed"


def _decide(kit: RemediationKit, session, runbook: Runbook, step: Step, problems: tuple[str, ...], now: datetime,
            namespace: str | None, target: str, labels: dict[str, str], requested_by: str,
            plan: dict[str, Any]) -> engine.Decision:
    request = engine.Request(step=step_facts(runbook, step, runbook.id, step.id, problems), phase="propose", now=now,
                             namespace=namespace, target=target, labels=labels, requester=requested_by,
                             pods_affected=int(plan.get("pods_affected") or 0), replica_factor=plan.get("replica_factor"))
    state = engine.State(kill_switches=store.kill_switches(session),
                         recent_runs=store.recent_runs(session, now - timedelta(days=1)),
                         running_on_target=store.running_on(session, target))
    return engine.decide(request, kit.policy, state)


def propose(kit: RemediationKit, incident_id: int, runbook: Runbook, params: dict[str, Any], *, requested_by: str,
            cluster: str | None, labels: dict[str, str], step_index: int = 0) -> Outcome:
    """Plan, dry-run, decide and store one step of `runbook`; never raises for a bad plan (the
    proposal is stored as denied with the reason, so the thread says why)."""
    step = runbook.steps[step_index]
    now = kit.clock()
    sql = sql_operations.is_sql(step.operation)  # a database step: no Kubernetes at all
    access = None if sql else kit.clusters.resolve(cluster)
    api_client = access.api_client() if access is not None and access.api_client is not None else None
    writer = SqlWriter(kit.databases) if sql else KubeWriter(api_client) if api_client is not None else None
    try:
        problems = _check_preconditions(runbook, params, None if sql else writer)
        plan, live, plan_problems = plan_step(writer, step, params) if not problems else ({"diff": []}, None, [])
        problems += plan_problems
        values = rendered_input(step, params)
        target = plan.get("target") or _target_of(values)
        namespace = values.get("namespace") if isinstance(values.get("namespace"), str) else None
        with unit_of_work(kit.factory) as session:
            decision = _decide(kit, session, runbook, step, tuple(problems), now, namespace, target, labels,
                               requested_by, plan)
        if decision.decision != "deny" and live is not None and writer is not None:
            dry_problems = dry_run(writer, live, plan)  # nothing is sent for a step the policy denies
            if dry_problems:
                problems += dry_problems
                with unit_of_work(kit.factory) as session:
                    decision = _decide(kit, session, runbook, step, tuple(problems), now, namespace, target,
                                       labels, requested_by, plan)
    finally:
        if api_client is not None:
            api_client.close()
    undo = live.undo if live is not None else None
    with unit_of_work(kit.factory) as session:
        autonomy = decision.autonomy if requested_by == ACTOR else "approve"
        status = _status_for(autonomy, decision, problems)
        proposal = Proposal(
            incident_id=incident_id, runbook_id=runbook.id, step_id=step.id,
            title=catalog.render(step.title, shown_params(runbook, params))[:300],
            params=params, target=target, namespace=namespace, cluster=cluster,
            labels=labels, risk=step.risk, autonomy=autonomy, requested_by=requested_by, status=status,
            decision=decision.as_dict(), plan={**plan, "secret_params": sorted(
                k for k, spec in runbook.params.items() if spec.secret)}, undo=undo,
            expires_at=now + timedelta(seconds=step.approval.request_ttl_seconds), created_at=now, updated_at=now,
            attempts=0, result={"problems": problems} if problems else {}, message_version=1,
            message_synced_version=0 if status != "observed" else 1)
        session.add(proposal)
        session.flush()
        chain.append(session, incident_id, "remediation.proposed", requested_by,
                     {"proposal": proposal.id, "runbook": runbook.id, "step": step.id,
                      "params": shown_params(runbook, params),
                      "target": target, "status": status, "autonomy": autonomy, "decision": decision.as_dict(),
                      "plan": {k: plan.get(k) for k in ("summary", "pods_affected", "dry_run")},
                      **({"problems": problems} if problems else {})}, now)
        return Outcome(proposal.id, status, problems)


def _target_of(values: dict[str, Any]) -> str:
    if "namespace" in values and "name" in values:
        return f"{values.get('kind', 'Object')}/{values['namespace']}/{values['name']}"
    return f"Node/{values.get('name', '?')}"


def propose_for_report(kit: RemediationKit, incident_id: int, report: dict[str, Any], alerts: list[dict[str, Any]],
                       cluster: str | None) -> list[Outcome]:
    """The bot's own proposals after an RCA: runbooks for a conclusive top cause only.

    Ends, whatever happened, with one `remediation.considered` timeline entry naming the cause,
    the runbooks proposed and those matched but not proposed (with why): the audit trail of
    why a step was or was not offered, and the mark that proposing for this RCA is over."""
    hypotheses = report.get("hypotheses") or []
    considered: dict[str, Any] = {"cause": None, "proposed": [], "not_proposed": []}
    outcomes: list[Outcome] = []
    try:
        if not hypotheses or report.get("inconclusive"):
            considered["why"] = "the diagnosis is inconclusive"
            return outcomes
        top = hypotheses[0]
        considered["cause"] = top["category"]
        candidates, considered["not_proposed"] = catalog.match(kit.catalog, top["category"], top.get("facts") or {},
                                                               alerts)
        labels = next((a["labels"] for a in alerts if a.get("status") == "firing"), {}) if alerts else {}
        for candidate in candidates:
            try:
                outcome = propose(kit, incident_id, candidate.runbook, candidate.params, requested_by=ACTOR,
                                  cluster=cluster, labels=labels)
            except Exception:  # noqa: BLE001 - one runbook's failure must not cost the others
                log.exception("proposing %s failed", candidate.runbook.id)
                considered["not_proposed"].append(f"{candidate.runbook.id}: proposing it failed")
                continue
            outcomes.append(outcome)
            considered["proposed"].append({"runbook": candidate.runbook.id, "proposal": outcome.proposal_id,
                                           "status": outcome.status})
        return outcomes
    finally:
        with unit_of_work(kit.factory) as session:
            chain.append(session, incident_id, "remediation.considered", ACTOR, considered, kit.clock())


def proposed_runbooks(kit: RemediationKit, incident_id: int) -> list[str]:
    with unit_of_work(kit.factory) as session:
        return sorted({p.runbook_id for p in store.of_incident(session, incident_id)})


def render_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
