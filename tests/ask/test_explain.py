"""`/ops explain` and `opsbot explain`, driven as people use them: signed slash commands to the
bot's HTTP endpoint (answered privately, golden Block Kit) and the command line, on SQLite and
PostgreSQL. Incidents come through the real intake flow; their RCA, proposals and signatures
are stored as the RCA stage, the proposer and the memory store them; decisions come from the
real policy engine over the repository's runbooks."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from bot.ask.explain import FORMS, Target, explain, parse_target, visibility_refusal
from bot.ask.explain_cli import explanation_text
from bot.db.engine import make_session_factory, reading, unit_of_work
from bot.db.models import FollowUp, Proposal
from bot.policy import engine as policy_engine
from bot.policy.model import load_policies
from bot.postmortem.memory import remember
from bot.remediation.catalog import load_catalog
from bot.remediation.kit import step_facts
from bot.sandbox import slack_signing
from bot.timeline import chain
from bot.web import HttpServer, create_web_app
from tests.conftest import SIGNING_SECRET, make_settings
from tests.incidents.helpers import NOW, ingest_body, store_rca
from tests.payloads import am_alert, am_body
from tests.slack.test_card_render import check_golden, valid_blocks

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
CHECKOUT = "Deployment/shop/checkout"
POLICY = """
id: test
channels: ["#incidents"]
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
environments:
  production: {namespaces: ["prod-*"]}
  staging: {namespaces: ["staging-*"]}
autonomy:
  default: approve
  rules: [{runbooks: [raise-memory-limit], environments: [staging], level: auto}]
"""
EVIDENCE = [
    {"text": "container app was OOMKilled 4 times in 10 min", "source": "kubernetes", "ref": "Pod shop/checkout-1"},
    {"text": "memory reached 100 % of its 512Mi limit before each kill", "source": "prometheus",
     "ref": "PromQL: container_memory_working_set_bytes"},
    {"text": "no rollout in the last 24 h", "source": "rollout", "ref": "Deployment/shop/checkout history"},
    {"text": "Event OOMKilling <!channel>", "source": "event", "ref": "Event OOMKilling on Pod/shop/checkout-1"},
]


def _report(category: str, evidence: list[dict], gaps: list[dict] | None = None) -> dict:
    return {"version": 1, "subject": CHECKOUT, "inconclusive": False, "owners": [CHECKOUT],
            "log_templates": ["container <*> was OOMKilled"], "gaps": gaps or [],
            "hypotheses": [{"category": category, "resource": CHECKOUT, "confidence": 0.91,
                            "summary": "checkout's container app needs more memory than its 512Mi limit",
                            "supporting": evidence, "contradicting": [], "facts": {"namespace": "shop"}}]}


def _open(factory, key: str, at, report: dict | None) -> int:
    body = am_body([am_alert("KubeContainerOOMKilled", namespace="shop", cluster="eu-1", pod=f"{key}-pod")],
                   group_key=key)
    incident_id = ingest_body(factory, body, at).incident_id
    if report is not None:
        store_rca(factory, incident_id, report, at)
    return incident_id


def _propose(factory, policy, incident_id: int, status: str, at) -> int:
    """A raise-memory-limit step as the proposer stores it, decided by the real engine."""
    runbook = load_catalog(RUNBOOKS).get("raise-memory-limit")
    step = runbook.steps[0]
    request = policy_engine.Request(step=step_facts(runbook, step, runbook.id, step.id), phase="propose", now=at,
                                    namespace="shop", target=CHECKOUT, requester="opsbot", pods_affected=3)
    decision = policy_engine.decide(request, policy, policy_engine.State()).as_dict()
    with unit_of_work(factory) as session:
        row = Proposal(
            incident_id=incident_id, runbook_id=runbook.id, step_id=step.id,
            title="Raise the memory limit of app in checkout to 1Gi", params={
                "namespace": "shop", "kind": "Deployment", "name": "checkout", "container": "app", "memory": "1Gi"},
            target=CHECKOUT, namespace="shop", cluster="eu-1", labels={}, risk=step.risk, autonomy="approve",
            requested_by="opsbot", status=status, decision=decision,
            plan={"summary": "set the memory limit of app in Deployment shop/checkout to 1Gi", "target": CHECKOUT,
                  "pods_affected": 3, "replica_factor": None, "dry_run": "accepted by the API server (dryRun=All)",
                  "diff": [["spec.template.spec.containers[app].resources.limits.memory", "512Mi", "1Gi"]],
                  "secret_params": []},
            expires_at=at + timedelta(hours=1), created_at=at, updated_at=at, attempts=0,
            started_at=at if status == "succeeded" else None, finished_at=at if status == "succeeded" else None,
            result={"before": 0, "after": 1} if status == "succeeded" else {})
        session.add(row)
        session.flush()
        chain.append(session, incident_id, "remediation.considered", "opsbot",
                     {"cause": "memory_limit", "proposed": [{"runbook": runbook.id, "proposal": row.id}],
                      "not_proposed": []}, at)
        return row.id


@pytest.fixture
def world(database_url, engine, slack, tmp_path):
    """INC-1 resolved two days ago (its step succeeded, remembered), INC-2 open now with a
    pending step P-2 and a follow-up, INC-3 whose RCA found no cause. The bot serves /ops with
    its clock at NOW (no workers: the answer is read in the request's thread)."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    policy = load_policies(policies)
    factory = make_session_factory(engine)
    past = _open(factory, "past", NOW - timedelta(days=2), _report("memory_limit", EVIDENCE[:2]))
    _propose(factory, policy, past, "succeeded", NOW - timedelta(days=2, minutes=-5))
    resolved = am_body([am_alert("KubeContainerOOMKilled", status="resolved", namespace="shop", cluster="eu-1",
                                 pod="past-pod", ends_at="2026-11-19T10:30:00Z")], group_key="past")
    ingest_body(factory, resolved, NOW - timedelta(days=2, minutes=-30))
    with unit_of_work(factory) as session:
        assert remember(session, past, NOW - timedelta(days=1)) is not None
    current = _open(factory, "now", NOW, _report("memory_limit", EVIDENCE,
                                                 [{"what": "logs of checkout", "why": "Kubernetes is not configured"}]))
    _propose(factory, policy, current, "proposed", NOW + timedelta(minutes=2))
    with unit_of_work(factory) as session:
        session.add(FollowUp(incident_id=current, text="alert on memory at 90 % of the limit", owner="U0BOB",
                             created_by="slack:U0ALICE", created_at=NOW + timedelta(minutes=3)))
    unknown = _open(factory, "odd", NOW, {"version": 1, "subject": CHECKOUT, "inconclusive": True, "hypotheses": [],
                                          "gaps": [{"what": "events", "why": "the API server refused (403)"}]})
    assert (past, current, unknown) == (1, 2, 3)
    settings = make_settings(database_url, slack, policies_dir=policies, runbooks_dir=RUNBOOKS)
    with ExitStack() as stack:
        from bot.runtime import build_runtime

        runtime = build_runtime(settings, clock=lambda: NOW + timedelta(minutes=10))
        stack.callback(runtime.close)
        server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=2)
        url = server.start()
        stack.callback(server.stop)
        yield {"url": url, "factory": factory, "policy": policy, "policies": policies, "database_url": database_url}


