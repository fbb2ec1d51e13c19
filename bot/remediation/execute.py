"""ACT and VERIFY: run approved steps exactly once, check them with Prometheus, roll back.

1. claim: `approved` → `running` with a conditional UPDATE (one worker, one replica wins);
2. the policy runs once more (`phase="execute"`): a kill switch or freeze that came on after the
   approval, or an approval older than its TTL, stops the step here (`denied`), before any write;
3. the operation is planned again on the live object and dry-run; the calls the dry run made
   (the *intent*, `bot.remediation.intent`) and the captured undo are recorded with the lease
   renewed, in one conditional UPDATE on this worker's lease, *before* the write; then the write,
   with the lease renewed (still conditionally) before each of its requests, retrying only the
   failures the step allows (conflict, unavailable, timeout). A write whose answer was lost
   (timeout, connection dropped) is judged against its intent before any retry;
4. `verifying`: the step's PromQL is polled until it holds (`succeeded`) or its window ends
   (`failed`, then the rollback when `on_failure: rollback`: `rolling_back` under a lease, the
   undo's intent recorded before it is applied, as for a rollback a person asks for; the thread
   says so with the numbers before and after).
5. a runbook's next step is proposed when this one succeeded (or failed with `on_failure:
   continue`), and goes through the same approval and checks as the first.
Verification is a state, not a loop: each poll is a short unit of work, so a worker is never
parked for the verification window and a restart resumes it.

A step on a database (`postgres.*`, `bot.remediation.sql_operations`) takes the same path without
Kubernetes: planned again on the live database, its intent and undo recorded under the lease,
then one statement while a heartbeat renews the lease (a concurrent index build may outlast any
lease), never retried; its `verify.sql` holds when the query returns true, and its rollback is
the captured `DROP INDEX CONCURRENTLY`.

No data is not a failure. Which samples decide (`verdict_at_deadline`): a real sample that
holds succeeds at once; at the end of the window, when at least one real sample was read, the
last real one decides (nulls between them change nothing: a null is "could not read", not
"bad"); when no real sample was read in the whole window (Prometheus unreachable, not
configured, or the query matches no series), the step is `unverified`: nothing is rolled back,
the thread says so and offers Roll back / Accept to a person (`bot.incidents.unverified_steps`)
for `DECIDE_WINDOW`; nobody deciding by then ends it `unverified_expired` (the change stays).
A requested Roll back is checked against `ROLLBACK_GATES` (kill switch, freeze) just before it
writes. Without a Prometheus URL the step is unverified at once rather than after the window.

A worker that dies mid-step leaves `running` with a lease that lapses; `recovery` takes it over
(exactly once across replicas) and never writes again. The worker's own later transitions are
conditional on still holding its lease, so a worker that outlived it loses to the recovery.
"""

from __future__ import annotations

import logging
import operator
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from prometheus_api_client import PrometheusConnect
from sqlalchemy.orm import Session

from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Proposal
from bot.policy import engine
from bot.remediation import catalog, intent, operations, recovery, sql_operations, store
from bot.remediation.kit import RemediationKit
from bot.remediation.kube_write import KubeWriter, WriteError
from bot.remediation.propose import propose, rendered_input
from bot.remediation.runbook_model import Step
from bot.remediation.sql_write import HeartbeatStopped, SqlWriter
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
           "!=": operator.ne}
FIRST_CHECK_SECONDS = 5
VERIFY_POLL_LEASE = timedelta(seconds=60)
DECIDE_WINDOW = timedelta(days=7)  # how long the Roll back / Accept buttons of an unverified step stay valid
EXPIRED_NOTE = ("Nobody rolled this step back or accepted it within {days} days: the buttons expired and the change "
                "stays as it is. Propose a step if it still needs undoing.")
ROLLBACK_GATES = ("kill_switch", "change_freeze")  # what stops a requested rollback at the moment it writes
AMBIGUOUS = ("timeout", "unavailable")  # a write that failed this way may have been applied all the same


class LeaseLost(Exception):
    """Another worker recovered the step: this one must not write."""


class Denied(Exception):
    """The policy denies the write now (a kill switch or freeze came on since it was asked for)."""

    def __init__(self, reason: str, decision: dict[str, Any]):
        super().__init__(reason)
        self.reason, self.decision = reason, decision


