"""The RCA stage through the running bot: an Alertmanager webhook becomes an incident whose
thread receives the RCA, the graph and the evidence file; read from the sandbox API server
and a real Prometheus, at the scenario's clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, Investigation, TimelineEntry
from bot.incidents import investigations
from bot.incidents.rca_stage import RcaStage
from bot.sandbox.scenario_alerts import webhook_body
from bot.sandbox.scenario_time import scenario_clock
from tests.concurrency import eventually, run_together
from tests.conftest import RunningBot, make_settings, serve_on
from tests.context.sandbox import served, shared
from tests.payloads import am_alert, am_body

RCA = "Root cause analysis"


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


@pytest.fixture
def scenario_bot(database_url, slack, engine) -> Iterator:  # noqa: F811 - engine migrates the database
    """scenario_bot(scenario, **settings): the bot at the scenario's clock, reading its sandbox
    cluster (and `prometheus_url` when given)."""
    stack = ExitStack()

    def start(scenario, **overrides) -> RunningBot:
        kube = stack.enter_context(served(scenario))
        settings = make_settings(database_url, slack, kube_mode="url", kube_api_url=kube, **overrides)
        return serve_on(stack, settings, slack, clock=scenario_clock(scenario.now))

    yield start
    stack.close()


def rca_messages(slack):
    return [reply for root in slack.messages() for reply in slack.thread(root["channel"], root["ts"])[1:]
            if RCA in str(reply.get("blocks"))]


def timeline_kinds(bot, incident_id=1):
    with unit_of_work(bot.runtime.factory) as session:
        return [e.kind for e in session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                                                .order_by(TimelineEntry.seq)).scalars()]


@pytest.mark.prometheus
def test_an_alert_becomes_an_rca_with_graph_and_evidence_in_its_thread(orders, scenario_bot, slack,
                                                                        prometheus_factory):
    prometheus = prometheus_factory(orders)
    bot = scenario_bot(orders, prometheus_url=prometheus.url)
    assert bot.post_webhook("alertmanager", webhook_body(orders)).status_code == 202
    (rca,) = slack.wait_for(rca_messages, timeout=30)
    (card,) = [m for m in slack.messages() if "thread_ts" not in m]
    assert rca["thread_ts"] == card["ts"]
    text = str(rca["blocks"])
    assert "Bad rollout" in text and "4.12.0" in text and "panic" in text and "revision 21" in text
    files = slack.wait_for(lambda emu: len(emu.files) == 2 and emu.files, timeout=30)
    assert sorted(f["filename"].rsplit("-", 1)[-1] for f in files) == ["evidence.txt", "signal.png"]
    assert all(f["thread_ts"] == card["ts"] for f in files)
    png = next(f for f in files if f["filename"].endswith(".png"))
    assert png["bytes"].startswith(b"\x89PNG")
    evidence = next(f for f in files if f["filename"].endswith(".txt"))["bytes"].decode()
    assert "panic: assignment to entry in nil map" in evidence and "containers[api].image" in evidence
    kinds = eventually(lambda: (k := timeline_kinds(bot)) and "slack.rca_posted" in k and k)
    assert kinds.index("investigation.finished") < kinds.index("slack.rca_posted")
    with unit_of_work(bot.runtime.factory) as session:
        (row,) = session.execute(select(Investigation)).scalars()
        assert row.status == "done" and row.posted_at is not None and row.post_ts == rca["ts"]
        assert row.result["hypotheses"][0]["category"] == "bad_deploy"
    import requests

    metrics = requests.get(f"{bot.url}/metrics", timeout=5).text
    assert 'opsbot_investigations_total{category="bad_deploy",outcome="done"} 1.0' in metrics


def test_slack_rate_limiting_delays_the_rca_and_it_is_posted_once(orders, scenario_bot, slack):
    bot = scenario_bot(orders, investigation_settle_seconds=1.0)
    bot.post_webhook("alertmanager", webhook_body(orders))
    slack.wait_for(lambda emu: emu.messages(), timeout=10)  # the card is in; the RCA waits its settle time
    slack.inject("chat.postMessage", status=429, retry_after=1)
    slack.wait_for(rca_messages, timeout=30)
    assert len(rca_messages(slack)) == 1
    assert [c.status for c in slack.calls_to("chat.postMessage")].count(429) == 1
    assert "slack.failed" in timeline_kinds(bot)


def test_alerts_that_name_no_kubernetes_object_are_not_investigated(bot, slack):
    body = am_body([am_alert("PaymentsSLOBurn", severity="critical", service_tier="gold")], group_key="slo")
    bot.post_webhook("alertmanager", body)
    slack.wait_for(lambda emu: emu.messages(), timeout=10)
    eventually(lambda: "investigation.skipped" in timeline_kinds(bot))
    assert rca_messages(slack) == []
    (note,) = slack.wait_for(lambda emu: [m["text"] for m in thread_replies(emu)
                                          if "No root cause analysis" in m.get("text", "")], timeout=15)
    assert "name no Kubernetes object" in note and "alertname, service_tier, severity" in note
    assert "nothing was checked" in note, "the thread is never silent about an RCA that will not come"


def thread_replies(slack) -> list[dict]:
    root = slack.messages()[0]
    return slack.thread(root["channel"], root["ts"])[1:]


def test_an_alert_from_a_cluster_the_bot_does_not_know_says_so_in_the_thread(orders, scenario_bot, slack):
    bot = scenario_bot(orders, clusters={"eu-1": {"kube_mode": "url", "kube_api_url": "http://127.0.0.1:9"}})
    bot.post_webhook("alertmanager", webhook_body(orders))  # its alerts carry cluster=dc1-prod
    (rca,) = slack.wait_for(rca_messages, timeout=30)
    assert "cluster dc1-prod is not configured" in str(rca["blocks"])


def test_an_investigation_is_run_by_one_worker_only(bot):
    """Two workers (two replicas) claim the same investigation at once: one runs it."""
    body = am_body([am_alert(namespace="shop", pod="web-1")], group_key="g")
    bot.runtime.workers.stop()
    bot.post_webhook("alertmanager", body)
    bot.runtime.workers.start()
    eventually(lambda: _investigation_status(bot) is not None)
    bot.runtime.workers.stop()
    with unit_of_work(bot.runtime.factory) as session:
        session.execute(Investigation.__table__.update().values(status="pending", attempts=0, lease_owner=None,
                                                                lease_until=None))
        (investigation_id,) = session.execute(select(Investigation.id)).scalars()
    runtime = bot.runtime
    from bot.context.clusters import ClusterDirectory

    stages = [RcaStage(runtime.factory, runtime.gateway, ClusterDirectory(None), runtime.clock, owner=f"replica-{i}")
              for i in range(2)]
    outcomes: list[str] = []
    assert run_together(lambda i: outcomes.append(stages[i].run(investigation_id)), 2) == []
    assert sorted(outcomes) == ["done", "taken"]


def _investigation_status(bot):
    with unit_of_work(bot.runtime.factory) as session:
        row = session.execute(select(Investigation)).scalar_one_or_none()
        return row.status if row else None


def test_claims_are_conditional(bot):
    from datetime import timedelta

    bot.runtime.workers.stop()
    now = bot.runtime.clock()
    with unit_of_work(bot.runtime.factory) as session:
        incident = Incident(group_key="k", group_key_hash="h", source="alertmanager", title="t", created_at=now,
                            updated_at=now)
        session.add(incident)
        session.flush()
        investigations.schedule(session, incident.id, now)
    with unit_of_work(bot.runtime.factory) as session:
        (row_id,) = investigations.due(session, now)
        assert investigations.claim(session, row_id, "a", now, timedelta(seconds=60))
        assert not investigations.claim(session, row_id, "b", now, timedelta(seconds=60)), "leased"
        assert investigations.claim(session, row_id, "b", now + timedelta(seconds=61), timedelta(seconds=60)), \
            "a lapsed lease is taken over"
        assert not investigations.finish(session, row_id, "a", {}, now), "the old owner cannot finish it"
        assert investigations.finish(session, row_id, "b", {"ok": 1}, now)


def test_the_rca_and_its_files_share_the_incidents_one_write_per_interval(orders, scenario_bot, slack):
    bot = scenario_bot(orders, card_min_interval_seconds=1.0)
    bot.post_webhook("alertmanager", webhook_body(orders))
    slack.wait_for(lambda emu: emu.files, timeout=30)
    slack.wait_for(lambda emu: len([c for c in emu.calls_to("chat.postMessage") if c.ok]) >= 3, timeout=30)
    writes = sorted(c.at for c in slack.calls if c.ok and c.method in
                    ("chat.postMessage", "chat.update", "files.completeUploadExternal"))
    assert len(writes) >= 4  # card, RCA, files, the proposed rollback
    gaps = [later - earlier for earlier, later in zip(writes, writes[1:], strict=False)]
    # the RCA may follow the card at once (people are waiting for it); every later write keeps
    # the interval, the one after the RCA included
    assert min(gaps[1:]) >= 0.8, f"writes closer than the interval: {gaps}"  # 0.2 s for the two clocks
    assert gaps[0] < 0.8, f"the RCA waited for the interval after the card: {gaps}"


def test_a_bot_that_can_read_neither_kubernetes_nor_prometheus_posts_no_empty_rca(bot, slack):
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="web-1")], group_key="g"))
    slack.wait_for(lambda emu: emu.messages(), timeout=10)
    eventually(lambda: "investigation.skipped" in timeline_kinds(bot))
    assert rca_messages(slack) == []
    (note,) = slack.wait_for(lambda emu: [m["text"] for m in thread_replies(emu)
                                          if "No root cause analysis" in m.get("text", "")], timeout=15)
    assert "neither Kubernetes nor Prometheus is configured" in note
