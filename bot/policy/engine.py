"""GATE: one deterministic function from a request to a decision, failing closed.

    decide(request, policy, state) -> Decision(allow | needs_approval | deny, rule, reason, hint,
                                               gates=(every gate's result, in order), ...)

Gates run in the fixed order of the architecture page, and every one runs (the explanation
shows them all): kill switch, runbook enabled, change freeze, actor and channel, parameter
schema, blast radius, rate limit and concurrency, approval. The decision is the first `deny`
in that order, else `needs_approval` when the approval gate asks for it, else `allow`. Any
exception inside the engine is a deny naming the failure: a bug never lets a step through.

The same function runs when a step is proposed (`phase="propose"`), when a button is clicked
(`"click"`, with the actor) and just before execution (`"execute"`, with the approvals), so a
freeze, a kill switch or a revoked group membership stops a step at whichever point it lands.
Everything the engine needs to know about the world (kill switches set in Slack, recent runs,
who is in which group) comes in `state` and `request`: the engine itself does no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.policy.cron import in_window
from bot.policy.model import AutonomyLevel, Policy, matches
from bot.policy.roles import channel_refusal

log = logging.getLogger(__name__)
Outcome = Literal["pass", "deny", "needs_approval"]
DecisionKind = Literal["allow", "needs_approval", "deny"]
GATES = ("kill_switch", "runbook_enabled", "change_freeze", "actor_and_channel", "parameter_schema", "blast_radius",
         "rate_limit", "approval")


@dataclass(frozen=True)
class StepFacts:
    """What the engine needs to know about the step (from the runbook and the plan)."""

    runbook: str
    step: str
    enabled: bool
    risk: str
    approval_required: bool
    approver_groups: tuple[str, ...]
    approvals_needed: int
    requester_may_approve: bool
    approval_ttl: timedelta
    max_pods: int | None = None
    max_replica_factor: float | None = None
    param_problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approval:
    user: str
    at: datetime


@dataclass(frozen=True)
class Request:
    step: StepFacts
    phase: Literal["propose", "click", "execute"]
    now: datetime
    namespace: str | None
    target: str  # Kind/namespace/name
    labels: dict[str, str] = field(default_factory=dict)
    actor: str | None = None  # Slack user id of who clicked (click phase)
    actor_groups: frozenset[str] = frozenset()
    channel: str | None = None
    requester: str | None = None  # who asked for the step ("opsbot" for the bot's own proposals)
    approvals: tuple[Approval, ...] = ()  # recorded approvals (execute phase; click phase: earlier ones)
    pods_affected: int = 0
    replica_factor: float | None = None
    namespaces_affected: int = 1


@dataclass(frozen=True)
class State:
    """The world as the database sees it at decision time."""

    kill_switches: frozenset[str] = frozenset()  # "global", "namespace:<ns>", "runbook:<id>"
    recent_runs: tuple[tuple[str, str, str, datetime], ...] = ()  # (runbook, target, namespace, when)
    running_on_target: int = 0


@dataclass(frozen=True)
class GateResult:
    gate: str
    outcome: Outcome
    rule: str
    reason: str


@dataclass(frozen=True)
class Decision:
    decision: DecisionKind
    rule: str
    reason: str
    hint: str
    gates: tuple[GateResult, ...]
    autonomy: AutonomyLevel = "approve"
    approver_groups: tuple[str, ...] = ()
    approvals_needed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "rule": self.rule, "reason": self.reason, "hint": self.hint,
                "autonomy": self.autonomy, "approver_groups": list(self.approver_groups),
                "approvals_needed": self.approvals_needed,
                "gates": [{"gate": g.gate, "outcome": g.outcome, "rule": g.rule, "reason": g.reason}
                          for g in self.gates]}


HINTS = {
    "kill_switch": "an allowed person lifts it with /ops unfreeze",
    "runbook_enabled": "set enabled: true in the runbook file",
    "change_freeze": "wait for the window to end, or change policies/*.yaml freeze_windows",
    "actor_and_channel": "ask someone in the listed groups, in an allowed channel",
    "parameter_schema": "the values do not fit the runbook's parameter rules",
    "blast_radius": "a smaller step fits the policy's blast radius",
    "rate_limit": "wait for the window to pass, or raise the limit in policies/*.yaml",
    "approval": "someone in the approver groups clicks Approve",
}


def environment_of(policy: Policy, namespace: str | None, labels: dict[str, str]) -> str | None:
    for name, env in policy.environments.items():
        if (env.namespaces and matches(env.namespaces, namespace)) or \
                (env.labels and all(labels.get(k) == v for k, v in env.labels.items())):
            return name
    return None


def autonomy_for(policy: Policy, runbook: str, namespace: str | None, labels: dict[str, str]) -> AutonomyLevel:
    environment = environment_of(policy, namespace, labels) or ""
    for rule in policy.autonomy.rules:
        if matches(rule.runbooks, runbook) and matches(rule.environments, environment):
            return rule.level
    return policy.autonomy.default


def _kill_switch(r: Request, p: Policy, s: State) -> GateResult:
    active = set(s.kill_switches)
    if p.kill_switch.global_:
        active.add("global")
    active |= {f"namespace:{ns}" for ns in p.kill_switch.namespaces} | {f"runbook:{rb}" for rb in p.kill_switch.runbooks}
    for scope in sorted(active):
        kind, _, value = scope.partition(":")
        if kind == "global" or (kind == "namespace" and matches([value], r.namespace)) or \
                (kind == "runbook" and matches([value], r.step.runbook)):
            return GateResult("kill_switch", "deny", f"kill-switch:{scope}", f"the kill switch is on ({scope})")
    return GateResult("kill_switch", "pass", "kill-switch", "no kill switch applies")


def _enabled(r: Request, p: Policy, s: State) -> GateResult:
    if not r.step.enabled:
        return GateResult("runbook_enabled", "deny", f"runbook:{r.step.runbook}", f"runbook {r.step.runbook} is disabled")
    return GateResult("runbook_enabled", "pass", f"runbook:{r.step.runbook}", "the runbook is enabled")


def _freeze(r: Request, p: Policy, s: State) -> GateResult:
    for window in p.freeze_windows:
        if matches(window.namespaces, r.namespace) and matches(window.runbooks, r.step.runbook) and \
                in_window(window.cron, window.timezone, r.now):
            return GateResult("change_freeze", "deny", f"freeze:{window.id}",
                              f"change freeze {window.id} ({window.cron} {window.timezone}): {window.reason}")
    return GateResult("change_freeze", "pass", "freeze", "no change freeze now")


def _actor(r: Request, p: Policy, s: State) -> GateResult:
    if r.phase == "propose":
        return GateResult("actor_and_channel", "pass", "actors", "nobody acted yet")
    refusal = channel_refusal(p, r.channel) if r.phase == "click" else None  # execution has no channel
    if refusal:
        return GateResult("actor_and_channel", "deny", "channels", refusal)
    allowed = p.actors
    if r.actor is not None and (allowed.users or allowed.groups) and r.actor not in allowed.users \
            and not (set(allowed.groups) & r.actor_groups):
        return GateResult("actor_and_channel", "deny", "actors", f"<@{r.actor}> may not act on steps")
    return GateResult("actor_and_channel", "pass", "actors", "the actor and channel are allowed")


def _schema(r: Request, p: Policy, s: State) -> GateResult:
    if r.step.param_problems:
        return GateResult("parameter_schema", "deny", "params", "; ".join(r.step.param_problems))
    return GateResult("parameter_schema", "pass", "params", "the parameters fit the runbook's schema")


def _blast(r: Request, p: Policy, s: State) -> GateResult:
    max_pods = min(x for x in (p.blast_radius.max_pods, r.step.max_pods) if x is not None)
    factor_limit = min(x for x in (p.blast_radius.max_replica_factor, r.step.max_replica_factor) if x is not None)
    if r.pods_affected > max_pods:
        return GateResult("blast_radius", "deny", "blast-radius:pods",
                          f"{r.pods_affected} pods affected, more than {max_pods}")
    if r.replica_factor is not None and (r.replica_factor > factor_limit or
                                         (r.replica_factor > 0 and 1 / r.replica_factor > factor_limit)):
        return GateResult("blast_radius", "deny", "blast-radius:replicas",
                          f"replicas change by ×{r.replica_factor:.2f}, beyond ×{factor_limit:g}")
    if r.namespaces_affected > p.blast_radius.max_namespaces:
        return GateResult("blast_radius", "deny", "blast-radius:namespaces",
                          f"{r.namespaces_affected} namespaces affected, more than {p.blast_radius.max_namespaces}")
    return GateResult("blast_radius", "pass", "blast-radius", f"{r.pods_affected} pod(s) affected, within {max_pods}")


def _rate(r: Request, p: Policy, s: State) -> GateResult:
    if s.running_on_target >= p.concurrency_per_target:
        return GateResult("rate_limit", "deny", "concurrency",
                          f"{s.running_on_target} step(s) already running on {r.target}")
    for limit in p.rate_limits:
        if not matches(limit.runbooks, r.step.runbook):
            continue
        since = r.now - timedelta(seconds=limit.window_seconds)
        key = {"target": 1, "namespace": 2, "runbook": 0}[limit.per]
        mine = (r.step.runbook, r.target, r.namespace or "")
        count = sum(1 for run in s.recent_runs if run[3] >= since and matches(limit.runbooks, run[0])
                    and run[key] == mine[key])
        if count >= limit.max:
            return GateResult("rate_limit", "deny", f"rate:{limit.id}",
                              f"{count} run(s) per {limit.per} in the last {limit.window_seconds // 60} min "
                              f"(limit {limit.max})")
    return GateResult("rate_limit", "pass", "rate", "within the rate limits")


def _approval(r: Request, p: Policy, s: State) -> GateResult:
    step = r.step
    if not step.approval_required:
        return GateResult("approval", "pass", "approval:none", "the step needs no approval")
    groups = ", ".join(step.approver_groups) or "(no group)"
    if r.phase == "propose":
        return GateResult("approval", "needs_approval", "approval",
                          f"{step.approvals_needed} approval(s) from {groups}")
    if r.phase == "click":
        if not (set(step.approver_groups) & r.actor_groups):
            return GateResult("approval", "deny", "approval:group", f"<@{r.actor}> is not in {groups}")
        if r.actor == r.requester and not step.requester_may_approve:
            return GateResult("approval", "deny", "approval:self", "you requested this step; someone else must approve it")
        if any(a.user == r.actor for a in r.approvals):
            return GateResult("approval", "deny", "approval:twice", "you already approved this step")
        return GateResult("approval", "pass", "approval", f"<@{r.actor}> may approve ({groups})")
    fresh = {a.user for a in r.approvals if a.at >= r.now - step.approval_ttl}
    if len(fresh) < step.approvals_needed:
        stale = len({a.user for a in r.approvals}) - len(fresh)
        why = f"{len(fresh)} of {step.approvals_needed} approval(s) still valid"
        if stale:
            why += f" ({stale} expired after {int(step.approval_ttl.total_seconds() // 60)} min)"
        return GateResult("approval", "deny", "approval:expired" if stale else "approval:missing", why)
    return GateResult("approval", "pass", "approval", f"{len(fresh)} valid approval(s)")


_GATE_FUNCTIONS = (_kill_switch, _enabled, _freeze, _actor, _schema, _blast, _rate, _approval)


def decide(request: Request, policy: Policy, state: State) -> Decision:
    """The decision for `request`; fails closed (an exception is a deny)."""
    try:
        gates = tuple(gate(request, policy, state) for gate in _GATE_FUNCTIONS)
        autonomy = autonomy_for(policy, request.step.runbook, request.namespace, request.labels)
    except Exception as exc:  # noqa: BLE001 - fail closed, and say so
        log.exception("policy evaluation failed")
        failure = GateResult("engine", "deny", "engine-error", f"the policy engine failed ({type(exc).__name__})")
        return Decision("deny", failure.rule, failure.reason, "check the policy files; nothing runs meanwhile",
                        (failure,))
    denial = next((g for g in gates if g.outcome == "deny"), None)
    approval = gates[-1]
    extras = {"autonomy": autonomy, "approver_groups": request.step.approver_groups,
              "approvals_needed": request.step.approvals_needed if request.step.approval_required else 0}
    if denial is not None:
        return Decision("deny", denial.rule, denial.reason, HINTS.get(denial.gate, ""), gates, **extras)
    if approval.outcome == "needs_approval":
        return Decision("needs_approval", approval.rule, approval.reason, HINTS["approval"], gates, **extras)
    return Decision("allow", approval.rule, "every gate passed", "", gates, **extras)