def gate_denial(kit: RemediationKit, session: Session, proposal: Proposal, phase: str, now: datetime,
                gates: tuple[str, ...], **who: Any) -> tuple[str | None, engine.Decision]:
    """The policy run for `proposal` with only `gates` deciding (and the engine itself: an
    evaluation that failed is a deny). The approval rules about approving a step are left out
    (no recorded approvals, no requester): this judges a decision about its result. The
    denial's reason with its hint, or None; and the whole decision for the timeline."""
    request, state = kit.request(session, proposal, phase, now, **who)
    decision = engine.decide(replace(request, approvals=(), requester=None), kit.policy, state)
    denial = next((g for g in decision.gates if g.outcome == "deny" and (g.gate in gates or g.gate == "engine")),
                  None)
    return (None if denial is None else f"{denial.reason}. {engine.HINTS.get(denial.gate, '')}".strip()), decision


def verdict_at_deadline(real_samples: int) -> str:
    """At the end of the window, with no sample holding: `unverified` when no real (non-null)
    sample was read in the whole window, else `failed` (the last real one did not hold)."""
    return "unverified" if real_samples == 0 else "failed"


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
        """`lease`: how long a worker holds a step it is writing before another may recover it.
        Each Kubernetes request is bounded by half of it, and the lease is renewed (on the
        condition that this worker still holds it) before every mutating request, so it lapses
        only when the worker has stopped or hung, never during a live write of many calls."""
        self._kit, self._owner_prefix, self._lease = kit, owner, lease

    @property
    def kit(self) -> RemediationKit:
        return self._kit

    @property
    def lease(self) -> timedelta:
        return self._lease

    def owner(self) -> str:
        return f"{self._owner_prefix}:{uuid.uuid4().hex[:12]}"

    def writer(self, api_client, step: Step | None = None) -> KubeWriter:
        """A writer whose every request ends (answered or given up) within half the lease. With
        the lease renewed before each mutating request (`_hold`, through `intent.Leased`), the
        lease outlives every request a live worker has in flight, however many a write makes."""
        seconds = min(30.0, self._lease.total_seconds() / 2, *((step.timeout_seconds,) if step else ()))
        return KubeWriter(api_client, request_seconds=seconds)

    def round(self) -> bool:
        kit, now = self._kit, self._kit.clock()
        owner = self.owner()
        with reading(kit.factory) as session:
            expired = store.expired(session, now)
            executable = store.has_executable(session)
            due = store.due_verifications(session, now)
            lapsed = store.lapsed(session, now)
            rollbacks = store.has_rollbacks(session)
            undecided = store.undecided_past_window(session, now)
        recovered = [recovery.recover(self, proposal_id) for proposal_id in lapsed]
        for proposal_id in expired:  # one transaction each: rows lock proposal first, then incident
            with unit_of_work(kit.factory) as session:
                if store.transition(session, proposal_id, ("proposed",), "expired", now):
                    incident_id = session.get(Proposal, proposal_id).incident_id
                    chain.append(session, incident_id, "remediation.expired", ACTOR, {"proposal": proposal_id}, now)
        ran = []
        for waiting, claim, work in ((executable, store.claim_executable, self.run),
                                     (rollbacks, store.claim_rollbacks, self.roll_back_requested)):
            if waiting:
                with unit_of_work(kit.factory) as session:
                    claimed = claim(session, now, owner, self._lease)
                ran += [work(proposal_id, owner) for proposal_id in claimed]
        for proposal_id in due:
            self.verify(proposal_id)
        expired_undecided = [self.expire_undecided(proposal_id) for proposal_id in undecided]
        return bool(ran or due or any(recovered) or any(expired_undecided))

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
        sql = sql_operations.is_sql(step.operation)  # a database step: no Kubernetes at all
        access = None if sql else kit.clusters.resolve(cluster)
        if not sql and (access is None or access.api_client is None):
            return self.finish(proposal_id, incident_id, "failed", {"error": "Kubernetes is not configured"},
                                owner=owner)
        api_client = None if sql else access.api_client()
        try:
            applied = self._apply_sql(step, params, proposal_id, owner) if sql else \
                self._apply(self.writer(api_client, step), step, params, proposal_id, owner)
        except LeaseLost:
            log.warning("step %s: its lease was lost (another worker recovered it): no further writes", proposal_id)
            return "taken"
        finally:
            if api_client is not None:
                api_client.close()
        if "recovery" in applied:  # the statement may still run on the server: judged once the lease lapses
            log.warning("step %s: %s", proposal_id, applied["recovery"])
            return "left to recovery"
        if "error" in applied:
            return self.finish(proposal_id, incident_id, "failed", applied, owner=owner)
        with unit_of_work(kit.factory) as session:
            if not store.renew(session, proposal_id, "running", owner, kit.clock() + self._lease):
                return "taken"  # recovered meanwhile: the recovery judges and records what happened
            chain.append(session, incident_id, "remediation.applied", ACTOR, {"proposal": proposal_id, **applied},
                         kit.clock())
        if step.verify is None:
            return self.finish(proposal_id, incident_id, "succeeded", {**applied, "verified": "no verify block"},
                                owner=owner)
        return self.start_verifying(proposal_id, incident_id, step, params, access.prometheus_url if access else None,
                                    applied, owner)

    def start_verifying(self, proposal_id: int, incident_id: int, step: Step, params: dict[str, Any],
                        url: str | None, result: dict[str, Any], owner: str) -> str:
        """`running` → `verifying` with the first sample (or `unverified` at once when there is
        no Prometheus to ask). Also where a recovered step that was found applied goes on."""
        if not url and step.verify.sql is None:
            return self.unverified(proposal_id, incident_id, "Prometheus is not configured", result, owner,
                                   ("running",))
        before, problem = self._read_check(step, params, url)
        later = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            current = session.get(Proposal, proposal_id).result or {}
            store.transition(session, proposal_id, ("running",), "verifying", later, owner=owner, lease_owner=None,
                             lease_until=None, verify_deadline=later + timedelta(seconds=step.verify.within_seconds),
                             next_check_at=later + timedelta(seconds=min(FIRST_CHECK_SECONDS, step.verify.poll_seconds)),
                             result={**current, **result, "samples": [[later.isoformat(), before]],
                                     "real_samples": int(before is not None), "read_problem": problem})
        return "verifying"

    def _intend(self, proposal_id: int, owner: str, status: str, key: str, calls: list[dict[str, Any]],
                gates: tuple[str, ...] = (), **values: Any) -> None:
        """Record what is about to be written (and renew the lease) while this worker still holds
        it; LeaseLost otherwise. Committed before the write, so a recovery can always judge it.
        With `gates`, the policy's verdict on those gates is read in the same transaction, and a
        denial (`Denied`) records nothing: a kill switch set until this moment stops the write."""
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            if gates:
                denial, decision = gate_denial(self._kit, session, proposal, "execute", now, gates)
                if denial is not None:
                    raise Denied(denial, decision.as_dict())
            if not store.renew(session, proposal_id, status, owner, now + self._lease,
                               result={**(proposal.result or {}), key: {"calls": calls, "at": now.isoformat()}},
                               **values):
                raise LeaseLost(proposal_id)

    def _hold(self, proposal_id: int, owner: str, status: str) -> Callable[[], None]:
        """The renewal `intent.Leased` runs before each mutating request of a write: the lease
        is extended only while this worker holds it, else LeaseLost stops the write at once."""
        def renew() -> None:
            with unit_of_work(self._kit.factory) as session:
                if not store.renew(session, proposal_id, status, owner, self._kit.clock() + self._lease):
                    raise LeaseLost(proposal_id)
        return renew

    def _beat(self, proposal_id: int, owner: str, status: str) -> Callable[[], bool]:
        """The heartbeat of a long statement (`SqlWriter.leased`): the lease renewed, False once
        it is lost. A renewal that fails otherwise (the bot's database briefly away) raises, and
        the writer tries again at the next beat, well before the lease ends."""
        renew = self._hold(proposal_id, owner, status)

        def beat() -> bool:
            try:
                renew()
            except LeaseLost:
                return False
            return True
        return beat

    def _sql_writer(self, proposal_id: int) -> SqlWriter:
        return SqlWriter(self._kit.databases, tag=sql_operations.tag_of(proposal_id))

    def _apply_sql(self, step: Step, params: dict[str, Any], proposal_id: int, owner: str) -> dict[str, Any]:
        """A postgres.* step: planned again on the live database; its intent and undo recorded
        under the lease; then its one statement, the lease renewed by a heartbeat every quarter
        of it. Never retried: after a failure the database says what is left
        (`sql_operations.after_failure`)."""
        writer = self._sql_writer(proposal_id).leased(self._beat(proposal_id, owner, "running"),
                                                      self._lease.total_seconds() / 4)
        try:
            return sql_operations.apply(writer, step, rendered_input(step, params), lambda calls, undo: self._intend(
                proposal_id, owner, "running", "intent", calls, undo=undo))
        except HeartbeatStopped as exc:
            raise LeaseLost(proposal_id) from exc

    def _read_check(self, step: Step, params: dict[str, Any], url: str | None) -> tuple[float | None, str | None]:
        """One reading of the step's check: its SQL on the database, or its PromQL."""
        if step.verify.sql is None:
            return self._sample(url, catalog.check_query(step.verify, params))
        try:
            return sql_operations.check(self._sql_writer(None), step, params, rendered_input(step, params))
        except Exception as exc:  # noqa: BLE001 - a failed read is "no value", recorded as such
            log.warning("verification query failed: %s", exc)
            return None, f"the database could not be read ({type(exc).__name__})"

    def _apply(self, writer: KubeWriter, step: Step, params: dict[str, Any], proposal_id: int,
               owner: str) -> dict[str, Any]:
        values = rendered_input(step, params)
        deadline = time.monotonic() + step.timeout_seconds
        for attempt in range(1, step.retry.attempts + 1):
            calls: list[dict[str, Any]] = []
            undo = None
            try:
                plan = operations.plan(writer, step.operation, values)
                recorder = intent.Recorder(writer)
                plan.write(recorder, True)
                calls, undo = recorder.calls, (plan.undo if "target" in step.capture else None)
                self._intend(proposal_id, owner, "running", "intent", calls, undo=undo)
                done = {"summary": plan.summary, "diff": [[p, b, a] for p, b, a in plan.diff], "attempts": attempt}
                try:
                    outcome = plan.write(intent.Leased(writer, self._hold(proposal_id, owner, "running")), False)
                except WriteError as exc:
                    if exc.kind not in AMBIGUOUS or self._judged(writer, calls, undo) != "applied":
                        raise
                    log.warning("step %s: the answer to its write was lost (%s), the change is applied", step.id, exc)
                    return {**done, "note": f"the API server's answer was lost ({exc.kind}); the change was found "
                                            "applied"}
                return {**done, **({"outcome": outcome} if isinstance(outcome, dict) and "evicted" in outcome else {})}
            except WriteError as exc:
                retryable = exc.kind in step.retry.on_errors and attempt < step.retry.attempts and time.monotonic() < deadline
                if retryable and calls and exc.kind in AMBIGUOUS and self._judged(writer, calls, undo) != "not_applied":
                    retryable = False  # it may have been applied: never write twice
                log.warning("step %s attempt %d: %s%s", step.id, attempt, exc, " (retrying)" if retryable else "")
                if not retryable:
                    return {"error": str(exc), "error_kind": exc.kind, "attempts": attempt}
                time.sleep(min(2 ** attempt, 10))
            except operations.InputError as exc:
                return {"error": str(exc), "error_kind": "invalid", "attempts": attempt}
        return {"error": "out of attempts", "attempts": step.retry.attempts}

    def _judged(self, writer: KubeWriter, calls: list[dict[str, Any]], undo: dict[str, Any] | None) -> str:
        try:
            return intent.judge(writer, calls, intent.undo_calls(undo)).verdict
        except WriteError:
            return "undecided"

    def _sample(self, url: str | None, query: str) -> tuple[float | None, str | None]:
        """The value (None: no data) and, when there is none, why."""
        if not url:
            return None, "Prometheus is not configured"
        try:
            value = sample(url, query)
        except Exception as exc:  # noqa: BLE001 - a failed read is "no value", recorded as such
            log.warning("verification query failed: %s", exc)
            return None, f"Prometheus could not be read ({type(exc).__name__})"
        return value, None if value is not None else "the query returned no series"

    def finish(self, proposal_id: int, incident_id: int, status: str, result: dict[str, Any],
                owner: str | None = None, from_statuses: tuple[str, ...] = ("running", "verifying"),
                next_step: bool = True) -> str:
        """The step's final status, once (the winner of the conditional UPDATE records it; with
        `owner`, only while that worker holds the lease)."""
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            won = store.transition(session, proposal_id, from_statuses, status, now, owner=owner, finished_at=now,
                                   lease_owner=None, lease_until=None, next_check_at=None,
                                   result=recovery.settled({**(proposal.result or {}), **result}))
            if won:  # a worker that lost the race records nothing: the winner's entry stands
                chain.append(session, incident_id, f"remediation.{status}", ACTOR, {"proposal": proposal_id, **result},
                              now)
        if won and next_step:
            propose_next(self._kit, proposal, status)
        return status

    def unverified(self, proposal_id: int, incident_id: int, reason: str, result: dict[str, Any], owner: str | None,
                   from_statuses: tuple[str, ...] = ("verifying",)) -> str:
        """Applied, and nothing could say whether it worked: no rollback, no next step; a person
        decides with the Roll back / Accept buttons, valid for `DECIDE_WINDOW`, after which the
        step expires (`expire_undecided`: `next_check_at` is when)."""
        now = self._kit.clock()
        until = now + DECIDE_WINDOW
        with unit_of_work(self._kit.factory) as session:
            current = session.get(Proposal, proposal_id).result or {}
            if store.transition(session, proposal_id, from_statuses, store.UNVERIFIED, now, owner=owner,
                                lease_owner=None, lease_until=None, next_check_at=until,
                                result=recovery.settled({**current, **result, "unverified": reason,
                                                         "decide_until": until.isoformat()})):
                chain.append(session, incident_id, "remediation.unverified", ACTOR,
                             {"proposal": proposal_id, "why": reason}, now)
        return store.UNVERIFIED

    def back_to_unverified(self, proposal_id: int, incident_id: int, owner: str, note: str, kind: str,
                           details: dict[str, Any]) -> str:
        """A rollback a person asked for that did not write (denied by the policy, or found not
        applied by a recovery): `rolling_back` → `unverified` again, buttons back, with the
        same reason and the same decision window as before (it does not start over)."""
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            current = proposal.result or {}
            until = datetime.fromisoformat(current["decide_until"]) if current.get("decide_until") else \
                now + DECIDE_WINDOW
            if store.transition(session, proposal_id, ("rolling_back",), store.UNVERIFIED, now, owner=owner,
                                lease_owner=None, lease_until=None, next_check_at=until,
                                result={**current, "note": note, "decide_until": until.isoformat()}):
                chain.append(session, incident_id, kind, ACTOR, {"proposal": proposal_id, **details}, now)
        return store.UNVERIFIED

    def expire_undecided(self, proposal_id: int) -> str | None:
        """An unverified step nobody decided on within `DECIDE_WINDOW`: its buttons no longer
        verify, so it ends `unverified_expired` (the change stays as it is, nothing is rolled
        back, no next step); the thread's message says so and the timeline records it."""
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            if not store.transition(session, proposal_id, (store.UNVERIFIED,), store.UNVERIFIED_EXPIRED, now,
                                    finished_at=now, next_check_at=None,
                                    result={**(proposal.result or {}), "note": EXPIRED_NOTE.format(
                                        days=DECIDE_WINDOW.days)}):
                return None
            chain.append(session, proposal.incident_id, f"remediation.{store.UNVERIFIED_EXPIRED}", ACTOR,
                         {"proposal": proposal_id, "window_days": DECIDE_WINDOW.days}, now)
        return store.UNVERIFIED_EXPIRED

    # -- verify ----------------------------------------------------------------------------------

    def verify(self, proposal_id: int) -> str:
        kit = self._kit
        now = kit.clock()
        owner = self.owner()
        with unit_of_work(kit.factory) as session:
            if not store.lease(session, proposal_id, "verifying", owner, now, now + VERIFY_POLL_LEASE):
                return "taken"
            proposal = session.get(Proposal, proposal_id)
            _runbook, step = kit.step_of(proposal)
            params, cluster, incident_id = dict(proposal.params), proposal.cluster, proposal.incident_id
            deadline, samples = proposal.verify_deadline, list((proposal.result or {}).get("samples") or [])
            real_samples = int((proposal.result or {}).get("real_samples") or 0)
        access = kit.clusters.resolve(cluster)
        url = access.prometheus_url if access else None
        if step is None or step.verify is None:
            return self.finish(proposal_id, incident_id, "failed", {"error": "the step's verify block is gone"},
                                owner=owner)
        query = catalog.check_query(step.verify, params)
        value, problem = self._read_check(step, params, url)
        samples.append([now.isoformat(), value])
        real_samples += value is not None
        compare, threshold = step.verify.expectation
        holds = value is not None and COMPARE[compare](value, threshold)
        readable = bool(url) or step.verify.sql is not None  # a SQL check asks the database, not Prometheus
        numbers = {"samples": samples[-20:], "query": query, "expect": step.verify.expectation_text,
                   "before": samples[0][1], "after": value, "real_samples": real_samples, "read_problem": problem}
        if holds:
            return self.finish(proposal_id, incident_id, "succeeded", numbers, owner=owner)
        if now < deadline and readable:
            with unit_of_work(kit.factory) as session:
                proposal = session.get(Proposal, proposal_id)
                session.execute(Proposal.__table__.update().where(Proposal.id == proposal_id, Proposal.lease_owner == owner)
                                .values(lease_owner=None, lease_until=None, result={**proposal.result, **numbers},
                                        next_check_at=now + timedelta(seconds=step.verify.poll_seconds)))
            return "verifying"
        if not readable or verdict_at_deadline(real_samples) == "unverified":  # no Prometheus now: a person decides
            return self.unverified(proposal_id, incident_id, f"no data to verify with: {problem}", numbers, owner)
        if step.on_failure == "rollback" and step.rollback and step.rollback.operation:
            return self._roll_back(proposal_id, numbers, owner)
        return self.finish(proposal_id, incident_id, "failed", {**numbers, "error": "verification failed"},
                            owner=owner)

    def _roll_back(self, proposal_id: int, numbers: dict[str, Any], owner: str) -> str:
        """After a failed verification (`on_failure: rollback`): `verifying` → `rolling_back`
        under this worker's lease, then the same path as a rollback a person asked for (intent
        recorded before the write), so a kill during it is recovered, never re-applied."""
        now = self._kit.clock()
        with unit_of_work(self._kit.factory) as session:
            current = session.get(Proposal, proposal_id).result or {}
            if not store.transition(session, proposal_id, ("verifying",), "rolling_back", now, owner=owner,
                                    lease_owner=owner, lease_until=now + self._lease, next_check_at=None,
                                    result={**current, **numbers, store.AUTO_ROLLBACK: True}):
                return "taken"
        return self.roll_back_requested(proposal_id, owner)

    # -- a rollback: a person's (an unverified step's Roll back button) or after a failed check ----

    def roll_back_requested(self, proposal_id: int, owner: str) -> str:
        """`rolling_back` (claimed by this worker). For a person's Roll back, the policy's
        `ROLLBACK_GATES` are read again just before the write (a kill switch or freeze set after
        the click stops it: back to `unverified`, said in the thread and on the timeline). The
        undo's intent is recorded before its write and the lease renewed before each request,
        as for a step, so a crash here is recovered without writing twice."""
        kit = self._kit
        with reading(kit.factory) as session:
            proposal = session.get(Proposal, proposal_id)
            _runbook, step = kit.step_of(proposal)
            params, cluster, incident_id, undo = dict(proposal.params), proposal.cluster, proposal.incident_id, \
                proposal.undo
            who = (proposal.result or {}).get("rollback_requested_by")
            automatic = bool((proposal.result or {}).get(store.AUTO_ROLLBACK))
        sql = step is not None and sql_operations.is_sql(step.operation)  # the captured DROP INDEX
        access = None if sql else kit.clusters.resolve(cluster)
        failed = {"from_statuses": ("rolling_back",), "owner": owner, "next_step": False}
        why = "verification failed; " if automatic else ""
        if not sql and (access is None or access.api_client is None or step is None):
            return self.finish(proposal_id, incident_id, "rollback_failed",
                                {"error": f"{why}the rollback could not start: Kubernetes or the step is gone"},
                                **failed)
        api_client = None if sql else access.api_client()
        before_write = lambda calls: self._intend(  # noqa: E731
            proposal_id, owner, "rolling_back", "rollback_intent", calls, gates=() if automatic else ROLLBACK_GATES)
        try:
            if sql:
                sql_operations.apply_undo(self._sql_writer(proposal_id).leased(
                    self._beat(proposal_id, owner, "rolling_back"), self._lease.total_seconds() / 4), undo, before_write)
            else:
                rollback_writes(self.writer(api_client, step), step, params, undo, before_write=before_write,
                                renew=self._hold(proposal_id, owner, "rolling_back"))
        except (LeaseLost, HeartbeatStopped):
            return "taken"
        except Denied as exc:
            log.warning("rollback of step %s denied at execution: %s", proposal_id, exc.reason)
            return self.back_to_unverified(proposal_id, incident_id, owner, f"Not rolled back: {exc.reason}",
                                           "remediation.rollback_denied", {"reason": exc.reason,
                                                                           "decision": exc.decision})
        except (WriteError, operations.InputError) as exc:
            return self.finish(proposal_id, incident_id, "rollback_failed",
                                {"error": f"{why}the rollback failed{' too' if automatic else ''}: {exc}"}, **failed)
        finally:
            if api_client is not None:
                api_client.close()
        done = {"error": "verification failed; the step was rolled back"} if automatic else {"rolled_back_by": who}
        return self.finish(proposal_id, incident_id, "rolled_back", done, **failed)


