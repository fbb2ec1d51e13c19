"""What the remediation flows share: the catalog, the policy, cluster access, the button key,
who is in which approver group, the databases the postgres.* operations may write to, and the
helpers that turn a stored proposal into a policy request. Built once per runtime
(`Runtime.remediation`)."""

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
from bot.policy.model import ApproverGroup, Policy
from bot.remediation import store
from bot.remediation.catalog import Catalog
from bot.remediation.runbook_model import Runbook, Step

log = logging.getLogger(__name__)
GROUP_CACHE_SECONDS = 60.0


OnCallReader = Callable[[tuple[str, ...], tuple[str, ...]], frozenset[str]]


@dataclass
class GroupResolver:
    """Which approver groups a Slack user is in: the policy's static lists, Slack user groups
    (usergroups.users.list) and PagerDuty's current on-call (`read_on_call`: schedules and
    escalation policies to Slack ids). Lookups are cached for a minute; a failed one counts as
    not a member, never as a member."""

    policy: Policy
    read_usergroup: Callable[[str], list[str]] | None = None
    read_on_call: OnCallReader | None = None
    _cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _cached(self, key: str, load: Callable[[], frozenset[str]]) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(key)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            members = load()
        except Exception as exc:  # noqa: BLE001 - fail closed: unknown membership is no membership
            log.warning("cannot read the members of %s: %s", key, exc)
            return frozenset()
        with self._lock:
            self._cache[key] = (time.monotonic(), members)
        return members

    def _in_slack_usergroup(self, user: str, usergroup: str) -> bool:
        read = self.read_usergroup
        return bool(read) and user in self._cached(f"Slack user group {usergroup}",
                                                   lambda: frozenset(read(usergroup)))

    def _on_call(self, user: str, name: str, group: ApproverGroup) -> bool:
        read = self.read_on_call
        schedules, policies = tuple(group.pagerduty_schedules), tuple(group.pagerduty_escalation_policies)
        return bool(read) and user in self._cached(f"PagerDuty on-call of group {name}",
                                                   lambda: read(schedules, policies))

    def groups_of(self, user: str) -> frozenset[str]:
        found = set()
        for name, group in self.policy.approver_groups.items():
            if user in group.users \
                    or (group.slack_usergroup and self._in_slack_usergroup(user, group.slack_usergroup)) \
                    or (group.uses_pagerduty and self._on_call(user, name, group)):
                found.add(name)
        return frozenset(found)


def pagerduty_on_call_reader(on_call_emails: Callable[[tuple[str, ...], tuple[str, ...]], set[str]],
                             slack_id_by_email: Callable[[str], str | None]) -> OnCallReader:
    """Slack ids of the people PagerDuty has on call now (`PagerDutyLink.on_call_emails`),
    matched to Slack users by email (`SlackGateway.user_id_by_email`); people with no Slack
    account under that email are left out."""

    def read(schedules: tuple[str, ...], policies: tuple[str, ...]) -> frozenset[str]:
        found = (slack_id_by_email(email) for email in sorted(on_call_emails(schedules, policies)))
        return frozenset(user for user in found if user)

    return read


@dataclass
class RemediationKit:
    factory: sessionmaker[Session]
    catalog: Catalog
    policy: Policy
    clusters: ClusterDirectory
    key: bytes
    clock: Clock
    groups: GroupResolver
    # database name -> the environment variable holding its write DSN (`DatabaseTarget.dsn_write_env`),
    # for the postgres.* operations; the DSN itself is read only when a connection opens
    databases: dict[str, str] = field(default_factory=dict)

    def step_of(self, proposal: Proposal) -> tuple[Runbook | None, Step | None]:
        runbook = self.catalog.get(proposal.runbook_id)
        step = next((s for s in runbook.steps if s.id == proposal.step_id), None) if runbook else None
        return runbook, step

    def request(self, session: Session, proposal: Proposal, phase: str, now: datetime, *, actor: str | None = None,
                actor_groups: frozenset[str] | None = None,
                channel: str | None = None) -> tuple[engine.Request, engine.State]:
        """The policy request and world state for a stored proposal at `phase`. Callers holding
        locks pass `actor_groups`, resolved beforehand (resolving may ask Slack and PagerDuty)."""
        if actor_groups is None:
            actor_groups = self.groups.groups_of(actor) if actor else frozenset()
        runbook, step = self.step_of(proposal)
        facts = step_facts(runbook, step, proposal.runbook_id, proposal.step_id)
        plan = proposal.plan or {}
        approvals = tuple(engine.Approval(a.user_id, a.at) for a in store.approvals(session, proposal.id))
        request = engine.Request(
            step=facts, phase=phase, now=now, namespace=proposal.namespace, target=proposal.target,
            labels=dict(proposal.labels or {}), actor=actor,
            actor_groups=actor_groups, channel=channel,
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
