"""Intake rules through the running bot: dedup of retries, grouping template, silences,
heartbeats, debounced cards with thread notes, related incidents and the Merge button."""

import json
import time

import pytest
from sqlalchemy import func, select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery
from bot.runtime import build_runtime
from bot.sandbox import slack_signing
from bot.web import HttpServer, create_web_app
from tests.concurrency import eventually, run_together
from tests.conftest import SIGNING_SECRET, RunningBot, make_settings
from tests.payloads import am_alert, am_body


@pytest.fixture
def configured_bot(database_url, slack, engine):
    """A bot with extra settings: configured_bot(**settings)."""
    started = []

    def start(**overrides):
        runtime = build_runtime(make_settings(database_url, slack, **overrides))
        server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=8)
        url = server.start()
        runtime.workers.start()
        started.append((runtime, server))
        return RunningBot(runtime, url, slack)

    yield start
    for runtime, server in started:
        runtime.workers.stop()
        server.stop()
        runtime.close()


def count(bot, model):
    with unit_of_work(bot.runtime.factory) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def roots(slack):
    return [message for message in slack.messages() if "thread_ts" not in message]


def card_json(slack, index: int = 0) -> str:
    """The blocks of the index-th card as JSON text ('' while it is not posted yet)."""
    cards = roots(slack)
    return json.dumps(cards[index]["blocks"]) if len(cards) > index else ""


def test_a_retried_webhook_is_processed_once(bot, slack):
    body = am_body([am_alert(pod="a")])
    first, retry = bot.post_webhook("alertmanager", body), bot.post_webhook("alertmanager", body)
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    assert count(bot, RawDelivery) == 1


def test_concurrent_deliveries_for_a_new_group_open_one_thread(bot, slack):
    bodies = [am_body([am_alert(pod=f"p{i}")], group_key="storm") for i in range(10)]
    codes = []
    assert run_together(lambda i: codes.append(bot.post_webhook("alertmanager", bodies[i]).status_code), 10) == []
    assert codes == [202] * 10
    slack.wait_for(lambda emu: "10 firing / 10 total" in json.dumps(roots(emu)), timeout=20)
    assert count(bot, Incident) == 1 and len(roots(slack)) == 1


def test_heartbeats_and_silenced_alerts_open_no_thread(configured_bot, slack):
    bot = configured_bot(silences=['namespace=~"dev-.*"'])
    assert bot.post_webhook("alertmanager", am_body([am_alert("Watchdog", severity="none")], group_key="hb")
                            ).status_code == 202
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="dev-7", pod="x")], group_key="dev"))
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="prod", pod="y")], group_key="prod"))

    def processed():
        with unit_of_work(bot.runtime.factory) as session:
            return [d.status for d in session.execute(select(RawDelivery)).scalars()] == ["done"] * 3
    eventually(processed)  # all three went through intake: what opens a thread has opened it
    assert count(bot, Incident) == 1, "the heartbeat and the silenced alert opened no incident"
    slack.wait_for(lambda emu: roots(emu))
    assert len(roots(slack)) == 1 and "prod" in roots(slack)[0]["text"]
    import requests

    counted = ('opsbot_alerts_suppressed_total{reason="heartbeat",source="alertmanager"} 1.0',
               'opsbot_alerts_suppressed_total{reason="silenced",source="alertmanager"} 1.0')
    # counted just after each delivery's transaction commits
    eventually(lambda: all(line in requests.get(f"{bot.url}/metrics", timeout=5).text for line in counted))


def test_a_group_key_template_splits_one_notification_into_incidents(configured_bot, slack):
    bot = configured_bot(group_key_template="{namespace}/{service}")
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="checkout-7d9f8b6c5d-x2bz4"),
                                              am_alert(namespace="shop", pod="cart-5f6d7c8b9d-qw7lm"),
                                              am_alert(namespace="shop", pod="checkout-7d9f8b6c5d-h8kjq")]))
    slack.wait_for(lambda emu: len(roots(emu)) == 2)
    with unit_of_work(bot.runtime.factory) as session:
        keys = sorted((i.group_key, i.alert_count) for i in session.execute(select(Incident)).scalars())
    assert keys == [("template:shop/cart", 1), ("template:shop/checkout", 2)]


