"""Steps whose worker died mid-write: found, judged against what they meant to write, never re-run.

A worker holds a lease on a step while it writes (`running`, or `rolling_back` for a rollback a
person asked for). When the process is killed, or hangs past the lease, the step would stay
`running` for good and the policy's concurrency gate would refuse every later step on its
target. Each executor round therefore looks for lapsed leases and recovers those steps:

1. claim: one conditional UPDATE on the status and the lapsed lease (`store.claim_lapsed`), so
   one worker of all replicas recovers a step, once. The dead worker, should it come back,
   loses every later transition: they are conditional on its own lease.
2. judge: the intent recorded before the write (`bot.remediation.intent`) is compared with the
   live objects: applied, not applied, or undecided. No intent recorded means the worker died
   before writing. Kubernetes unreachable: tried again at the next lapse, up to `TRIES` times,
   then undecided. A database step (`postgres.*`) is judged from the database instead
   (`sql_operations.judge`): its statement still running on the server (a concurrent index
   build can take hours, and outlives the worker's connection) keeps the claim and is looked at
   again at the next lapse, as often as it takes; an index found, valid or not, is applied (an
   INVALID one then fails verification and is dropped); none is not applied.
3. go on without writing: applied → verified as usual (`verifying`, or `succeeded` when the
   step has no check); not applied → `failed`, not retried (a person proposes it again if it
   is still wanted); undecided → `failed` for a person to check. A rollback found applied is
   `rolled_back`; one not applied goes back to `unverified` (the buttons return); undecided is
   `rollback_failed`; an automatic rollback (after a failed check) not applied is
   `rollback_failed` too, for a person to check. The proposal message in the thread says which, and so does the timeline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.db.engine import unit_of_work
from bot.db.models import Proposal
from bot.remediation import intent, sql_operations, store
from bot.remediation.kube_write import WriteError
from bot.remediation.sql_write import SqlWriter
from bot.timeline import chain

if TYPE_CHECKING:
    from bot.remediation.execute import Executor

log = logging.getLogger(__name__)
ACTOR = "opsbot"
TRIES = 3
NOTES = {  # (status when the worker died, verdict) -> what the thread says
    ("running", "applied"): "The bot restarted while applying this step; the change was found applied, "
                            "verifying it now.",
    ("running", "not_applied"): "The bot restarted while applying this step; the change was not applied. It was not "
                                "retried: propose and approve it again if it is still wanted.",
    ("running", "undecided"): "The bot restarted while applying this step and could not tell whether the change was "
                              "applied ({detail}). It was not retried: check {target} by hand.",
    ("rolling_back", "applied"): "The bot restarted while rolling this step back; the rollback was found applied.",
    ("rolling_back", "not_applied"): "The bot restarted while rolling this step back; the rollback was not applied "
                                     "and not retried: click Roll back again if it is still wanted.",
    ("rolling_back", "undecided"): "The bot restarted while rolling this step back and could not tell whether the "
                                   "rollback was applied ({detail}): check {target} by hand.",
    (store.AUTO_ROLLBACK, "applied"): "The bot restarted while rolling this step back after its check failed; the "
                                  "rollback was found applied.",
    (store.AUTO_ROLLBACK, "not_applied"): "The bot restarted while rolling this step back after its check failed; the "
                                      "rollback was not applied and not retried: check {target} by hand.",
    (store.AUTO_ROLLBACK, "undecided"): "The bot restarted while rolling this step back after its check failed and could "
                                    "not tell whether the rollback was applied ({detail}): check {target} by hand.",
}
# A note that speaks of what happens next, and what it says once the step has moved on (a final
# status, or unverified): the thread never keeps saying "verifying it now" after the verdict.
SETTLED = {NOTES[("running", "applied")]: "The bot restarted while applying this step; the change was found applied."}


def settled(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with a recovery note about the next move replaced by its past form."""
    note = result.get("note")
    return {**result, "note": SETTLED[note]} if note in SETTLED else result