def ask(world, slack, text: str, channel_name: str = "incidents", user: str = "U0ALICE") -> dict:
    """`/ops <text>` as Slack sends it; the private answer the asker gets (acked with no body)."""
    before = len(slack.ephemerals())
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, user_id=user, channel_name=channel_name)
    response = requests.post(f"{world['url']}/slack/commands", data=body, headers=headers, timeout=10)
    assert response.status_code == 200 and not response.text.strip(), "acked at once, answered after"
    answers = slack.wait_for(lambda emu: emu.ephemerals()[before:], timeout=15)
    assert len(answers) == 1 and answers[0]["user"] == user
    # Slack (and its emulator) fill in a block_id per block: ours have none, so theirs go
    return {**answers[0], "blocks": [{k: v for k, v in block.items() if k != "block_id"}
                                     for block in answers[0].get("blocks") or []]}


def content(blocks: list[dict]) -> list[str]:
    """What a person reads in the answer: every line, markup and bullets removed."""
    lines = []
    for block in blocks:
        for line in block["text"]["text"].split("\n"):
            line = re.sub(r"^(:mag: )?\*(.*)\*$", r"\2", line)
            lines.append(html.unescape(line.removeprefix("• ")))
    return lines


def text_content(text: str) -> list[str]:
    return [line.strip().removeprefix("• ") for line in text.splitlines() if line.strip()]


def test_an_incident_is_explained_from_its_rca_timeline_steps_and_memory(world, slack):
    answer = ask(world, slack, "explain INC-2")
    assert valid_blocks(answer["blocks"])
    check_golden("explain_incident", {"text": answer["text"], "blocks": answer["blocks"]})
    lines = content(answer["blocks"])
    assert "Memory limit too low on Deployment/shop/checkout, confidence 0.91 (high)." in lines
    assert "could not check logs of checkout: Kubernetes is not configured" in lines
    evidence = lines[lines.index("Evidence") + 1:lines.index("Proposed")]
    assert 3 <= len(evidence) <= 5 and evidence[0].startswith("container app was OOMKilled")
    assert "&lt;!channel&gt;" in answer["blocks"][3]["text"]["text"], "untrusted text cannot mention anyone"
    assert any(line.startswith("P-2 raise-memory-limit on Deployment/shop/checkout (the bot, for the cause "
                               "memory_limit); policy: needs_approval") for line in lines)
    assert "P-2 waits for 1 approval(s) from oncall, until 2026-11-21 11:02 UTC." in lines
    assert "F-1 alert on memory at 90 % of the limit (on U0BOB)." in lines
    assert any(line.startswith("INC-1 (") and "Memory limit too low, bot-mitigated, step raise-memory-limit" in line
               for line in lines)
    assert "Nothing ran." in lines, "INC-2's own step only waits"


