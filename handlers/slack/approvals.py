"""Approve / Reject / Why? on proposed steps. Thin: ack, call the flow, tell the clicker why not
(Why? shows the step's explanation, `/ops explain P-N`, to the clicker alone).

Reject opens a modal asking for an optional reason (the rejection happens when it is
submitted); without a trigger id the step is rejected at once, without a reason.
"""

from __future__ import annotations

import json
import logging

from slack_bolt import Ack, App

from bot.ask import explain
from bot.incidents import proposal_clicks as clicks
from bot.runtime import Runtime
from bot.slack import inbound
from bot.slack.gateway import SlackError
from bot.slack.render.explain import render_explanation
from bot.slack.render.proposal import APPROVE_ACTION_ID, REJECT_ACTION_ID, WHY_ACTION_ID
from bot.slack.render.text import plain
from handlers.slack.ephemeral import tell

log = logging.getLogger(__name__)
REJECT_VIEW = "step_reject_reason"


def click_of(body: dict, action: dict) -> clicks.Click:
    value = action.get("value")
    return clicks.Click(value if isinstance(value, str) else "", inbound.user_id(body), inbound.channel_id(body),
                        inbound.message_ts(body))


def reject_view(click: clicks.Click, title: str) -> dict:
    metadata = {"value": click.value, "channel": click.channel, "message_ts": click.message_ts}
    return {"type": "modal", "callback_id": REJECT_VIEW, "private_metadata": json.dumps(metadata),
            "title": {"type": "plain_text", "text": "Reject the step"},
            "submit": {"type": "plain_text", "text": "Reject"}, "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {"type": "section", "text": {"type": "plain_text", "text": plain(title, 2000)}},
                {"type": "input", "block_id": "reason", "optional": True,
                 "label": {"type": "plain_text", "text": "Why (optional)"},
                 "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                             "max_length": 1000}},
            ]}


def register(app: App, runtime: Runtime) -> None:
    kit = runtime.remediation

    @app.action(APPROVE_ACTION_ID)
    def approve_clicked(ack: Ack, body: dict, action: dict) -> None:
        ack()
        click = click_of(body, action)
        result = clicks.approve(kit, click)
        tell(runtime, click.channel, click.user, (":white_check_mark: " if result.ok else ":no_entry: ") + result.message)
        runtime.workers.wake_stages()

    @app.action(REJECT_ACTION_ID)
    def reject_clicked(ack: Ack, body: dict, action: dict) -> None:
        ack()
        click = click_of(body, action)
        checked = clicks.check_reject(kit, click)
        if not checked.ok:
            tell(runtime, click.channel, click.user, ":no_entry: " + checked.message)
            return
        trigger = body.get("trigger_id")
        if isinstance(trigger, str) and trigger:
            try:
                runtime.gateway.open_view(trigger, reject_view(click, "Reject this step? It will not run."))
                return
            except SlackError as exc:
                log.warning("reason dialog not opened (%s): rejecting without a reason", exc)
        result = clicks.reject(kit, click, "")
        tell(runtime, click.channel, click.user, (":no_entry_sign: " if result.ok else ":no_entry: ") + result.message)
        runtime.workers.wake_stages()

    @app.action(WHY_ACTION_ID)
    def why_clicked(ack: Ack, body: dict, action: dict) -> None:
        """`/ops explain P-N` for the clicker alone: reads, changes nothing."""
        ack()
        click = click_of(body, action)
        value = click.value if click.value.isdigit() and len(click.value) <= 18 else ""
        try:
            answer = render_explanation(explain.answer(kit, f"P-{value}", click.channel, None))
        except explain.NotAnswered as exc:
            tell(runtime, click.channel, click.user, f":no_entry: {exc}")
            return
        if click.channel:
            try:
                runtime.gateway.post_ephemeral(click.channel, click.user, answer["text"], answer["blocks"])
            except SlackError as exc:
                log.warning("the Why? answer was not shown: %s", exc)

    @app.view(REJECT_VIEW)
    def reason_submitted(ack: Ack, body: dict, view: dict) -> None:
        ack()
        try:
            metadata = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            metadata = {}
        metadata = metadata if isinstance(metadata, dict) else {}
        click = clicks.Click(inbound.field(metadata, "value") or "", inbound.user_id(body),
                             inbound.field(metadata, "channel"), inbound.field(metadata, "message_ts"))
        reason = inbound.field(view, "state", "values", "reason", "text", "value")
        result = clicks.reject(kit, click, reason or "")
        if not result.ok:
            log.info("rejection refused for %s: %s", click.user, result.message)
        runtime.workers.wake_stages()