def _judge(executor: Executor, cluster: str | None, calls: list[dict[str, Any]],
           before: list[dict[str, Any]]) -> intent.Judgement | None:
    """The verdict, or None when Kubernetes cannot be read now."""
    access = executor.kit.clusters.resolve(cluster)
    if access is None or access.api_client is None:
        return None
    api_client = access.api_client()
    try:
        return intent.judge(executor.writer(api_client), calls, before)
    except WriteError as exc:
        log.warning("recovery could not read the cluster: %s", exc)
        return None
    finally:
        api_client.close()


def recover(executor: Executor, proposal_id: int) -> bool:
    """Recover one step whose lease lapsed; False when another worker has it (or had it)."""
    kit = executor.kit
    now = kit.clock()
    owner = executor.owner()
    with unit_of_work(kit.factory) as session:
        status = store.claim_lapsed(session, proposal_id, owner, now, now + executor.lease)
        if status is None:
            return False
        proposal = session.get(Proposal, proposal_id)
        result = dict(proposal.result or {})
        _runbook, step = kit.step_of(proposal)
        params, cluster, incident_id, undo = dict(proposal.params), proposal.cluster, proposal.incident_id, \
            proposal.undo
    recorded = result.get("intent" if status == "running" else "rollback_intent")
    if recorded is None:
        judgement = intent.Judgement("not_applied", "the bot stopped before sending the write")
    else:
        sql = step is not None and sql_operations.is_sql(step.operation)
        if sql:  # judged from the database; its undo is a DROP INDEX, not Kubernetes calls
            judgement = sql_operations.judge(SqlWriter(kit.databases), recorded["calls"])
        else:
            before = intent.undo_calls(undo) if status == "running" else \
                list((result.get("intent") or {}).get("calls") or [])
            judgement = _judge(executor, cluster, recorded["calls"], before)
        if isinstance(judgement, sql_operations.StillRunning):  # never re-run it: look again at the next lapse
            with unit_of_work(kit.factory) as session:
                store.renew(session, proposal_id, status, owner, kit.clock() + executor.lease,
                            result={**result, "note": judgement.detail})
            return True
        if judgement is None:
            tries = int(result.get("recovery_tries") or 0) + 1
            if tries < TRIES:  # keep the claim: the next lapse tries again
                with unit_of_work(kit.factory) as session:
                    store.renew(session, proposal_id, status, owner, kit.clock() + executor.lease,
                                result={**result, "recovery_tries": tries})
                return True
            judgement = intent.Judgement("undecided", "Kubernetes could not be read")
    kind = store.AUTO_ROLLBACK if status == "rolling_back" and result.get(store.AUTO_ROLLBACK) else status
    note = NOTES[(kind, judgement.verdict)].format(detail=judgement.detail, target=proposal.target)
    with unit_of_work(kit.factory) as session:
        if not store.renew(session, proposal_id, status, owner, kit.clock() + executor.lease,
                           result={**result, "note": note}):
            return False
        chain.append(session, incident_id, "remediation.recovered", ACTOR,
                     {"proposal": proposal_id, "was": status, "found": judgement.verdict, "detail": judgement.detail},
                     kit.clock())
    log.warning("step %s recovered after its worker stopped (%s): %s", proposal_id, status, judgement.verdict)
    outcome = {"note": note}
    if status == "rolling_back":
        if judgement.verdict == "not_applied" and kind == "rolling_back":  # a person's: the buttons come back
            executor.back_to_unverified(proposal_id, incident_id, owner, note, "remediation.unverified",
                                        {"why": "the rollback was not applied"})
        else:
            executor.finish(proposal_id, incident_id, "rolled_back" if judgement.verdict == "applied"
                             else "rollback_failed", outcome, owner=owner, from_statuses=("rolling_back",),
                             next_step=False)
        return True
    if judgement.verdict != "applied" or step is None:
        executor.finish(proposal_id, incident_id, "failed", {**outcome, "error": "not completed: see the note"},
                         owner=owner, next_step=False)
    elif step.verify is None:
        executor.finish(proposal_id, incident_id, "succeeded", {**outcome, "verified": "no verify block"},
                         owner=owner)
    else:
        access = kit.clusters.resolve(cluster)
        executor.start_verifying(proposal_id, incident_id, step, params, access.prometheus_url if access else None,
                                 outcome, owner)
    return True
