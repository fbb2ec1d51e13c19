"""Intake in child processes (OPSBOT_INTAKE_PROCESSES): same incidents, same metrics, clean stop."""

import os
import queue
import threading
import time

import pytest
import requests
from sqlalchemy import select

from bot.config import Settings
from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery
from bot.intake_processes import MetricsRelay, apply_relayed
from bot.metrics import Metrics
from tests.concurrency import eventually
from tests.handlers.test_intake_rules import configured_bot, roots  # noqa: F401 - fixture
from tests.payloads import am_alert, am_body


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_relay_carries_counts_and_observations_in_one_batch():
    channel: queue.Queue = queue.Queue()
    relay = MetricsRelay(channel)
    for _ in range(3):
        relay.alerts_received.labels(source="alertmanager", status="firing").inc()
    relay.alerts_suppressed.labels(source="grafana", reason="heartbeat").inc(2)
    relay.work_seconds.labels(stage="intake").observe(0.25)
    relay.flush()
    relay.flush()  # nothing new: nothing sent
    assert channel.qsize() == 1
    metrics = Metrics()
    apply_relayed(metrics, channel.get_nowait())
    assert sample(metrics, "opsbot_alerts_received_total", source="alertmanager", status="firing") == 3
    assert sample(metrics, "opsbot_alerts_suppressed_total", source="grafana", reason="heartbeat") == 2
    assert sample(metrics, "opsbot_work_seconds_count", stage="intake") == 1
    assert sample(metrics, "opsbot_work_seconds_sum", stage="intake") == 0.25


def test_a_name_outside_the_relayed_metrics_is_ignored():
    metrics = Metrics()
    apply_relayed(metrics, ({("slack_calls", (("method", "chat.postMessage"), ("outcome", "ok"))): 5}, []))
    assert sample(metrics, "opsbot_slack_calls_total", method="chat.postMessage", outcome="ok") is None


def test_an_in_memory_database_cannot_be_shared_with_intake_processes():
    with pytest.raises(ValueError, match="OPSBOT_INTAKE_PROCESSES needs a database"):
        Settings(database_url="sqlite:///:memory:", intake_processes=1)


def test_intake_runs_in_a_child_process_with_the_same_outcome(configured_bot, slack):
    bot = configured_bot(intake_processes=1, silences=['namespace=~"dev-.*"'])
    elsewhere = bot.runtime.workers._elsewhere
    assert elsewhere is not None and elsewhere.alive() == 1
    assert bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a"),
                                                     am_alert(namespace="shop", pod="b")], group_key="shop")
                            ).status_code == 202
    assert bot.post_webhook("alertmanager", am_body([am_alert(namespace="dev-1", pod="c")], group_key="dev")
                            ).status_code == 202
    slack.wait_for(lambda emu: roots(emu))  # the child opened the incident; the parent posted its card

    def processed():
        with unit_of_work(bot.runtime.factory) as session:
            deliveries = session.execute(select(RawDelivery)).scalars().all()
            return [d.status for d in deliveries] == ["done", "done"] and deliveries
    owners = {delivery.claimed_by for delivery in eventually(processed)}
    assert all(owner.split(":")[1] != str(os.getpid()) for owner in owners), "claimed by the child, not here"
    with unit_of_work(bot.runtime.factory) as session:
        incidents = session.execute(select(Incident)).scalars().all()
    assert [(incident.namespace, incident.alert_count) for incident in incidents] == [("shop", 2)]
    counted = ('opsbot_alerts_received_total{source="alertmanager",status="firing"} 2.0',
               'opsbot_alerts_suppressed_total{reason="silenced",source="alertmanager"} 1.0',
               'opsbot_incidents_opened_total{source="alertmanager"} 1.0')
    eventually(lambda: all(line in requests.get(f"{bot.url}/metrics", timeout=5).text for line in counted))
    bot.runtime.workers.stop()
    assert elsewhere.alive() == 0


def test_a_child_that_dies_is_replaced_and_intake_goes_on(configured_bot, slack, monkeypatch):
    monkeypatch.setattr("bot.intake_processes.RESTART_SECONDS", 0)
    bot = configured_bot(intake_processes=1)
    elsewhere = bot.runtime.workers._elsewhere
    (first,) = elsewhere._processes
    first.kill()
    first.join(10)
    replaced = eventually(lambda: elsewhere.alive() == 1 and elsewhere._processes[0].pid != first.pid)
    assert replaced
    assert bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a")], group_key="shop")
                            ).status_code == 202
    slack.wait_for(lambda emu: roots(emu))  # the new child opened the incident
    bot.runtime.workers.stop()
    assert elsewhere.alive() == 0


def test_waking_a_child_killed_while_it_waited_never_blocks_and_a_full_pipe_is_no_wait(configured_bot, slack):
    """A child killed in its wait (the OOM killer) must not hang the webhooks that wake it, and
    a child too busy to read its wake-ups must not block them either."""
    bot = configured_bot(intake_processes=1)
    elsewhere = bot.runtime.workers._elsewhere
    (child,) = elsewhere._processes
    assert bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a")], group_key="shop")
                            ).status_code == 202
    slack.wait_for(lambda emu: roots(emu))  # the child runs its loop: it opened the incident
    time.sleep(1)  # and is idle in its wait for the next wake-up
    child.kill()
    child.join(10)
    waker = threading.Thread(target=lambda: [elsewhere.wake() for _ in range(50_000)], daemon=True)
    waker.start()
    waker.join(60)
    assert not waker.is_alive(), "wake() blocked on a dead child (or on a full pipe)"
    bot.runtime.workers.stop()
    assert elsewhere.alive() == 0
