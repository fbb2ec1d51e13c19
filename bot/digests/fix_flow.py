"""A digest finding's "Propose fix" button: the fix becomes a step in an incident of its own.

Every change the bot makes belongs to an incident (its thread, approvals, audit chain and
postmortem), so a fix found by a digest is handled like any other: the click declares an
incident for the finding (severity `info`, the clicking person as commander) and proposes the
runbook step in its thread, with the usual Approve / Reject buttons, policy, verification and
audit. Invariants:
- The button names the finding (scope, key); the runbook and its parameters are read from the
  database (`digest_findings.fix`), never from the click, and validated by the runbook's own
  parameter types (`catalog.resolve_params`).
- The policy is checked for the person before anything is written (declaring is an incident
  manager's control); the step is then decided by the policy like any other, at proposal, at
  click and at execution time.
- A finding already fixed, unknown, or whose fix runbook is not in the catalog changes nothing
  and says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.db.engine import reading, unit_of_work
from bot.digests import store
from bot.incidents import controls
from bot.incidents.control_flows import Caller
from bot.policy import roles
from bot.remediation import catalog, propose

SEVERITY = "info"


@dataclass(frozen=True)
class FixReply:
    ok: bool
    text: str
    incident_id: int | None = None


def parse_value(value: str) -> tuple[str, str] | None:
    """(scope, key) from a button's value; None when it is not one of ours."""
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("scope"), str) or not isinstance(data.get("key"), str):
        return None
    return data["scope"], data["key"]


def propose_fix(runtime, caller: Caller, scope: str, key: str) -> FixReply:
    kit = runtime.remediation
    if kit is None:
        return FixReply(False, "Not proposed: no policy is loaded.")
    groups = kit.groups.groups_of(caller.user) if caller.user else frozenset()
    refusal = roles.control_refusal(kit.policy, "declare", caller.user, groups, caller.channel, button=True)
    if refusal:
        return FixReply(False, f"Not proposed: {refusal}.")
    with reading(runtime.factory) as session:
        row, fix = store.stored_fix(session, scope, key)
        if row is None or fix is None:
            return FixReply(False, "Not proposed: this finding has no fix on record (the digest may be from an "
                                   "older configuration).")
        if row.fixed_at is not None:
            return FixReply(False, f"Not proposed: a later digest found {row.subject} fixed.")
        subject, section = row.subject, row.section
    runbook = kit.catalog.get(fix.get("runbook", ""))
    if runbook is None:
        return FixReply(False, f"Not proposed: the runbook {fix.get('runbook')!r} is not in the catalog.")
    given = {name: str(value) for name, value in (fix.get("params") or {}).items()}
    values, problems = catalog.resolve_params(runbook, {}, {}, given)
    if problems:
        return FixReply(False, "Not proposed: " + "; ".join(problems))
    with unit_of_work(runtime.factory) as session:
        incident = controls.declare(session, f"{section}: {subject}"[:200], SEVERITY, caller.person, runtime.clock())
        incident_id = incident.id
    outcome = propose.propose(kit, incident_id, runbook, values, requested_by=caller.user,
                              cluster=fix.get("cluster"), labels={})
    runtime.workers.wake_stages()
    if outcome.status == "denied":
        return FixReply(True, f"INC-{incident_id} opened for {subject}; the step was proposed there but the policy "
                              "denied it: " + "; ".join(outcome.problems or ["see the decision in the thread"]),
                        incident_id)
    return FixReply(True, f"INC-{incident_id} opened for {subject}: the step \"{fix.get('title')}\" is proposed in "
                          "its thread for approval.", incident_id)
