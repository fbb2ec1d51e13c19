"""The Merge button on incident cards. Ack first; the work runs after the ack. A refused
click is answered ephemerally and recorded on the timeline (`bot.incidents.refused_clicks`)."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App

from bot.db.engine import unit_of_work
from bot.incidents import refused_clicks
from bot.incidents.merge import MergeRefused, merge, parse_merge_value
from bot.policy import roles
from bot.runtime import Runtime
from bot.slack import inbound
from bot.slack.gateway import SlackError
from bot.slack.render.card import MERGE_ACTION_ID
from bot.slack.render.text import untrusted

log = logging.getLogger(__name__)


def _refuse(runtime: Runtime, body: dict, action: str, incident_id: int | None, reason: str) -> None:
    user, channel = inbound.user_id(body), inbound.channel_id(body)
    with unit_of_work(runtime.factory) as session:
        refused_clicks.record(session, incident_id, user=user, action=action, reason=reason, channel=channel,
                              message_ts=inbound.message_ts(body), now=runtime.clock())
    if not channel:
        return
    try:
        runtime.gateway.post_ephemeral(channel, user, f":no_entry: {untrusted(reason, 500)}")
    except SlackError as error:
        log.warning("could not tell %s why the click was refused: %s", user, error)


def _value(action: dict) -> str:
    value = action.get("value")
    return value if isinstance(value, str) else ""


def register(app: App, runtime: Runtime) -> None:
    @app.action(MERGE_ACTION_ID)
    def merge_clicked(ack: Ack, body: dict, action: dict) -> None:
        ack()
        user, channel = inbound.user_id(body) or "unknown", inbound.channel_id(body)
        source = None
        try:
            source, target = parse_merge_value(_value(action))
            kit = runtime.remediation
            refusal = (roles.merge_refusal(kit.policy, user, kit.groups.groups_of(user), channel) if kit
                       else "no policy is loaded")
            if refusal:
                raise MergeRefused(f"Not merged: {refusal}.")
            with unit_of_work(runtime.factory) as session:
                result = merge(session, source, target, f"slack:{user}", runtime.clock(), as_suggested=True)
        except MergeRefused as exc:
            _refuse(runtime, body, "merge", source, str(exc))
            return
        log.info("INC-%s merged into INC-%s by %s", result.source_id, result.target_id, user)
        runtime.workers.wake_stages()
