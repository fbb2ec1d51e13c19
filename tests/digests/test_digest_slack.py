"""Digests in Slack, driven as Slack drives them: `/ops digest drift` posts the real drift digest
(manifests on disk against the sandbox API server) in the channel once; its "Propose fix" button
opens an incident for the finding and proposes the runbook step there, under the policy; a
person the policy does not allow, a forged button and an unknown digest change nothing."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest
import requests
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import Incident, JobClaim, Proposal
from bot.sandbox import slack_clicks, slack_signing
from bot.sandbox.kube import KubeApiServer, SandboxCluster
from tests.conftest import SIGNING_SECRET, make_settings, serve_on
from tests.digests.test_drift_build import MANIFESTS, NOW, shop_drifted

POLICY = """
id: test
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
incident_managers: [oncall]
"""
CHANNEL = slack_signing.DEFAULT_CHANNEL_ID


@pytest.fixture
def bot(database_url, slack, engine, tmp_path):  # noqa: F811 - `engine` migrates the database
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    digests = tmp_path / "digests.yaml"
    digests.write_text(f"drift: {{sources: [{{path: {MANIFESTS / 'shop'}, namespace: shop}}]}}\n")
    cluster = SandboxCluster(now=NOW)
    cluster.load(shop_drifted())
    with ExitStack() as stack:
        server = stack.enter_context(KubeApiServer(cluster))
        yield serve_on(stack, make_settings(database_url, slack, policies_dir=policies, digests_file=digests,
                                            kube_mode="url", kube_api_url=server.base_url), slack)


def command(bot, text: str, user: str = "U0ALICE") -> requests.Response:
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, user_id=user, user_name=user.lower())
    return requests.post(f"{bot.url}/slack/commands", data=body, headers=headers, timeout=10)


def digest_message(slack) -> dict | None:
    found = [m for m in slack.messages(CHANNEL) if "Drift digest" in json.dumps(m.get("blocks"))]
    return found[-1] if found else None


def finished_claim(bot) -> JobClaim | None:
    with reading(bot.runtime.factory) as session:
        claim = session.scalars(select(JobClaim).where(JobClaim.finished_at.is_not(None))).first()
        if claim is not None:
            session.expunge(claim)
        return claim


def fix_button(message: dict, runbook_title: str) -> str:
    for block in message["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if runbook_title in element["text"]["text"]:
                return element["action_id"]
    raise AssertionError(f"no fix button for {runbook_title!r}")


def test_ops_digest_posts_it_and_a_fix_becomes_an_approvable_step(bot, slack):
    assert command(bot, "digest drift").status_code == 200
    message = slack.wait_for(digest_message, timeout=30)
    text = json.dumps(message["blocks"])
    assert "Changed by hand" in text and "Deployment shop/web" in text and "declared 3, live 5" in text
    slack.wait_for(lambda s: [f for f in s.files if f.get("title", "").startswith("Drift digest")], timeout=10)
    claim = slack.wait_for(lambda _: finished_claim(bot), timeout=10)
    assert claim.outcome == "posted" and claim.slot.startswith("manual:") and claim.channel == CHANNEL
    metrics = requests.get(f"{bot.url}/metrics", timeout=10).text
    assert 'opsbot_digest_runs_total{digest="drift",outcome="posted"} 1.0' in metrics
    assert 'opsbot_digest_findings{digest="drift",kind="findings"}' in metrics

    scale = fix_button(message, "Scale")
    # someone outside the incident managers: refused privately, nothing opened
    assert slack_clicks.click(bot.url, SIGNING_SECRET, message, scale, "U0CAROL").status_code == 200
    slack.wait_for(lambda s: [e for e in s.ephemerals() if "incident managers" in e.get("text", "")], timeout=10)
    with reading(bot.runtime.factory) as session:
        assert session.scalars(select(Incident)).all() == []

    assert slack_clicks.click(bot.url, SIGNING_SECRET, message, scale, "U0ALICE").status_code == 200
    slack.wait_for(lambda s: [e for e in s.ephemerals() if "INC-1 opened" in e.get("text", "")], timeout=20)
    with reading(bot.runtime.factory) as session:
        incident = session.get(Incident, 1)
        proposal = session.scalars(select(Proposal)).one()
        assert incident.severity == "info" and "Deployment shop/web" in incident.title
        assert (proposal.runbook_id, proposal.params, proposal.requested_by) == (
            "scale-deployment", {"namespace": "shop", "name": "web", "replicas": 3}, "U0ALICE")
        assert proposal.status == "proposed"  # the usual buttons: someone else in @oncall approves


def test_forged_buttons_and_unknown_digests_change_nothing(bot, slack):
    response = command(bot, "digest everything")
    assert response.status_code == 200 and "Usage: `/ops digest" in response.json()["text"]
    forged = {"channel": CHANNEL, "ts": "1700000000.000100", "text": "x", "blocks": [
        {"type": "actions", "elements": [
            {"type": "button", "action_id": "digest_fix_0", "text": {"type": "plain_text", "text": "Propose fix"},
             "value": json.dumps({"scope": "digest:drift:C1", "key": "drift/never/reported"})},
            {"type": "button", "action_id": "digest_fix_1", "text": {"type": "plain_text", "text": "Propose fix"},
             "value": "{not json"}]}]}
    slack_clicks.click(bot.url, SIGNING_SECRET, forged, "digest_fix_0", "U0ALICE")
    slack_clicks.click(bot.url, SIGNING_SECRET, forged, "digest_fix_1", "U0ALICE")
    slack.wait_for(lambda s: len([e for e in s.ephemerals() if "Not proposed" in e.get("text", "")]) == 2,
                   timeout=10)
    with reading(bot.runtime.factory) as session:
        assert session.scalars(select(Incident)).all() == [] and session.scalars(select(Proposal)).all() == []
