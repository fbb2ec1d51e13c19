"""Roll back / Accept on a step that could not be verified. Thin: ack, read who clicked what where
from the signed payload (`bot.slack.inbound`), call the flow, answer the clicker (ephemeral)
with what happened or why not; the flow writes the timeline."""

from __future__ import annotations

from slack_bolt import Ack, App

from bot.incidents import unverified_steps as unverified
from bot.incidents.proposal_clicks import Click
from bot.runtime import Runtime
from bot.slack import inbound
from bot.slack.render.proposal import VERIFY_ACCEPT_ACTION_ID, VERIFY_ROLLBACK_ACTION_ID
from handlers.slack.ephemeral import tell

BUTTONS = {VERIFY_ROLLBACK_ACTION_ID: unverified.ROLLBACK, VERIFY_ACCEPT_ACTION_ID: unverified.ACCEPT}


def register(app: App, runtime: Runtime) -> None:
    kit = runtime.remediation

    def decided(ack: Ack, body: dict, action: dict) -> None:
        ack()
        click = Click(inbound.field(action, "value") or "", inbound.user_id(body), inbound.channel_id(body),
                      inbound.message_ts(body))
        result = unverified.click(kit, BUTTONS[action.get("action_id")], click)
        tell(runtime, click.channel, click.user, (":white_check_mark: " if result.ok else ":no_entry: ") + result.message)
        runtime.workers.wake_stages()

    for action_id in BUTTONS:
        app.action(action_id)(decided)