def test_an_incident_without_a_cause_says_unknown_and_what_was_not_checked(world, slack):
    lines = content(ask(world, slack, "explain inc-3")["blocks"])
    cause = lines[lines.index("Cause") + 1:lines.index("Evidence")]
    assert cause == ["Unknown (the RCA found no cause).", "could not check events: the API server refused (403)"]
    assert "Nothing (the bot considered no step)." in lines and "No evidence stored: the RCA supported no cause." in lines


def test_a_step_is_explained_with_every_gate_its_plan_dry_run_and_approvers(world, slack):
    answer = ask(world, slack, "explain P-2")
    assert valid_blocks(answer["blocks"])
    check_golden("explain_proposal", {"text": answer["text"], "blocks": answer["blocks"]})
    lines = content(answer["blocks"])
    gates = [line for line in lines if line[:1] in "✓✗…"]
    assert [g.split(":")[0][2:] for g in gates] == list(policy_engine.GATES)
    assert "accepted by the API server (dryRun=All)" in lines
    assert "oncall: U0ALICE, U0BOB." in lines and "Not opsbot, who asked for it." in lines
    assert "The buttons work until 2026-11-21 11:02 UTC; then the step expires." in lines
    assert "spec.template.spec.containers[app].resources.limits.memory: 512Mi → 1Gi" in lines


def test_a_runbook_is_explained_with_params_checks_rollback_and_autonomy_per_environment(world, slack):
    answer = ask(world, slack, "explain raise-memory-limit")
    assert valid_blocks(answer["blocks"])
    check_golden("explain_runbook", {"text": answer["text"], "blocks": answer["blocks"]})
    lines = content(answer["blocks"])
    assert lines[-3:] == \
        ["production: approve", "staging: auto", "any other namespace: approve"], "the engine's own autonomy, per environment"
    assert any(line.startswith("memory (quantity, from diagnosis.suggested_memory_limit") for line in lines)
    assert "Step raise: operation restore.captured; when the check fails: rollback." in lines
    sql = content(ask(world, slack, "explain create-index")["blocks"])  # a SQL check, not PromQL
    assert any(line.startswith("Step create") and "SQL on ${database}: SELECT" in line and "is true" in line
               for line in sql), sql


def test_unknown_targets_name_the_forms_and_other_channels_are_refused(world, slack):
    for text, words in (("explain", "Explain what?"), ("explain deploy-everything", "'deploy-everything'"),
                        ("explain INC-99", "INC-99 does not exist."), ("explain P-42", "P-42 does not exist.")):
        answer = ask(world, slack, text)
        assert words in answer["text"] and "\n" not in answer["text"]
        if "does not exist" not in words:
            assert all(form in html.unescape(answer["text"]) for form in FORMS)
    refused = ask(world, slack, "explain INC-2", channel_name="random")
    assert "INC-2 is not explained in this channel" in refused["text"] and "Memory" not in refused["text"]
    assert "Runbook raise-memory-limit" in ask(world, slack, "explain raise-memory-limit", "random")["text"], \
        "runbooks are configuration, shown anywhere"


def test_visibility_follows_the_policys_channels(world):
    policy, incident = world["policy"], Target("incident", "2")
    assert visibility_refusal(policy, incident, "C1", "incidents") is None
    assert visibility_refusal(policy, incident, "C1", "random") is not None
    assert visibility_refusal(policy, incident, None, None) is None, "the terminal has no channel"
    assert visibility_refusal(policy.model_copy(update={"channels": []}), incident, "C1", "random") is None


def _opsbot(world, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    env.update(OPSBOT_DATABASE_URL=world["database_url"], OPSBOT_POLICIES_DIR=str(world["policies"]),
               OPSBOT_RUNBOOKS_DIR=str(RUNBOOKS))
    return subprocess.run([sys.executable, "-m", "bot", "explain", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_terminal_gives_the_slack_answer_as_text(world, slack):
    for target in ("INC-2", "P-2", "raise-memory-limit"):
        shown = _opsbot(world, target)
        assert shown.returncode == 0, shown.stderr
        assert text_content(shown.stdout) == content(ask(world, slack, f"explain {target}")["blocks"])
        with reading(world["factory"]) as session:
            catalog = load_catalog(RUNBOOKS)
            assert shown.stdout == explanation_text(explain(session, parse_target(target, catalog), catalog,
                                                            world["policy"]))
    for args, words in ((("INC-x",), "Nothing to explain for 'INC-x'"), (("INC-99",), "INC-99 does not exist")):
        refused = _opsbot(world, *args)
        assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.count("\n") == 1 and words in refused.stderr

