"""What the remediation flows share: the catalog, the policy, cluster access, the button key,
who is in which approver group, and the helpers that turn a stored proposal into a policy
request. Built once per runtime (`Runtime.remediation`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.context.clusters import ClusterDirectory
from bot.db.models import Proposal
from bot.policy import engine
from bot.policy.model import Policy
from bot.remediation import store
from bot.remediation.catalog import Catalog
from bot.remediation.runbook_model import Runbook, Step

log = logging.getLogger(__name__)
GROUP_CACHE_SECONDS = 60.0


@dataclass
class GroupResolver:
    """Which approver groups a Slack user is in: the policy's static lists, plus Slack user
    groups read with usergroups.users.list (cached for a minute; a failed read counts as
    not a member, never as a member)."""

    policy: Policy
    read_usergroup: Callable[[str], list[str]] | None = None
    _cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _members(self, usergroup: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(usergroup)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            members = frozenset(self.read_usergroup(usergroup)) if self.read_usergroup else frozenset()
        except Exception as exc:  # noqa: BLE001 - fail closed: unknown membership is no membership
            log.warning("cannot read Slack user group %s: %s", usergroup, exc)
            return frozenset()
        with self._lock:
            self._cache[usergroup] = (time.monotonic(), members)
        return members

    def groups_of(self, user: str) -> frozenset[str]:
        found = set()
        for name, group in self.policy.approver_groups.items():
            if user in group.users or (group.slack_usergroup and user in self._members(group.slack_usergroup)):
                found.add(name)
        return frozenset(found)


@dataclass
class RemediationKit:
    factory: sessionmaker[Session]
    catalog: Catalog
    policy: Policy
    clusters: ClusterDirectory
    key: bytes
    clock: Clock
    groups: GroupResolver

    def step_of(self, proposal: Proposal) -> tuple[Runbook | None, Step | None]:
        runbook = self.catalog.get(proposal.runbook_id)
        step = next((s for s in runbook.steps if s.id == proposal.step_id), None) if runbook else None
        return runbook, step

    def request(self, session: Session, proposal: Proposal, phase: str, now: datetime, *, actor: str | None = None,
                channel: str | None = None) -> tuple[engine.Request, engine.State]:
        """The policy request and world state for a stored proposal at `phase`."""
        runbook, step = self.step_of(proposal)
        facts = step_facts(runbook, step, proposal.runbook_id, proposal.step_id)
        plan = proposal.plan or {}
        approvals = tuple(engine.Approval(a.user_id, a.at) for a in store.approvals(session, proposal.id))
        request = engine.Request(
            step=facts, phase=phase, now=now, namespace=proposal.namespace, target=proposal.target,
            labels=dict(proposal.labels or {}), actor=actor,
            actor_groups=self.groups.groups_of(actor) if actor else frozenset(), channel=channel,
            requester=proposal.requested_by, approvals=approvals, pods_affected=int(plan.get("pods_affected") or 0),
            replica_factor=plan.get("replica_factor"))
        state = engine.State(kill_switches=store.kill_switches(session),
                             recent_runs=store.recent_runs(session, now - timedelta(days=1)),
                             running_on_target=store.running_on(session, proposal.target, excluding=proposal.id))
        return request, state

    def decide(self, session: Session, proposal: Proposal, phase: str, now: datetime, **who) -> engine.Decision:
        request, state = self.request(session, proposal, phase, now, **who)
        return engine.decide(request, self.policy, state)


def step_facts(runbook: Runbook | None, step: Step | None, runbook_id: str, step_id: str,
               param_problems: tuple[str, ...] = ()) -> engine.StepFacts:
    """The policy's view of a step. A runbook or step that no longer exists is a disabled one
    (the engine then denies it)."""
    if runbook is None or step is None:
        return engine.StepFacts(runbook_id, step_id, False, "high", True, (), 1, False, timedelta(0),
                                param_problems=(f"runbook {runbook_id} step {step_id} no longer exists",))
    return engine.StepFacts(
        runbook=runbook.id, step=step.id, enabled=runbook.enabled, risk=step.risk,
        approval_required=step.approval.required, approver_groups=tuple(step.approval.groups),
        approvals_needed=step.approval.approvals, requester_may_approve=step.approval.requester_may_approve,
        approval_ttl=timedelta(seconds=step.approval.approval_ttl_seconds), max_pods=step.blast_radius.max_pods,
        max_replica_factor=step.blast_radius.max_replica_factor, param_problems=param_problems)