def rollback_available(step: Step | None, undo: dict[str, Any] | None) -> bool:
    """Whether the step can be undone: its declared rollback operation, or the captured undo."""
    if step is not None and step.rollback and step.rollback.operation and step.rollback.operation != operations.RESTORE:
        return True
    return bool(undo)


def rollback_writes(writer: KubeWriter, step: Step, params: dict[str, Any], undo: dict[str, Any] | None,
                    before_write: Callable[[list[dict[str, Any]]], None], renew: Callable[[], None]) -> None:
    """Dry-run then apply the step's rollback: its declared operation, else the captured undo.
    `before_write` gets the calls the dry run made, before the real write (to record them);
    `renew` runs before each of the real write's requests (`intent.Leased`)."""
    recorder = intent.Recorder(writer)
    leased = intent.Leased(writer, renew)
    operation = step.rollback.operation if step.rollback else None
    if operation and operation != operations.RESTORE:
        values = {k: catalog.render(v, params) for k, v in step.rollback.input.items()}
        plan = operations.plan(writer, operation, values)
        plan.write(recorder, True)
        write = lambda: plan.write(leased, False)  # noqa: E731
    else:
        if not undo:
            raise WriteError("invalid", "nothing was captured to restore")
        operations.apply_undo(recorder, undo, dry_run=True)
        write = lambda: operations.apply_undo(leased, undo)  # noqa: E731
    before_write(recorder.calls)
    write()


