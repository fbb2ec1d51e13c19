"""End to end with the real binaries: Alertmanager (and Prometheus evaluating a rule over
backfilled scenario metrics) deliver webhooks to the running bot, and the incident card
appears in the Slack emulator, updated in place as the alert group changes."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from bot.sandbox.promstack import webhook_config
from bot.sandbox.scenario import load_scenario
from tests.conftest import WEBHOOK_TOKEN


def card_text(slack) -> str:
    (card,) = slack.messages()
    return str(card["blocks"])


def am_alert(pod: str, ends_at: datetime | None = None) -> dict:
    alert = {
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod, "severity": "warning",
                   "service": "checkout"},
        "annotations": {"summary": "Pod is crash looping."},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    return alert


def test_alertmanager_delivers_and_the_card_follows_the_group(bot, slack, alertmanager_factory):
    am = alertmanager_factory(webhook_config(f"{bot.url}/webhooks/alertmanager", bearer_token=WEBHOOK_TOKEN))
    am.post_alerts([am_alert("checkout-7d9f-abc12")])
    slack.wait_for(lambda emu: emu.messages(), timeout=30)
    assert "1 firing / 1 total" in card_text(slack)

    am.post_alerts([am_alert("checkout-7d9f-abc12"), am_alert("checkout-7d9f-def34")])
    slack.wait_for(lambda emu: "2 firing / 2 total" in card_text(emu), timeout=30)

    past = datetime.now(UTC) - timedelta(seconds=1)
    am.post_alerts([am_alert("checkout-7d9f-abc12", ends_at=past), am_alert("checkout-7d9f-def34", ends_at=past)])
    slack.wait_for(lambda emu: "Resolved by source" in card_text(emu), timeout=30)

    roots = [call for call in slack.calls_to("chat.postMessage") if "thread_ts" not in call.args]
    assert len(roots) == 1, "one thread: the root was posted once"
    assert len(slack.calls_to("chat.update")) >= 2
    (root,) = slack.messages()

    def notes(emu):
        return " | ".join(reply["text"] for reply in emu.thread(root["channel"], root["ts"])[1:])

    slack.wait_for(lambda emu: "2 resolved" in notes(emu), timeout=10)
    assert "1 new firing" in notes(slack)
    with bot.runtime.factory() as session:
        from bot.db.models import RawDelivery

        bodies = [delivery.body for delivery in session.query(RawDelivery)]
    assert bodies and all(b'"version":"4"' in body for body in bodies), "real Alertmanager payloads"


def test_prometheus_rule_over_scenario_metrics_reaches_slack(bot, slack, tmp_path, prometheus_factory,
                                                              alertmanager_factory):
    scenario_file = tmp_path / "memory-growth.yaml"
    scenario_file.write_text(yaml.safe_dump({
        "id": "memory-growth-live",
        "title": "Working set grows towards the limit",
        "cluster": {"objects": [], "events": []},
        "metrics": {"interval": "15s", "series": [{
            "series": 'container_memory_working_set_bytes{namespace="shop",pod="report-1",container="app"}',
            "values": "100000000+5000000x40",
        }]},
        "alerts": [],
        "expect": {"category": "memory_limit", "resource": "Deployment/shop/report"},
    }))
    scenario = load_scenario(scenario_file)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "test", "interval": "1s", "rules": [{
        "alert": "ContainerMemoryHigh",
        "expr": "container_memory_working_set_bytes > 250000000",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "Working set above 250 MB."},
    }]}]}))
    am = alertmanager_factory(webhook_config(f"{bot.url}/webhooks/alertmanager", bearer_token=WEBHOOK_TOKEN))
    prometheus_factory(scenario, rule_files=[Path(rules)], alertmanager_url=am.url, evaluation_interval="1s",
                       alert_resend_delay="1s")
    slack.wait_for(lambda emu: emu.messages(), timeout=60)
    text = card_text(slack)
    assert "ContainerMemoryHigh" in text and "critical" in text and "shop" in text
