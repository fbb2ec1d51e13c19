"""Every exit redacts, whatever its caller did (issue 12, item 1): the Slack gateway (text,
blocks, ephemerals, views, uploaded files) through the real `slack_sdk` client and the Slack
emulator, and the investigation row (result and error) in the real database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Investigation
from bot.incidents import investigations
from bot.redaction import MASK
from bot.slack.gateway import SlackGateway, make_web_client
from tests.concurrency import eventually
from tests.payloads import am_alert, am_body

SECRET = "hunter2-Exit-4471"
LEAK = f'login failed for user "svc" with password "{SECRET}"'
PNG = b"\x89PNG\r\n\x1a\n" + b"password=" + SECRET.encode()  # binary: sent as it is


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_the_slack_gateway_redacts_everything_it_sends(slack):
    gateway = SlackGateway(make_web_client(slack.bot_token, slack.base_url))
    button = {"type": "actions", "block_id": "b1", "elements": [
        {"type": "button", "action_id": "approve", "value": "approve:7:1767225600:0f3c9a", "url": None,
         "text": {"type": "plain_text", "text": f"password={SECRET}"}}]}
    button["elements"][0].pop("url")
    root = gateway.post_message("#incidents", LEAK, [section(LEAK), button])
    gateway.update_message(root.channel, root.ts, f"Authorization: Token {SECRET}", [section(f"token={SECRET}")])
    gateway.post_message(root.channel, f'{{\\"db_password\\":\\"{SECRET}\\"}}', thread_ts=root.ts)
    gateway.post_ephemeral(root.channel, "U0ALICE", LEAK, [section(LEAK)])
    gateway.upload_files(root.channel, root.ts, [("evidence.txt", LEAK.encode(), f"logs {LEAK}"),
                                                 ("graph.png", PNG, "graph")])
    gateway.open_view(slack.new_trigger_id(), {"type": "modal", "callback_id": "explain", "private_metadata": "7",
                                               "title": {"type": "plain_text", "text": "Explain"},
                                               "blocks": [section(LEAK)]})

    sent = str([call.args for call in slack.calls]) + str(slack.views)
    text_files = [f for f in slack.files if not f["filename"].endswith(".png")]
    assert SECRET not in sent and all(SECRET.encode() not in f["bytes"] for f in text_files)
    assert len(text_files) == 1 and MASK.encode() in text_files[0]["bytes"]
    assert next(f for f in slack.files if f["filename"].endswith(".png"))["bytes"] == PNG, "images are not altered"
    first = slack.calls_to("chat.postMessage")[0].args
    assert first["blocks"][1]["elements"][0]["value"] == "approve:7:1767225600:0f3c9a", "identifiers kept"
    (message,) = slack.messages()
    assert MASK in message["text"] and MASK in str(message["history"])
    assert slack.views[0]["callback_id"] == "explain" and slack.views[0]["private_metadata"] == "7"


def test_the_investigation_row_never_stores_a_secret(bot):
    """Whatever a caller hands `investigations.fail` / `finish` (an exception's message, a
    result) is stored redacted."""
    bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="web-1")], group_key="g"))
    row_id = eventually(lambda: _finished_investigation(bot))
    bot.runtime.workers.stop()
    now = bot.runtime.clock()

    def leased_to(owner):
        session.execute(Investigation.__table__.update().values(status="running", lease_owner=owner))

    with unit_of_work(bot.runtime.factory) as session:
        leased_to("a")
        investigations.fail(session, row_id, "a", f"ApiException: (500) {LEAK}", now, timedelta(0))
    with unit_of_work(bot.runtime.factory) as session:
        error = session.get(Investigation, row_id).error
        assert SECRET not in error and MASK in error
        leased_to("b")
        assert investigations.finish(session, row_id, "b", {"subject": LEAK, "gaps": [{"why": LEAK}]}, now)
    with unit_of_work(bot.runtime.factory) as session:
        result = session.get(Investigation, row_id).result
        assert SECRET not in str(result) and MASK in result["subject"] and MASK in result["gaps"][0]["why"]


def _finished_investigation(bot) -> int | None:
    with unit_of_work(bot.runtime.factory) as session:
        row = session.execute(select(Investigation)).scalar_one_or_none()
        return row.id if row is not None and row.finished_at is not None else None