def test_a_storm_into_one_incident_is_debounced(configured_bot, slack):
    bot = configured_bot(card_min_interval_seconds=1.0)
    for index in range(30):  # a storm spread over ~3 intervals
        bot.post_webhook("alertmanager", am_body([am_alert(pod=f"p{j}") for j in range(index + 1)], group_key="g"))
        time.sleep(0.1)
    slack.wait_for(lambda emu: "30 firing / 30 total" in json.dumps(roots(emu)), timeout=20)
    writes = sorted(call.at for call in slack.calls if call.method in ("chat.postMessage", "chat.update"))
    gaps = [later - earlier for earlier, later in zip(writes, writes[1:], strict=False)]
    assert min(gaps) >= 0.9, "at most one Slack write per incident per interval (1 s here)"
    assert len(writes) < 30, "fewer writes than batches"
    (root,) = roots(slack)
    first_card = json.dumps(slack.calls_to("chat.postMessage")[0].args["blocks"])
    shown_first = int(first_card.split(" firing / ")[0].split("\\n")[-1])

    def announced(emu):
        notes = [reply["text"] for reply in emu.thread(root["channel"], root["ts"])[1:]]
        return shown_first + sum(int(n.split(" new firing")[0].split()[-1]) for n in notes if " new firing" in n)

    # every new alert is announced exactly once: on the first card or in a note
    slack.wait_for(lambda emu: announced(emu) == 30, timeout=10)
    time.sleep(1.5)
    assert announced(slack) == 30


def merge_click(bot, value, user="U0ALICE"):
    payload = {"type": "block_actions", "user": {"id": user, "username": "alice", "team_id": "T0EMULATOR"},
               "api_app_id": "A0OPSBOT", "team": {"id": "T0EMULATOR"}, "channel": {"id": "C0OPSBOT"},
               "container": {"type": "message", "channel_id": "C0OPSBOT"}, "trigger_id": slack_signing.new_trigger_id(),
               "actions": [{"type": "button", "action_id": "incident_merge", "block_id": "incident_related",
                            "value": value, "action_ts": "1763721600.000200"}],
               "response_url": "http://127.0.0.1:9/unused"}
    body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
    import requests

    return requests.post(f"{bot.url}/slack/interactions", data=body, headers=headers, timeout=10)


def test_related_incidents_are_suggested_and_merged_on_click(bot, slack):
    bot.post_webhook("alertmanager", am_body([am_alert("KubePodCrashLooping", namespace="shop", service="checkout",
                                                       pod="a")], group_key="g-crash"))
    slack.wait_for(lambda emu: len(roots(emu)) == 1)
    bot.post_webhook("alertmanager", am_body([am_alert("KubeDeploymentReplicasMismatch", namespace="shop",
                                                       service="checkout", pod="b")], group_key="g-replicas"))
    slack.wait_for(lambda emu: len(roots(emu)) == 2)
    second = roots(slack)[1]
    assert "Possibly related to *INC-1*" in json.dumps(second["blocks"])
    assert merge_click(bot, "2:1").status_code == 200
    slack.wait_for(lambda emu: "Merged into INC-1" in card_json(emu, 1))
    slack.wait_for(lambda emu: "2 firing / 2 total" in card_json(emu))
    bot.post_webhook("alertmanager", am_body([am_alert("KubeDeploymentReplicasMismatch", namespace="shop",
                                                       service="checkout", pod="c")], group_key="g-replicas"))
    slack.wait_for(lambda emu: "3 firing / 3 total" in card_json(emu))
    assert len(roots(slack)) == 2, "later alerts of the merged group follow it"

    assert merge_click(bot, "2:1").status_code == 200
    (refusal,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert "INC-2 is already merged" in refusal["text"]
    merge_click(bot, "2:x")
    slack.wait_for(lambda emu: len(emu.ephemerals()) == 2)
    assert "malformed" in slack.ephemerals()[1]["text"]


def test_merge_is_refused_to_those_the_policy_leaves_out_and_for_a_suggestion_not_made(configured_bot, slack,
                                                                                        tmp_path):
    (tmp_path / "merge.yaml").write_text("approver_groups:\n  leads: {users: [U0BOB]}\nmerge_managers: [leads]\n")
    bot = configured_bot(policies_dir=tmp_path)
    for name, group, pod in (("KubePodCrashLooping", "g-crash", "a"), ("KubeDeploymentReplicasMismatch",
                                                                      "g-replicas", "b")):
        bot.post_webhook("alertmanager", am_body([am_alert(name, namespace="shop", service="checkout", pod=pod)],
                                                 group_key=group))
        slack.wait_for(lambda emu, n=pod: len(roots(emu)) == {"a": 1, "b": 2}[n])
    assert merge_click(bot, "2:1", user="U0ALICE").status_code == 200
    (refusal,) = slack.wait_for(lambda emu: emu.ephemerals())
    assert "Not merged: only the merge managers (leads) may merge incidents" in refusal["text"]
    assert merge_click(bot, "1:2", user="U0BOB").status_code == 200
    slack.wait_for(lambda emu: len(emu.ephemerals()) == 2)
    assert "INC-1 does not suggest merging into INC-2" in slack.ephemerals()[1]["text"]
    with unit_of_work(bot.runtime.factory) as session:
        assert sorted(i.status for i in session.execute(select(Incident)).scalars()) == ["open", "open"]
    assert merge_click(bot, "2:1", user="U0BOB").status_code == 200
    slack.wait_for(lambda emu: "Merged into INC-1" in card_json(emu, 1))
