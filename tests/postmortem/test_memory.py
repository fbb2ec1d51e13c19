"""The memory of past incidents: signatures written when incidents resolve, the ranking with its
reasons, who is never a candidate (the incident itself, an incident not resolved, one resolved
after this one opened), the RCA section (golden file, and through the running bot), and
`opsbot incidents similar`. Incidents are opened and resolved by the real intake flow, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.db.engine import make_session_factory, reading, unit_of_work
from bot.db.models import IncidentSignature, Investigation, Proposal, TimelineEntry
from bot.postmortem.facts import NoSuchIncident
from bot.postmortem.memory import FEATURES, MIN_SCORE, remember, similar
from bot.postmortem.memory_cli import parse_reference
from bot.sandbox.scenario_alerts import webhook_body
from bot.slack.render.rca import render_rca
from tests.incidents.helpers import NOW, ingest_body, store_rca
from tests.incidents.test_rca_stage import rca_messages, scenario_bot  # noqa: F401 - fixture
from tests.payloads import am_alert, am_body
from tests.slack.test_card_render import check_golden, valid_blocks

CHECKOUT = "Deployment/shop/checkout"
OOM = "container <*> was OOMKilled at <NUM> bytes"


def _report(category: str, resource: str, owners: list[str], templates: list[str]) -> dict:
    return {"version": 1, "subject": resource, "inconclusive": False, "owners": owners, "log_templates": templates,
            "hypotheses": [{"category": category, "resource": resource, "confidence": 0.9,
                            "summary": f"{category} on {resource}", "supporting": [], "contradicting": []}]}


def _open(factory, key: str, at, report: dict | None, alerts=("KubePodCrashLooping",), namespace="shop",
          cluster="eu-1") -> int:
    """An incident opened by the intake, with its RCA stored as the RCA stage stores it."""
    body = am_body([am_alert(name, namespace=namespace, cluster=cluster, pod=f"{key}-pod") for name in alerts],
                   group_key=key)
    incident_id = ingest_body(factory, body, at).incident_id
    if report is not None:
        store_rca(factory, incident_id, report, at)
    return incident_id


def _resolve(factory, key: str, at, alerts=("KubePodCrashLooping",), namespace="shop", cluster="eu-1",
             firing=False) -> None:
    """Alertmanager says the alerts resolved at `at` (or, `firing`, that they fire again from `at`)."""
    stamp = at.isoformat().replace("+00:00", "Z")
    times = {"starts_at": stamp} if firing else {"ends_at": stamp}
    body = am_body([am_alert(name, status="firing" if firing else "resolved", namespace=namespace, cluster=cluster,
                             pod=f"{key}-pod", **times) for name in alerts], group_key=key)
    ingest_body(factory, body, at)


def _step(factory, incident_id: int, runbook: str, status: str, at, result: dict) -> None:
    with unit_of_work(factory) as session:
        session.add(Proposal(
            incident_id=incident_id, runbook_id=runbook, step_id="apply", title=runbook, params={}, target=CHECKOUT,
            namespace="shop", cluster="eu-1", labels={}, risk="low", autonomy="approve", requested_by="opsbot",
            status=status, decision={"decision": "needs_approval"}, plan={}, expires_at=at + timedelta(hours=1),
            created_at=at, updated_at=at, started_at=at, finished_at=at, result=result))


def _remember(factory, incident_id: int, at):
    with unit_of_work(factory) as session:
        return remember(session, incident_id, at)


def _similar(factory, incident_id: int, **kwargs):
    with reading(factory) as session:
        return similar(session, incident_id, **kwargs)


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


@pytest.fixture
def memory(factory):
    """Three resolved incidents: the same OOM on checkout (its fix held), a config error on the
    same workload (its step was rolled back), a memory limit elsewhere (too faint to list)."""
    same = _open(factory, "a", NOW, _report("memory_limit", CHECKOUT, ["Pod/shop/checkout-1", CHECKOUT], [OOM]))
    _step(factory, same, "raise-memory-limit", "succeeded", NOW + timedelta(minutes=5), {"before": 3, "after": 0})
    _resolve(factory, "a", NOW + timedelta(minutes=10))
    workload = _open(factory, "b", NOW + timedelta(hours=1),
                     _report("config_error", "ConfigMap/shop/checkout-env", ["ConfigMap/shop/checkout-env", CHECKOUT],
                             ["missing key <*>"]))
    _step(factory, workload, "rollback-deployment", "rolled_back", NOW + timedelta(hours=1, minutes=5),
          {"before": 3, "after": 3, "error": "verification failed; the step was rolled back"})
    _resolve(factory, "b", NOW + timedelta(hours=1, minutes=10))
    faint = _open(factory, "c", NOW + timedelta(hours=2),
                  _report("memory_limit", "Deployment/maps/tiles", ["Deployment/maps/tiles"], []),
                  alerts=("KubeContainerOOMKilled",), namespace="maps")
    _resolve(factory, "c", NOW + timedelta(hours=2, minutes=10), alerts=("KubeContainerOOMKilled",), namespace="maps")
    for incident_id in (same, workload, faint):
        assert _remember(factory, incident_id, NOW + timedelta(hours=3)) is not None
    return same, workload, faint


def test_the_ranking_explains_itself_and_says_how_each_past_incident_ended(factory, memory):
    same, workload, _faint = memory
    new = _open(factory, "d", NOW + timedelta(days=1),
                _report("memory_limit", CHECKOUT, ["Pod/shop/checkout-9", CHECKOUT], [OOM, "GC overhead <*>"]))
    first, second = _similar(factory, new)
    assert (first.incident_id, second.incident_id) == (same, workload)
    assert first.reasons == (f"same object to fix: {CHECKOUT}", f"same workload: {CHECKOUT}",
                             "same kind of cause: Memory limit too low", f"log templates that jumped in both: “{OOM}”",
                             "alerts in common: KubePodCrashLooping", "same namespace: shop", "same cluster: eu-1")
    assert first.score == pytest.approx(0.25 + 0.2 + 0.2 + 0.15 / 2 + 0.1 + 0.05 + 0.05)
    assert (first.resolution, first.fixed_by, first.fix_held) == ("bot-mitigated", "raise-memory-limit", True)
    assert first.steps == [{"runbook": "raise-memory-limit", "status": "succeeded", "held": True}]
    assert second.parts == {"workload": 0.2, "alerts": 0.1, "namespace": 0.05, "cluster": 0.05}
    assert second.score == pytest.approx(0.4) and second.score >= MIN_SCORE
    assert (second.category, second.fixed_by, second.fix_held) == ("config_error", None, None)
    assert second.steps == [{"runbook": "rollback-deployment", "status": "rolled_back", "held": False}]
    assert _similar(factory, new, limit=1) == [first]
    assert sum(f.weight for f in FEATURES) == pytest.approx(1.0)


def test_an_incident_is_never_its_own_match_nor_matched_by_what_resolved_after_it_opened(factory, memory):
    same, _workload, _faint = memory
    assert same not in [s.incident_id for s in _similar(factory, same)], "itself"
    assert _similar(factory, same) == [], "its look-alikes all resolved after it opened"
    with pytest.raises(NoSuchIncident, match="INC-404"), reading(factory) as session:
        similar(session, 404)


def test_unresolved_and_reopened_incidents_are_not_remembered_or_listed(factory, memory):
    same, _workload, _faint = memory
    still_open = _open(factory, "e", NOW + timedelta(hours=4), _report("memory_limit", CHECKOUT, [CHECKOUT], [OOM]))
    assert _remember(factory, still_open, NOW + timedelta(hours=5)) is None
    with reading(factory) as session:
        assert session.get(IncidentSignature, still_open) is None
    _resolve(factory, "a", NOW + timedelta(minutes=30), firing=True)  # within the reopen window: INC reopened
    new = _open(factory, "f", NOW + timedelta(days=1), _report("memory_limit", CHECKOUT, [CHECKOUT], [OOM]))
    listed = [s.incident_id for s in _similar(factory, new, limit=None)]
    assert same not in listed and still_open not in listed


def test_remember_is_idempotent_and_rewrites_after_a_new_resolution(factory, memory):
    same, _workload, _faint = memory

    def row():
        with reading(factory) as session:
            found = session.get(IncidentSignature, same)
            return {c: getattr(found, c) for c in ("resolved_at", "cluster", "namespace", "resource", "category",
                                                    "features", "resolution", "summary")}
    before = row()
    _remember(factory, same, NOW + timedelta(hours=3))
    assert row() == before
    with reading(factory) as session:
        assert len(session.execute(select(IncidentSignature)).scalars().all()) == 3
    assert before["features"]["fix_held"] is True and before["features"]["reopened"] == 0
    _resolve(factory, "a", NOW + timedelta(minutes=30), firing=True)
    _resolve(factory, "a", NOW + timedelta(minutes=40))
    _remember(factory, same, NOW + timedelta(hours=3))
    after = row()
    assert after["resolved_at"] > before["resolved_at"]
    assert after["features"]["reopened"] == 1 and after["features"]["fix_held"] is False, "reopened after the fix"


SIMILAR_REPORT = {
    "version": 1, "subject": f"{CHECKOUT} in cluster eu-1", "inconclusive": False,
    "hypotheses": [{"category": "memory_limit", "resource": CHECKOUT, "confidence": 0.92, "explicit": True,
                    "summary": "checkout is OOMKilled at its 512Mi limit.", "action": "Raise the limit to 768Mi.",
                    "supporting": [], "contradicting": []}],
    "similar": [
        {"incident": "INC-3", "score": 0.925, "title": "KubePodCrashLooping checkout <!channel>",
         "reasons": [f"same object to fix: {CHECKOUT}", "same kind of cause: Memory limit too low"],
         "category": "memory_limit", "resource": CHECKOUT, "resolution": "bot-mitigated",
         "fixed_by": "raise-memory-limit", "fix_held": True, "note": None},
        {"incident": "INC-5", "score": 0.4, "title": "checkout config", "reasons": [f"same workload: {CHECKOUT}"],
         "category": "config_error", "resource": "ConfigMap/shop/checkout-env", "resolution": "human-resolved",
         "fixed_by": None, "fix_held": None, "note": "restored the key by hand"},
    ],
}


def test_the_rca_lists_past_incidents_as_hypotheses_to_check_golden():
    rendered = render_rca(SIMILAR_REPORT, "INC-9")
    check_golden("rca_similar", rendered)
    assert valid_blocks(rendered["blocks"])
    text = json.dumps(rendered)
    assert "hypotheses to check, not the cause" in text and "<!channel>" not in text
    assert "Similar past" not in json.dumps(render_rca({**SIMILAR_REPORT, "similar": []}, "INC-9"))


def _opsbot(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "bot", "incidents", "similar", *args], capture_output=True,
                          text=True, timeout=60, env={**env, "OPSBOT_DATABASE_URL": database_url})


def test_the_cli_prints_the_ranking_and_refuses_bad_references_in_one_line(factory, memory, database_url):
    same, workload, _faint = memory
    new = _open(factory, "g", NOW + timedelta(days=1), _report("memory_limit", CHECKOUT, [CHECKOUT], [OOM]))
    shown = _opsbot(database_url, f"inc-{new}")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"INC-{new}: past incidents like it (hypotheses to check, never answers)"
    assert lines[1].startswith(f"1. INC-{same}  ") and "bot-mitigated, step raise-memory-limit, fix held" in lines[1]
    assert f"   - same object to fix: {CHECKOUT} (+0.25)" in lines
    as_json = json.loads(_opsbot(database_url, str(new), "--json", "--limit", "1").stdout)
    assert [s["incident"] for s in as_json["similar"]] == [f"INC-{same}"]
    assert "no resolved past incident" in _opsbot(database_url, f"INC-{same}").stdout
    for args, words in ((("INC-x",), "is not an incident reference"), (("INC-404",), "INC-404 does not exist"),
                        ((str(new), "--limit", "0"), "--limit must be between 1 and 50")):
        refused = _opsbot(database_url, *args)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and words in refused.stderr and "Traceback" not in refused.stderr
    assert parse_reference(" INC-7 ") == 7 and parse_reference("7") == 7


def _second_incident_body(scenario) -> bytes:
    body = json.loads(webhook_body(scenario))
    body["groupKey"] = body["groupKey"] + "-again"
    return json.dumps(body).encode()


def _resolved_body(scenario) -> bytes:
    body = json.loads(webhook_body(scenario))
    body["status"] = "resolved"
    for alert in body["alerts"]:
        alert["status"], alert["endsAt"] = "resolved", alert["startsAt"]
    return json.dumps(body).encode()


@pytest.fixture
def orders():
    from tests.context.sandbox import shared

    return shared("orders-api-revision-22-panics-on-start")


def test_the_running_bot_lists_a_remembered_incident_in_the_next_rca(orders, scenario_bot, slack):  # noqa: F811
    bot = scenario_bot(orders)
    factory = bot.runtime.factory
    bot.post_webhook("alertmanager", webhook_body(orders))
    slack.wait_for(rca_messages, timeout=30)
    assert bot.post_webhook("alertmanager", _resolved_body(orders)).status_code == 202
    slack.wait_for(lambda _: _remember(factory, 1, bot.runtime.clock()) is not None, timeout=30)
    bot.post_webhook("alertmanager", _second_incident_body(orders))
    second = slack.wait_for(lambda emu: len(rca_messages(emu)) == 2 and rca_messages(emu)[1], timeout=30)
    words = str(second["blocks"])
    assert "Similar past incidents" in words and "INC-1" in words and "same object to fix" in words
    with reading(factory) as session:
        (stored,) = session.execute(select(Investigation.result).where(Investigation.incident_id == 2)).scalars()
        finished = session.execute(select(TimelineEntry.payload).where(
            TimelineEntry.incident_id == 2, TimelineEntry.kind == "investigation.finished")).scalar_one()
    assert stored["similar"][0]["incident"] == "INC-1" and stored["similar"][0]["resource"] == stored[
        "hypotheses"][0]["resource"]
    assert finished["similar"] == ["INC-1"]


def test_a_memory_that_cannot_be_read_costs_only_its_section(orders, scenario_bot, slack, engine,  # noqa: F811
                                                             caplog):
    caplog.set_level(logging.ERROR)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE incident_signatures"))
    bot = scenario_bot(orders)
    bot.post_webhook("alertmanager", webhook_body(orders))
    (rca,) = slack.wait_for(rca_messages, timeout=30)
    assert "Root cause analysis" in str(rca["blocks"]) and "Similar past" not in str(rca["blocks"])
    assert any("similar past incidents failed" in r.getMessage() for r in caplog.records)


def test_the_postmortem_lists_the_past_incidents_like_it_as_hypotheses(factory, memory):
    from bot.postmortem.document import postmortem_document
    from bot.postmortem.markdown import render_markdown
    from bot.slack.render.postmortem import render_postmortem

    same, _workload, _faint = memory
    new = _open(factory, "d", NOW + timedelta(days=1),
                _report("memory_limit", CHECKOUT, ["Pod/shop/checkout-9", CHECKOUT], [OOM]))
    _resolve(factory, "d", NOW + timedelta(days=1, minutes=20))
    with reading(factory) as session:
        document = postmortem_document(session, new)
    assert [item["incident"] for item in document["similar"]][:1] == [f"INC-{same}"]
    message = json.dumps(render_postmortem(document)["blocks"])
    assert "Similar past incidents" in message and "not the cause of this one" in message
    assert f"INC-{same}" in message and "raise-memory-limit" in message and "(it held)" in message
    markdown = render_markdown(document)
    assert "## Similar past incidents" in markdown and f"- INC-{same} " in markdown
