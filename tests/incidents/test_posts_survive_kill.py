"""A server killed while Slack holds the answer to a post it has already applied: after the
restart the thread has each message once, and the bot keeps updating the one that exists.

The attack from issue 12 (item 6), through the real parts: a real `python -m bot serve`
process on a migrated database, the Slack emulator in this test process, and the sandbox
cluster behind its API server. The emulator applies the `chat.postMessage`, then holds its
answer; the server is SIGKILLed during the hold and started again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from bot.db.models import Investigation
from bot.sandbox.scenario_alerts import webhook_body
from bot.sandbox.slack_emulator import SlackEmulator
from tests.conftest import SIGNING_SECRET, WEBHOOK_TOKEN
from tests.context.sandbox import served, shared
from tests.payloads import am_alert, am_body
from tests.server_process import ServerProcess, leases_run_out

HOLD_SECONDS = 120  # far longer than the test needs: the kill always lands inside the hold
RCA = "Root cause analysis"


@pytest.fixture
def serve(database_url, engine, slack, tmp_path) -> Iterator:  # engine: the database is migrated
    """serve(**env): a `ServerProcess` on this test's database and emulator, started."""
    stack = ExitStack()

    def start(**env: str) -> ServerProcess:
        settings = {
            "OPSBOT_DATABASE_URL": database_url, "OPSBOT_SLACK_API_URL": slack.base_url,
            "OPSBOT_SLACK_BOT_TOKEN": slack.bot_token, "OPSBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "OPSBOT_SLACK_CHANNEL": "#incidents", "OPSBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "OPSBOT_CARD_MIN_INTERVAL_SECONDS": "0", "OPSBOT_WORKER_POLL_SECONDS": "0.05",
            "OPSBOT_INTAKE_PROCESSES": "0", "OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_LOG_FORMAT": "text",
            **env,
        }
        process = ServerProcess(settings, tmp_path)
        stack.callback(process.stop)
        process.start()
        return process

    yield start
    stack.close()


def kill_during_the_held_answer(bot: ServerProcess, slack: SlackEmulator, engine, match) -> dict:
    """Hold the answer to the next post that `match`es, SIGKILL the bot while it waits for it,
    restart it; returns the message Slack applied."""
    held = slack.delay_answer("chat.postMessage", HOLD_SECONDS, match=match)
    applied = held.wait_applied(timeout=60).response["message"]
    bot.kill()
    held.release()
    leases_run_out(engine)
    bot.start()
    return applied


def roots(slack: SlackEmulator) -> list[dict]:
    return slack.messages()


def test_a_kill_while_the_root_card_is_answered_leaves_one_card_which_is_updated(serve, slack, engine):
    bot = serve()

    def is_root(args):
        return "thread_ts" not in args

    bot.post_alerts(am_body([am_alert(namespace="shop", pod="web-1")], group_key="g"))
    orphan_candidate = kill_during_the_held_answer(bot, slack, engine, is_root)

    bot.post_alerts(am_body([am_alert(namespace="shop", pod="web-1"), am_alert(namespace="shop", pod="web-2")],
                            group_key="g"))
    slack.wait_for(lambda emu: "2 firing" in str(roots(emu)[-1].get("blocks")), timeout=60)
    (card,) = roots(slack)
    assert card["ts"] == orphan_candidate["ts"], "the card posted before the kill is the one kept"
    updates = slack.calls_to("chat.update")
    assert updates and {call.args["ts"] for call in updates} == {card["ts"]}
    assert len([c for c in slack.calls_to("chat.postMessage") if is_root(c.args)]) == 1


def test_a_kill_while_the_rca_is_answered_leaves_one_rca(serve, slack, engine):
    scenario = shared("orders-api-revision-22-panics-on-start")
    with served(scenario) as kube:
        bot = serve(OPSBOT_KUBE_MODE="url", OPSBOT_KUBE_API_URL=kube)

        def is_rca(args):
            return "thread_ts" in args and RCA in str(args.get("blocks"))

        bot.post_alerts(webhook_body(scenario))
        posted = kill_during_the_held_answer(bot, slack, engine, is_rca)

        (card,) = slack.wait_for(lambda emu: roots(emu), timeout=30)

        def rca_posted_again_or_adopted(emu) -> bool:
            with engine.connect() as connection:
                return connection.execute(Investigation.__table__.select()).first().post_ts is not None

        slack.wait_for(rca_posted_again_or_adopted, timeout=60)
        rcas = [m for m in slack.thread(card["channel"], card["ts"]) if RCA in str(m.get("blocks"))]
        assert [m["ts"] for m in rcas] == [posted["ts"]], "one RCA message: the one posted before the kill"
        with engine.connect() as connection:
            assert connection.execute(Investigation.__table__.select()).first().post_ts == posted["ts"]


def test_a_kill_while_a_proposal_is_answered_leaves_one_message_with_buttons(serve, slack, engine):
    """The proposal's message adopted after the restart is the one kept up to date: no orphan
    whose Approve button outlives the step."""
    scenario = shared("orders-api-revision-22-panics-on-start")
    with served(scenario) as kube:
        bot = serve(OPSBOT_KUBE_MODE="url", OPSBOT_KUBE_API_URL=kube)

        def is_proposal(args):
            return "thread_ts" in args and "step_approve" in str(args.get("blocks"))

        bot.post_alerts(webhook_body(scenario))
        posted = kill_during_the_held_answer(bot, slack, engine, is_proposal)

        (card,) = slack.wait_for(lambda emu: roots(emu), timeout=30)
        slack.wait_for(lambda emu: any(c.args["ts"] == posted["ts"] for c in emu.calls_to("chat.update")), timeout=60)
        proposals = [m for m in slack.thread(card["channel"], card["ts"]) if "step_approve" in str(m.get("blocks"))]
        assert [m["ts"] for m in proposals] == [posted["ts"]], "one proposal message: the one posted before the kill"
        assert len([c for c in slack.calls_to("chat.postMessage") if is_proposal(c.args)]) == 1


def test_a_kill_while_a_thread_note_is_answered_announces_each_new_alert_once(serve, slack, engine):
    bot = serve()
    pods = ["web-1", "web-2", "web-3"]

    def alerts(count: int) -> bytes:
        return am_body([am_alert(namespace="shop", pod=pod) for pod in pods[:count]], group_key="g")

    def notes(emu) -> list[dict]:
        (card,) = roots(emu)
        return [m for m in emu.thread(card["channel"], card["ts"]) if "new firing" in m["text"]]

    bot.post_alerts(alerts(1))
    slack.wait_for(lambda emu: roots(emu), timeout=30)
    bot.post_alerts(alerts(2))
    held = kill_during_the_held_answer(bot, slack, engine, lambda args: "new firing" in str(args.get("text")))

    bot.post_alerts(alerts(3))
    slack.wait_for(lambda emu: any("now 3 firing" in m["text"] for m in notes(emu)), timeout=60)
    announced = [int(m["text"].split(":heavy_plus_sign: ")[1].split(" ")[0]) for m in notes(slack)]
    assert sum(announced) == 2, f"two alerts joined, each announced once: {[m['text'] for m in notes(slack)]}"
    assert notes(slack)[0]["ts"] == held["ts"]
