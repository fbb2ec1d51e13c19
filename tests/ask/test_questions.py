"""Questions in an incident thread: the intent matcher, one golden answer per intent, and the
whole path as Slack drives it (signed Events API deliveries to the bot's HTTP endpoint, the
answer in the thread through the Slack emulator), on SQLite and PostgreSQL. The end-to-end
incident is a real scenario: its cluster behind the sandbox API server and its metrics in a
real Prometheus, so the evidence answered from is the RCA the bot itself stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import select

from bot.ask.answers import BUILDERS, Evidence, GroupFacts, StepFacts, build_answer
from bot.ask.intents import BY_NAME, INTENTS, match
from bot.db.engine import reading
from bot.db.models import TimelineEntry
from bot.incidents.catchup import CatchUpView
from bot.sandbox import slack_signing
from bot.slack.render.answers import render_answer
from tests.conftest import SIGNING_SECRET
from tests.context.sandbox import shared
from tests.payloads import am_alert, am_body
from tests.remediation.world import ALICE, world  # noqa: F401 - fixture
from tests.slack.test_card_render import check_golden, valid_blocks

# --- the matcher -------------------------------------------------------------------------------

ISSUE_QUESTIONS = {
    "<@U0OPSBOT> why the rollout?": "why",
    "what changed?": "changed",
    "@opsbot what did you check?": "checked",
    "show the logs": "logs",
    "graph error rate": "graph",
    "who can approve?": "approvers",
    "status?": "status",
    "have we seen this before? anything similar": "similar",
    "What’s the ROOT CAUSE": "why",
    "what changed in the logs?": "changed",  # the question word leads
    "show me the logs of the deploy": "logs",
}


@pytest.mark.parametrize("question", ISSUE_QUESTIONS)
def test_questions_match_the_intent_their_leading_trigger_names(question):
    assert match(question).name == ISSUE_QUESTIONS[question]


@pytest.mark.parametrize("intent", INTENTS, ids=lambda i: i.name)
def test_every_intent_is_matched_by_its_own_example_and_has_an_answer(intent):
    assert match(intent.example) is intent
    assert intent.name in BUILDERS


@pytest.mark.parametrize("question", ["", "hello", "<@U0OPSBOT>", "thanks!", "<@U0OPSBOT> <#C123|why>"])
def test_questions_without_a_trigger_match_nothing(question):
    assert match(question) is None


# --- the answers, golden -----------------------------------------------------------------------

EVIDENCE_REF = {"source": "log", "ref": "Pod orders/orders-api-7d9f-x2 logs (api, previous)"}
REPORT = {
    "version": 1, "subject": "Deployment/orders/orders-api", "inconclusive": False,
    "hypotheses": [
        {"category": "bad_deploy", "resource": "Deployment/orders/orders-api", "confidence": 0.9,
         "summary": "Revision 22 of Deployment/orders/orders-api broke it.",
         "action": "Roll orders-api back to revision 21.",
         "supporting": [{"text": "panic: assignment to entry in nil map <!channel>", **EVIDENCE_REF},
                        {"text": "image changed 4.11.3 -> 4.12.0", "source": "rollout", "ref": "revision 22"}],
         "contradicting": [{"text": "node healthy", "source": "node", "ref": "Node/n1"}]},
        {"category": "capacity", "resource": "Deployment/orders/orders-api", "confidence": 0.2, "summary": "load",
         "action": "", "supporting": [], "contradicting": []}],
    "gaps": [{"what": "Prometheus metrics", "why": "Prometheus at http://prometheus:9090 is unreachable"}],
    "nearby": ["Deployment/orders/payments: 1/2 available"],
    "timings": {"kubernetes": 0.12, "logs": 0.03},
    "log_templates": ["panic: assignment to entry in nil map", "DB_PASSWORD=<*> connecting"],
    "graph": {"title": "Restarts", "unit": "", "query": "increase(kube_pod_container_status_restarts_total[5m])",
              "series": [{"label": "pod=orders-api-7d9f-x2", "points": [[1763721000, 0], [1763721600, 4]]}],
              "marks": [{"label": "alert fired", "at": 1763721500}, {"label": "revision 22", "at": 1763721300}]},
    "material": {"filename": "rca-evidence.txt", "text": "# Deployment/orders/orders-api: revision 21 -> 22\n"
                 "spec.template.spec.containers[0].image: 'orders-api:4.11.3' -> 'orders-api:4.12.0'\n\n"
                 "# logs of orders-api-7d9f-x2 (api, previous instance)\nstarting\n"
                 "panic: assignment to entry in nil map\nDB_PASSWORD=hunter2 ```breakout\n"},
    "similar": [{"incident": "INC-3", "score": 0.92, "reasons": ["same workload"], "title": "orders crashloop",
                 "category": "bad_deploy", "resource": "Deployment/orders/orders-api",
                 "resolution": "bot-mitigated", "fixed_by": "rollback-deployment"}],
}
VIEW = CatchUpView(reference="INC-7", title="KubePodCrashLooping orders-api", status="acknowledged",
                   severity="critical", commander="U0ALICE", acknowledged_by="U0ALICE",
                   cause="bad_deploy on Deployment/orders/orders-api: Revision 22 broke it.",
                   steps=["P-1 rollback-deployment on Deployment/orders/orders-api: proposed"],
                   latest_update="rolling back", latest_update_by="U0ALICE",
                   latest_update_at=datetime(2026, 11, 21, 10, 5, tzinfo=UTC),
                   follow_ups=[("F-1 add a readiness probe", "U0BOB")], open_follow_ups=1)
EVIDENCE = Evidence(VIEW, REPORT, "done", 1, datetime(2026, 11, 21, 10, 1, tzinfo=UTC), True,
                    (StepFacts(1, "rollback-deployment", "Deployment/orders/orders-api", "proposed", ("oncall",), 1),),
                    {"oncall": GroupFacts(("U0ALICE", "U0BOB"), "S0SRE", False)})


@pytest.mark.parametrize("name", [*BY_NAME, None])
def test_answer_golden(name):
    rendered = render_answer(build_answer(BY_NAME.get(name), EVIDENCE))
    check_golden(f"ask_{name or 'not_understood'}", rendered)
    assert valid_blocks(rendered["blocks"])


def test_answers_are_inert_and_carry_no_secret():
    for intent in INTENTS:
        text = json.dumps(render_answer(build_answer(intent, EVIDENCE)))
        assert "<!channel>" not in text and "hunter2" not in text, intent.name
        assert "```breakout" not in text


def test_without_a_stored_rca_the_answers_say_so_instead_of_inventing():
    pending = Evidence(VIEW, {}, "running", 1, None, False)
    for name in ("why", "checked", "logs", "graph", "similar"):
        answer = build_answer(BY_NAME[name], pending)
        assert answer.lines[0].text == "No stored evidence to answer from yet.", name
        assert "still running" in answer.source
    changed = build_answer(BY_NAME["changed"], pending)
    assert "there is none yet" in changed.lines[0].text
    nothing = build_answer(BY_NAME["approvers"], pending)
    assert nothing.lines[0].text == "No step is waiting for approval."


# --- through Slack -----------------------------------------------------------------------------


def mention(url: str, channel: str, thread_ts: str | None, text: str, user: str = ALICE, *,
            event_id: str | None = None, retry_num: int | None = None, **extra) -> requests.Response:
    event = {"type": "app_mention", "user": user, "text": f"<@U0OPSBOT> {text}", "channel": channel,
             "ts": f"{datetime.now(UTC).timestamp():.6f}", **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    body, headers = slack_signing.event_callback(SIGNING_SECRET, event, event_id=event_id, retry_num=retry_num)
    return requests.post(f"{url}/slack/events", data=body, headers=headers, timeout=10)


def replies(slack, root: dict) -> list[dict]:
    return slack.thread(root["channel"], root["ts"])[1:]


def answers(slack, root: dict) -> list[dict]:
    return [m for m in replies(slack, root) if m.get("blocks") and m["blocks"][0]["type"] == "section"
            and m["blocks"][0]["text"]["text"].startswith((":speech_balloon:", ":grey_question:"))]


def timeline(runtime, kind: str) -> list[dict]:
    with reading(runtime.factory) as session:
        return [e.payload for e in session.execute(select(TimelineEntry).where(TimelineEntry.kind == kind)
                                                   .order_by(TimelineEntry.seq)).scalars()]


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


EXPECTED = {  # what each answer must say about this scenario (from the stored RCA, not typed in here)
    "why": "bad_deploy on Deployment/orders/orders-api",
    "changed": "revision 22",
    "checked": "Checked: ",
    "logs": "panic",
    "graph": "image below",
    "approvers": "oncall:",
    "status": "Cause: bad_deploy",
    "similar": "no past incident in the memory resembles this one",
}


@pytest.mark.prometheus
def test_every_intent_is_answered_in_the_thread_from_the_stored_rca(world, orders):
    w = world(orders)
    w.deliver()
    w.proposal("rollback-deployment")  # the RCA is stored and its step proposed
    root = w.thread()[0]
    for position, intent in enumerate(INTENTS, start=1):
        assert mention(w.bot.url, root["channel"], root["ts"], intent.example).status_code == 200
        got = w.slack.wait_for(lambda emu, n=position: answers(emu, root)[n - 1] if len(answers(emu, root)) >= n
                               else None, timeout=15)
        text = json.dumps(got["blocks"])
        assert got["thread_ts"] == root["ts"] and f"({intent.name})" in got["text"], intent.name
        assert EXPECTED[intent.name] in text, (intent.name, text)
    assert "U0ALICE" in json.dumps(answers(w.slack, root)[INTENTS.index(BY_NAME["approvers"])]["blocks"])
    (graph,) = w.slack.wait_for(lambda emu: [f for f in emu.files if f["filename"] == "inc-1-graph.png"], timeout=15)
    assert graph["bytes"].startswith(b"\x89PNG") and graph["thread_ts"] == root["ts"], "the stored graph, as a PNG"
    mention(w.bot.url, root["channel"], root["ts"], "what is the meaning of life?")
    last = w.slack.wait_for(lambda emu: answers(emu, root)[len(INTENTS)] if len(answers(emu, root)) > len(INTENTS)
                            else None, timeout=15)
    assert "I can" in last["blocks"][0]["text"]["text"] and all(i.example in json.dumps(last["blocks"])
                                                                for i in INTENTS)
    trail = w.slack.wait_for(lambda _: [p["intent"] for p in timeline(w.bot.runtime, "ask.answered")][len(INTENTS):]
                             and [p["intent"] for p in timeline(w.bot.runtime, "ask.answered")], timeout=15)
    assert sorted(trail, key=str) == sorted([i.name for i in INTENTS] + [None], key=str)  # concurrent answers


def open_incident(bot, slack) -> dict:
    assert bot.post_webhook("alertmanager", am_body([am_alert(pod="a")])).status_code == 202
    root = slack.wait_for(lambda emu: next((m for m in emu.messages() if "thread_ts" not in m
                                            and "INC-" in m.get("text", "")), None), timeout=15)
    slack.wait_for(lambda _: timeline(bot.runtime, "investigation.told"), timeout=15)
    slack.wait_for(lambda emu: replies(emu, root), timeout=15)  # the note saying so: the workers are done posting
    return root


def test_a_retried_event_is_answered_once(bot, slack):
    root = open_incident(bot, slack)
    first = mention(bot.url, root["channel"], root["ts"], "status?", event_id="Ev0RETRY01")
    again = mention(bot.url, root["channel"], root["ts"], "status?", event_id="Ev0RETRY01", retry_num=1)
    assert first.status_code == 200 and again.status_code == 200
    slack.wait_for(lambda emu: answers(emu, root), timeout=15)
    mention(bot.url, root["channel"], root["ts"], "what changed?")  # a later, different event: a marker
    slack.wait_for(lambda emu: len(answers(emu, root)) >= 2, timeout=15)
    assert ["(status)" in m["text"] for m in answers(slack, root)] == [True, False]
    trail = slack.wait_for(lambda _: [p["intent"] for p in timeline(bot.runtime, "ask.answered")][1:] and
                           [p["intent"] for p in timeline(bot.runtime, "ask.answered")], timeout=15)
    assert trail == ["status", "changed"]


def test_bots_and_the_bot_itself_are_never_answered(bot, slack):
    root = open_incident(bot, slack)
    mention(bot.url, root["channel"], root["ts"], "status?", user="U0OPSBOT")
    mention(bot.url, root["channel"], root["ts"], "status?", user="U0OTHERBOT", bot_id="B0OTHER")
    mention(bot.url, root["channel"], root["ts"], "why?")  # a person, after: the marker
    slack.wait_for(lambda emu: answers(emu, root), timeout=15)
    assert ["(why)" in m["text"] for m in answers(slack, root)] == [True]


def test_a_mention_outside_an_incident_thread_gets_help(bot, slack):
    mention(bot.url, slack_signing.DEFAULT_CHANNEL_ID, None, "why?")
    (reply,) = slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"), timeout=15)
    assert "/ops status" in reply.args["text"] and timeline(bot.runtime, "ask.answered") == []


def test_a_slack_failure_is_on_the_timeline_not_raised(bot, slack):
    root = open_incident(bot, slack)
    slack.inject("chat.postMessage", error="channel_not_found")
    mention(bot.url, root["channel"], root["ts"], "status?")
    failed = slack.wait_for(lambda _: [p for p in timeline(bot.runtime, "slack.failed") if "answer" in p], timeout=15)
    assert failed == [{"method": "chat.postMessage", "error": "channel_not_found", "answer": "status"}]
    assert timeline(bot.runtime, "ask.answered")[-1] == {"intent": "status", "posted": False}
    mention(bot.url, root["channel"], root["ts"], "status?")  # the listener still answers the next question
    slack.wait_for(lambda emu: answers(emu, root), timeout=15)


@pytest.mark.prometheus
def test_a_signal_named_in_the_question_is_queried_from_prometheus_now(world, orders):
    w = world(orders)
    w.deliver()
    w.proposal("rollback-deployment")
    root = w.thread()[0]
    assert mention(w.bot.url, root["channel"], root["ts"], "graph the restarts please").status_code == 200
    (got,) = w.slack.wait_for(lambda emu: answers(emu, root) or None, timeout=15)
    text = json.dumps(got["blocks"])
    assert "Graph of restarts" in text and "Queried from Prometheus at" in text, text
    assert "kube_pod_container_status_restarts_total" in text and "orders-api" in text
    (png,) = w.slack.wait_for(lambda emu: [f for f in emu.files if f["filename"] == "inc-1-graph.png"], timeout=15)
    assert png["bytes"].startswith(b"\x89PNG")
    assert mention(w.bot.url, root["channel"], root["ts"], "graph the error rate").status_code == 200
    second = w.slack.wait_for(lambda emu: answers(emu, root)[1] if len(answers(emu, root)) > 1 else None, timeout=15)
    assert "Graph of error ratio" in json.dumps(second["blocks"])


def test_a_named_signal_that_cannot_be_queried_says_why():
    from datetime import UTC, datetime

    from bot.ask.fresh_graph import fresh_graph, wanted_signal

    assert (wanted_signal("graph error rate"), wanted_signal("show memory"), wanted_signal("graph it")) == \
        ("error_ratio", "memory_vs_limit", None)
    report = {"owners": ["Pod/shop/checkout-1", "Deployment/shop/checkout"], "hypotheses": [{"resource": "x"}]}
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert fresh_graph(None, report, "restarts", now) == (None, "Prometheus is not configured")
    assert fresh_graph("http://127.0.0.1:9", {}, "restarts", now) == (None, "the analysis names no workload to query")
    graph, why = fresh_graph("http://127.0.0.1:9", report, "restarts", now)
    assert graph is None and "unreachable" in why