def propose_next(kit: RemediationKit, finished: Proposal, status: str) -> None:
    """A runbook's next step is proposed (planned, dry-run, decided, approved again) once
    this one succeeded (or was accepted without verification by a person), or failed with
    `on_failure: continue`; never after a stop, a rollback or while unverified, nor once the
    incident is closed. Only the caller whose transition won gets here, so it is proposed once;
    when it cannot be proposed the timeline says why."""
    runbook, step = kit.step_of(finished)
    if runbook is None or step is None:
        return
    index = next(i for i, s in enumerate(runbook.steps) if s.id == step.id)
    if index + 1 >= len(runbook.steps) or not (status in ("succeeded", "accepted") or
                                               (status == "failed" and step.on_failure == "continue")):
        return
    following = runbook.steps[index + 1].id
    with reading(kit.factory) as session:
        still_open = session.get(Incident, finished.incident_id).is_open
    why = None if still_open else "the incident is no longer open"
    if why is None:
        try:
            propose(kit, finished.incident_id, runbook, dict(finished.params),
                    requested_by=finished.requested_by, cluster=finished.cluster,
                    labels=dict(finished.labels or {}), step_index=index + 1)
            return
        except Exception as exc:  # noqa: BLE001 - the finished step stands; the timeline says why
            log.exception("proposing step %s of %s failed", following, runbook.id)
            why = f"proposing it failed ({type(exc).__name__})"
    with unit_of_work(kit.factory) as session:
        chain.append(session, finished.incident_id, "remediation.next_step_not_proposed", ACTOR,
                     {"after": finished.id, "runbook": runbook.id, "step": following, "why": why}, kit.clock())
