"""ACT and VERIFY: run approved steps exactly once, check them with Prometheus, roll back.

1. claim: `approved` → `running` with a conditional UPDATE (one worker, one replica wins);
2. the policy runs once more (`phase="execute"`): a kill switch or freeze that came on after the
   approval, or an approval older than its TTL, stops the step here (`denied`), before any write;
3. the operation is planned again on the live object, its undo captured, dry-run, then applied,
   retrying only the failures the step allows (conflict, unavailable, timeout);
4. `verifying`: the step's PromQL is polled until it holds (`succeeded`) or its window ends
   (`failed`, then the rollback when `on_failure: rollback`: the captured undo is applied and the
   thread says so with the numbers before and after).
5. a runbook's next step is proposed when this one succeeded (or failed with `on_failure:
   continue`), and goes through the same approval and checks as the first.
Verification is a state, not a loop: each poll is a short unit of work, so a worker is never
parked for the verification window and a restart resumes it.
"""

from __future__ import annotations

import logging
import operator
import time
import uuid
from datetime import timedelta
from typing import Any

from prometheus_api_client import PrometheusConnect

from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Proposal
from bot.remediation import catalog, operations, store
from bot.remediation.kit import RemediationKit
from bot.remediation.kube_write import KubeWriter, WriteError
from bot.remediation.propose import propose, rendered_input
from bot.remediation.runbook_model import Step, Verify, fill
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
           "!=": operator.ne}
FIRST_CHECK_SECONDS = 5


def verify_query(verify: Verify, params: dict[str, Any]) -> str:
    return fill(verify.promql, catalog.promql_values(params))


def sample(prometheus_url: str | None, query: str) -> float | None:
    """The query's value now (the smallest when it returns several series), or None."""
    if not prometheus_url:
        return None
    client = PrometheusConnect(url=prometheus_url, disable_ssl=not prometheus_url.startswith("https"), timeout=10,
                               method="POST")
    result = client.custom_query(query)
    values = [float(item["value"][1]) for item in result or [] if "value" in item]
    return min(values) if values else None


