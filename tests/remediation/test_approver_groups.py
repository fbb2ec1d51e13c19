"""Approver groups beyond static lists, through the real `slack_sdk` and `pagerduty` clients
against the loopback emulators: a Slack user group's members, and whoever PagerDuty has on call
now (matched to Slack by email). An unreadable membership grants nothing and is read again."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import TimelineEntry
from bot.policy.model import PolicyError
from bot.runtime import build_runtime
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from tests.concurrency import eventually
from tests.conftest import make_settings
from tests.context.sandbox import shared
from tests.remediation.world import BOB, world  # noqa: F401 - fixture

CAROL = "U0CAROL"
ON_CALL_POLICY = """
id: on-call
approver_groups:
  oncall: {pagerduty_schedules: [PSCHED1]}
blast_radius: {max_pods: 50, max_replica_factor: 2.0}
"""


@pytest.fixture
def pd():
    with PagerDutyEmulator() as emulator:
        yield emulator


def pd_settings(pd: PagerDutyEmulator, tmp_path) -> dict:
    ca = tmp_path / "pd-ca.pem"
    ca.write_bytes(pd.ca_file.read_bytes())
    return dict(pagerduty_routing_key=pd.routing_key, pagerduty_api_key=pd.api_token,
                pagerduty_from_email=pd.from_email, pagerduty_events_url=pd.events_url,
                pagerduty_rest_url=pd.rest_url, pagerduty_ca_file=ca)


def refused_then_approved(w, refused: str, approver: str) -> None:
    """`refused` clicks Approve and is told they are not in oncall, nothing is approved or
    written; then `approver` clicks and the approval is recorded under their Slack id."""
    w.deliver()
    message = w.proposal("rollback-deployment")
    w.click(message, "step_approve", refused)
    eventually(lambda: any("not in oncall" in t for t in w.ephemeral_to(refused)))
    assert approvers(w) == [] and w.writes() == []
    w.click(message, "step_approve", approver)
    eventually(lambda: approvers(w) == [f"slack:{approver}"], timeout=15)


def approvers(w) -> list[str]:
    with unit_of_work(w.bot.runtime.factory) as session:
        return [e.actor for e in session.execute(select(TimelineEntry)
                                                 .where(TimelineEntry.kind == "remediation.approved")).scalars()]


def test_whoever_pagerduty_has_on_call_may_approve(world, pd, tmp_path, slack):
    slack.add_user(CAROL, "carol")  # carol@example.com, as in PagerDuty
    slack.add_user(BOB, "bob")
    pd.put_on_call("PSCHED1", "Carol")
    rest_only = {**pd_settings(pd, tmp_path), "pagerduty_routing_key": None}  # read on-call, mirror nothing
    w = world(shared("orders-api-revision-22-panics-on-start"), policy=ON_CALL_POLICY, prometheus=False,
              **rest_only)
    refused_then_approved(w, BOB, CAROL)
    (read, *_) = pd.calls_to("rest", "/oncalls")
    assert read.query["schedule_ids[]"] == ["PSCHED1"] and read.status == 200
    assert pd.calls_to("events") == [] and pd.incidents() == [], "no routing key: nothing mirrored"


def test_an_unreadable_on_call_grants_nobody_and_is_read_again_next_time(world, pd, tmp_path, slack):
    slack.add_user(CAROL, "carol")
    pd.put_on_call("PSCHED1", "Carol")
    pd.inject("/oncalls", status=500, times=2)  # the client's one retry fails too
    w = world(shared("orders-api-revision-22-panics-on-start"), policy=ON_CALL_POLICY, prometheus=False,
              **pd_settings(pd, tmp_path))
    refused_then_approved(w, CAROL, CAROL)  # PagerDuty answers the second read: the failure was not remembered


def test_the_bot_refuses_to_start_when_on_call_groups_cannot_be_read(database_url, slack, engine,  # noqa: F811
                                                                     tmp_path):
    (tmp_path / "p.yaml").write_text(ON_CALL_POLICY)
    with pytest.raises(PolicyError, match="oncall follow PagerDuty's on-call, which needs OPSBOT_PAGERDUTY_API_KEY"):
        build_runtime(make_settings(database_url, slack, policies_dir=tmp_path))


def test_members_of_a_slack_user_group_may_approve(world, slack):
    slack.add_user(CAROL, "carol")
    slack.add_usergroup("S0ONCALL", "oncall", users=[CAROL])
    policy = ON_CALL_POLICY.replace("{pagerduty_schedules: [PSCHED1]}", "{slack_usergroup: S0ONCALL}")
    w = world(shared("orders-api-revision-22-panics-on-start"), policy=policy, prometheus=False)
    refused_then_approved(w, BOB, CAROL)
