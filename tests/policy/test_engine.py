"""The policy engine: gates in their fixed order, every gate reported, failing closed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.policy import engine
from bot.policy.cron import CronError, in_window, parse_cron
from bot.policy.model import Policy, PolicyError, combine, load_policies

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STEP = engine.StepFacts(runbook="restart-deployment", step="restart", enabled=True, risk="medium",
                        approval_required=True, approver_groups=("oncall",), approvals_needed=1,
                        requester_may_approve=False, approval_ttl=timedelta(minutes=15), max_pods=100)
REQUEST = engine.Request(step=STEP, phase="propose", now=MONDAY_NOON, namespace="shop",
                         target="Deployment/shop/web", pods_affected=3)


def policy(**values) -> Policy:
    return Policy.model_validate({"approver_groups": {"oncall": {"users": ["U1", "U2"]}}, **values})


def gates(decision):
    return [(g.gate, g.outcome) for g in decision.gates]


def test_every_gate_runs_in_the_fixed_order_and_approval_is_asked():
    decision = engine.decide(REQUEST, policy(), engine.State())
    assert [g for g, _ in gates(decision)] == list(engine.GATES)
    assert decision.decision == "needs_approval" and decision.approver_groups == ("oncall",)


def test_the_first_deny_in_order_decides_but_every_gate_is_reported():
    frozen = policy(freeze_windows=[{"id": "always", "cron": "* * * * *"}])
    decision = engine.decide(replace(REQUEST, pods_affected=500), frozen, engine.State(kill_switches=frozenset(
        {"namespace:shop"})))
    assert decision.decision == "deny" and decision.rule == "kill-switch:namespace:shop"
    assert dict(gates(decision))["change_freeze"] == "deny" and dict(gates(decision))["blast_radius"] == "deny"
    assert decision.hint


@pytest.mark.parametrize(("request_change", "state", "rule"), [
    ({"step": replace(STEP, enabled=False)}, engine.State(), "runbook:restart-deployment"),
    ({"pods_affected": 101}, engine.State(), "blast-radius:pods"),
    ({"replica_factor": 3.0}, engine.State(), "blast-radius:replicas"),
    ({"replica_factor": 0.25}, engine.State(), "blast-radius:replicas"),
    ({"step": replace(STEP, param_problems=("replicas: 0 is below the minimum 1",))}, engine.State(), "params"),
    ({}, engine.State(running_on_target=1), "concurrency"),
])
def test_each_gate_denies_on_its_own(request_change, state, rule):
    decision = engine.decide(replace(REQUEST, **request_change), policy(), state)
    assert (decision.decision, decision.rule) == ("deny", rule)


def test_rate_limits_count_recent_runs_per_target():
    limited = policy(rate_limits=[{"id": "restarts", "runbooks": ["restart-*"], "per": "target", "max": 3,
                                   "window_seconds": 3600}])
    runs = tuple(("restart-deployment", "Deployment/shop/web", "shop", MONDAY_NOON - timedelta(minutes=m))
                 for m in (5, 20, 50))
    assert engine.decide(REQUEST, limited, engine.State(recent_runs=runs)).rule == "rate:restarts"
    older = tuple((r[0], r[1], r[2], r[3] - timedelta(hours=1)) for r in runs)
    assert engine.decide(REQUEST, limited, engine.State(recent_runs=older)).decision == "needs_approval"
    other = tuple((r[0], "Deployment/shop/api", r[2], r[3]) for r in runs)
    assert engine.decide(REQUEST, limited, engine.State(recent_runs=other)).decision == "needs_approval"


def test_clicks_check_membership_self_approval_and_repeats():
    click = replace(REQUEST, phase="click", actor="U1", actor_groups=frozenset({"oncall"}), requester="opsbot")
    assert engine.decide(click, policy(), engine.State()).decision == "allow"
    outsider = replace(click, actor="U9", actor_groups=frozenset())
    assert engine.decide(outsider, policy(), engine.State()).rule == "approval:group"
    own = replace(click, requester="U1")
    assert engine.decide(own, policy(), engine.State()).rule == "approval:self"
    again = replace(click, approvals=(engine.Approval("U1", MONDAY_NOON),))
    assert engine.decide(again, policy(), engine.State()).rule == "approval:twice"
    assert engine.decide(replace(own, step=replace(STEP, requester_may_approve=True)), policy(),
                         engine.State()).decision == "allow"


def test_execution_needs_approvals_that_have_not_expired():
    run = replace(REQUEST, phase="execute", approvals=(engine.Approval("U1", MONDAY_NOON - timedelta(minutes=5)),))
    assert engine.decide(run, policy(), engine.State()).decision == "allow"
    stale = replace(run, approvals=(engine.Approval("U1", MONDAY_NOON - timedelta(minutes=20)),))
    assert engine.decide(stale, policy(), engine.State()).rule == "approval:expired"
    assert engine.decide(replace(run, approvals=()), policy(), engine.State()).rule == "approval:missing"


def test_channels_and_actors_are_restricted_when_listed():
    strict = policy(channels=["C0INCIDENTS"], actors={"users": ["U1"]})
    click = replace(REQUEST, phase="click", actor="U1", actor_groups=frozenset({"oncall"}), channel="C0RANDOM")
    assert engine.decide(click, strict, engine.State()).rule == "channels"
    assert engine.decide(replace(click, channel="C0INCIDENTS", actor="U2"), strict, engine.State()).rule == "actors"


def test_a_click_without_a_channel_is_refused_where_channels_are_listed():
    strict = policy(channels=["C0INCIDENTS"])
    click = replace(REQUEST, phase="click", actor="U1", actor_groups=frozenset({"oncall"}), channel=None)
    denied = engine.decide(click, strict, engine.State())
    assert (denied.decision, denied.rule) == ("deny", "channels") and "no channel" in denied.reason
    assert engine.decide(click, policy(), engine.State()).rule != "channels", "no list: any channel, or none"
    execute = replace(REQUEST, phase="execute", channel=None)
    assert engine.decide(execute, strict, engine.State()).rule != "channels", "execution has no channel"


def test_autonomy_follows_runbook_and_environment():
    auto = policy(environments={"staging": {"namespaces": ["staging-*"]}},
                  autonomy={"default": "approve", "rules": [{"runbooks": ["restart-*"], "environments": ["staging"],
                                                             "level": "auto"}]})
    assert engine.decide(replace(REQUEST, namespace="staging-eu"), auto, engine.State()).autonomy == "auto"
    assert engine.decide(REQUEST, auto, engine.State()).autonomy == "approve"


def test_the_engine_fails_closed():
    broken = replace(REQUEST, step=replace(STEP, max_pods=None), pods_affected=None)  # comparing None raises
    decision = engine.decide(broken, policy(), engine.State())
    assert decision.decision == "deny" and decision.rule == "engine-error"


def test_cron_windows_in_their_time_zone():
    friday_evening = "* 16-23 * * fri"
    berlin_friday_17h = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)  # 17:00 in Berlin (UTC+1)
    assert in_window(friday_evening, "Europe/Berlin", berlin_friday_17h)
    assert not in_window(friday_evening, "Europe/Berlin", berlin_friday_17h - timedelta(hours=2))
    assert in_window("* * 24-26 dec *", "UTC", datetime(2026, 12, 25, 8, 30, tzinfo=UTC))
    assert in_window("*/15 9-17 * * mon-fri", "UTC", MONDAY_NOON) and not in_window(
        "*/15 9-17 * * mon-fri", "UTC", MONDAY_NOON + timedelta(minutes=1))
    assert in_window("* * 1 * sun", "UTC", datetime(2026, 11, 29, 3, 0, tzinfo=UTC)), "either day field matches"
    for bad in ("* * * *", "61 * * * *", "* * * * funday", "*/0 * * * *"):
        with pytest.raises(CronError):
            parse_cron(bad)


def test_policy_files_are_strict_and_combine(tmp_path):
    (tmp_path / "a.yaml").write_text("id: a\nkill_switch: {runbooks: [drain-node]}\napprover_groups:\n"
                                     "  oncall: {users: [U1]}\n")
    (tmp_path / "b.yaml").write_text("id: b\nkill_switch: {global: true}\nrate_limits:\n"
                                     "  - {id: r, max: 1, window_seconds: 60}\n")
    combined = load_policies(tmp_path)
    assert combined.kill_switch.global_ and combined.kill_switch.runbooks == ["drain-node"]
    assert list(combined.approver_groups) == ["oncall"] and len(combined.rate_limits) == 1
    (tmp_path / "c.yaml").write_text("id: c\nfreeze_windows: [{id: x, cron: '* * *', timezone: Mars/Olympus}]\n"
                                     "surprise: 1\n")
    with pytest.raises(PolicyError) as problem:
        load_policies(tmp_path)
    text = str(problem.value)
    assert "c.yaml: surprise" in text and "5 fields" in text and "Mars/Olympus" in text
    assert combine([]) == Policy()


def test_the_shipped_policy_loads():
    from bot.runtime import REPO

    shipped = load_policies(REPO / "policies")
    assert "kube-system" in shipped.kill_switch.namespaces and "oncall" in shipped.approver_groups