class Executor:
    def __init__(self, kit: RemediationKit, owner: str, lease: timedelta = timedelta(seconds=300)):
        self._kit, self._owner_prefix, self._lease = kit, owner, lease

    def _owner(self) -> str:
        return f"{self._owner_prefix}:{uuid.uuid4().hex[:12]}"

    def round(self) -> bool:
        kit, now = self._kit, self._kit.clock()
        owner = self._owner()
        with reading(kit.factory) as session:
            expired = store.expired(session, now)
            executable = store.has_executable(session)
            due = store.due_verifications(session, now)
        for proposal_id in expired:  # one transaction each: rows lock proposal first, then incident
            with unit_of_work(kit.factory) as session:
                if store.transition(session, proposal_id, ("proposed",), "expired", now):
                    incident_id = session.get(Proposal, proposal_id).incident_id
                    chain.append(session, incident_id, "remediation.expired", ACTOR, {"proposal": proposal_id}, now)
        claimed = []
        if executable:
            with unit_of_work(kit.factory) as session:
                claimed = store.claim_executable(session, now, owner, self._lease)
        for proposal_id in claimed:
            self.run(proposal_id, owner)
        for proposal_id in due:
            self.verify(proposal_id)
        return bool(claimed or due)

    # -- run -------------------------------------------------------------------------------------

    def run(self, proposal_id: int, owner: str) -> str:
        kit = self._kit
        now = kit.clock()
        with unit_of_work(kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            decision = kit.decide(session, proposal, "execute", now)
            runbook, step = kit.step_of(proposal)
            params, cluster, incident_id = dict(proposal.params), proposal.cluster, proposal.incident_id
            if decision.decision == "deny" or runbook is None or step is None:  # proposal row first, then incident
                store.transition(session, proposal_id, ("running",), "denied", now, finished_at=now,
                                 result={**proposal.result, "denied": decision.reason})
            chain.append(session, incident_id, "remediation.execution_checked", ACTOR,
                         {"proposal": proposal_id, "decision": decision.as_dict()}, now)
            if decision.decision == "deny" or runbook is None or step is None:
                return "denied"
        access = kit.clusters.resolve(cluster)
        if access is None or access.api_client is None:
            return self._finish(proposal_id, incident_id, "failed", {"error": "Kubernetes is not configured"})
        api_client = access.api_client()
        try:
            applied = self._apply(KubeWriter(api_client, request_seconds=min(30, step.timeout_seconds)), step, params)
        finally:
            api_client.close()
        if "error" in applied:
            return self._finish(proposal_id, incident_id, "failed", applied)
        with unit_of_work(kit.factory) as session:
            session.execute(Proposal.__table__.update().where(Proposal.id == proposal_id)
                            .values(undo=applied.pop("undo", None)))
            chain.append(session, incident_id, "remediation.applied", ACTOR,
                         {"proposal": proposal_id, **{k: v for k, v in applied.items() if k != "undo"}}, kit.clock())
        if step.verify is None:
            return self._finish(proposal_id, incident_id, "succeeded", {**applied, "verified": "no verify block"})
        before = self._sample(access.prometheus_url, verify_query(step.verify, params))
        later = kit.clock()
        with unit_of_work(kit.factory) as session:
            store.transition(session, proposal_id, ("running",), "verifying", later, lease_owner=None, lease_until=None,
                             verify_deadline=later + timedelta(seconds=step.verify.within_seconds),
                             next_check_at=later + timedelta(seconds=min(FIRST_CHECK_SECONDS, step.verify.poll_seconds)),
                             result={**applied, "samples": [[later.isoformat(), before]]})
        return "verifying"

    def _apply(self, writer: KubeWriter, step: Step, params: dict[str, Any]) -> dict[str, Any]:
        values = rendered_input(step, params)
        deadline = time.monotonic() + step.timeout_seconds
        for attempt in range(1, step.retry.attempts + 1):
            try:
                plan = operations.plan(writer, step.operation, values)
                plan.write(writer, True)
                outcome = plan.write(writer, False)
                return {"summary": plan.summary, "diff": [[p, b, a] for p, b, a in plan.diff], "attempts": attempt,
                        "undo": plan.undo if "target" in step.capture else None,
                        **({"outcome": outcome} if isinstance(outcome, dict) and "evicted" in outcome else {})}
            except WriteError as exc:
                retryable = exc.kind in step.retry.on_errors and attempt < step.retry.attempts and time.monotonic() < deadline
                log.warning("step %s attempt %d: %s%s", step.id, attempt, exc, " (retrying)" if retryable else "")
                if not retryable:
                    return {"error": str(exc), "error_kind": exc.kind, "attempts": attempt}
                time.sleep(min(2 ** attempt, 10))
            except operations.InputError as exc:
                return {"error": str(exc), "error_kind": "invalid", "attempts": attempt}
        return {"error": "out of attempts", "attempts": step.retry.attempts}

    def _sample(self, url: str | None, query: str) -> float | None:
        try:
            return sample(url, query)
        except Exception as exc:  # noqa: BLE001 - a failed read is "no value", recorded as such
            log.warning("verification query failed: %s", exc)
            return None

    def _finish(self, proposal_id: int, incident_id: int, status: str, result: dict[str, Any]) -> str:
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            won = store.transition(session, proposal_id, ("running", "verifying"), status, now, finished_at=now,
                                   lease_owner=None, lease_until=None, next_check_at=None,
                                   result={**(proposal.result or {}), **result})
            if won:  # a worker that lost the race records nothing: the winner's entry stands
                chain.append(session, incident_id, f"remediation.{status}", ACTOR, {"proposal": proposal_id, **result},
                              now)
        if won:
            self._propose_next(proposal, status)
        return status

    def _propose_next(self, finished: Proposal, status: str) -> None:
        """A runbook's next step is proposed (planned, dry-run, decided, approved again) once
        this one succeeded, or failed with `on_failure: continue`; never after a stop or a
        rollback, nor once the incident is closed. Only the worker whose transition won gets
        here, so it is proposed once; when it cannot be proposed the timeline says why."""
        runbook, step = self._kit.step_of(finished)
        if runbook is None or step is None:
            return
        index = next(i for i, s in enumerate(runbook.steps) if s.id == step.id)
        if index + 1 >= len(runbook.steps) or not (status == "succeeded" or
                                                   (status == "failed" and step.on_failure == "continue")):
            return
        following = runbook.steps[index + 1].id
        with reading(self._kit.factory) as session:
            still_open = session.get(Incident, finished.incident_id).is_open
        why = None if still_open else "the incident is no longer open"
        if why is None:
            try:
                propose(self._kit, finished.incident_id, runbook, dict(finished.params),
                        requested_by=finished.requested_by, cluster=finished.cluster,
                        labels=dict(finished.labels or {}), step_index=index + 1)
                return
            except Exception as exc:  # noqa: BLE001 - the finished step stands; the timeline says why
                log.exception("proposing step %s of %s failed", following, runbook.id)
                why = f"proposing it failed ({type(exc).__name__})"
        with unit_of_work(self._kit.factory) as session:
            chain.append(session, finished.incident_id, "remediation.next_step_not_proposed", ACTOR,
                         {"after": finished.id, "runbook": runbook.id, "step": following, "why": why},
                         self._kit.clock())

    # -- verify ----------------------------------------------------------------------------------

    def verify(self, proposal_id: int) -> str:
        kit = self._kit
        now = kit.clock()
        owner = self._owner()
        with unit_of_work(kit.factory) as session:
            if not store.lease(session, proposal_id, "verifying", owner, now, now + timedelta(seconds=60)):
                return "taken"
            proposal = session.get(Proposal, proposal_id)
            _runbook, step = kit.step_of(proposal)
            params, cluster, incident_id = dict(proposal.params), proposal.cluster, proposal.incident_id
            deadline, samples = proposal.verify_deadline, list((proposal.result or {}).get("samples") or [])
        access = kit.clusters.resolve(cluster)
        url = access.prometheus_url if access else None
        if step is None or step.verify is None:
            return self._finish(proposal_id, incident_id, "failed", {"error": "the step's verify block is gone"})
        query = verify_query(step.verify, params)
        value = self._sample(url, query)
        samples.append([now.isoformat(), value])
        holds = value is not None and COMPARE[step.verify.compare](value, step.verify.threshold)
        numbers = {"samples": samples[-20:], "query": query, "expect": f"{step.verify.compare} {step.verify.threshold:g}",
                   "before": samples[0][1], "after": value}
        if holds:
            return self._finish(proposal_id, incident_id, "succeeded", numbers)
        if now < deadline:
            with unit_of_work(kit.factory) as session:
                proposal = session.get(Proposal, proposal_id)
                session.execute(Proposal.__table__.update().where(Proposal.id == proposal_id, Proposal.lease_owner == owner)
                                .values(lease_owner=None, lease_until=None, result={**proposal.result, **numbers},
                                        next_check_at=now + timedelta(seconds=step.verify.poll_seconds)))
            return "verifying"
        if not url:
            return self._finish(proposal_id, incident_id, "failed",
                                {**numbers, "error": "could not verify: Prometheus is not configured (not rolled back)"})
        if step.on_failure == "rollback" and step.rollback and step.rollback.operation:
            return self._roll_back(proposal_id, incident_id, step, params, numbers, cluster)
        return self._finish(proposal_id, incident_id, "failed", {**numbers, "error": "verification failed"})

    def _roll_back(self, proposal_id: int, incident_id: int, step: Step, params: dict[str, Any],
                   numbers: dict[str, Any], cluster: str | None) -> str:
        kit = self._kit
        with unit_of_work(kit.factory) as session:
            undo = session.get(Proposal, proposal_id).undo
        access = kit.clusters.resolve(cluster)
        if access is None or access.api_client is None:
            return self._finish(proposal_id, incident_id, "rollback_failed",
                                {**numbers, "error": "verification failed; Kubernetes unreachable for the rollback"})
        api_client = access.api_client()
        try:
            writer = KubeWriter(api_client)
            if step.rollback.operation == operations.RESTORE:
                if not undo:
                    raise WriteError("invalid", "nothing was captured to restore")
                operations.apply_undo(writer, undo, dry_run=True)
                operations.apply_undo(writer, undo)
            else:
                values = {k: catalog.render(v, params) for k, v in step.rollback.input.items()}
                plan = operations.plan(writer, step.rollback.operation, values)
                plan.write(writer, True)
                plan.write(writer, False)
        except (WriteError, operations.InputError) as exc:
            return self._finish(proposal_id, incident_id, "rollback_failed",
                                {**numbers, "error": f"verification failed; the rollback failed too: {exc}"})
        finally:
            api_client.close()
        return self._finish(proposal_id, incident_id, "rolled_back",
                            {**numbers, "error": "verification failed; the step was rolled back"})
