"""`/ops` slash command. Acks first; anything that reads the database runs after the ack."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App

from bot.db.engine import unit_of_work
from bot.incidents import service
from bot.remediation import commands as remediation_commands
from bot.runtime import Runtime
from bot.slack.gateway import SlackError
from bot.slack.render.card import card_view
from bot.slack.render.status import STATUS_LIMIT, render_help, render_status, render_unknown_subcommand
from bot.slack.render.text import untrusted

log = logging.getLogger(__name__)
REMEDIATION = {"freeze": remediation_commands.freeze, "unfreeze": remediation_commands.unfreeze,
               "run": remediation_commands.run}


def register(app: App, runtime: Runtime) -> None:
    @app.command("/ops")
    def ops(ack: Ack, command: dict) -> None:
        words = (command.get("text") or "").split()
        subcommand = words[0].lower() if words else "help"
        if subcommand == "help":
            ack(response_type="ephemeral", **render_help())
            return
        if subcommand in REMEDIATION:
            ack()
            reply = REMEDIATION[subcommand](runtime.remediation, command.get("user_id", ""), words[1:])
            try:
                runtime.gateway.post_ephemeral(command["channel_id"], command["user_id"], untrusted(reply, 2000))
            except SlackError as exc:
                log.warning("/ops %s reply failed: %s", subcommand, exc)
            runtime.workers.wake_stages()
            return
        if subcommand != "status":
            ack(response_type="ephemeral", text=render_unknown_subcommand(subcommand))
            return
        ack()
        with unit_of_work(runtime.factory) as session:
            views = [card_view(incident) for incident in service.open_incidents(session, STATUS_LIMIT)]
            total = service.count_open_incidents(session)
        reply = render_status(views, total)
        try:
            runtime.gateway.post_ephemeral(command["channel_id"], command["user_id"], reply["text"], reply["blocks"])
        except SlackError as exc:
            log.warning("/ops status reply failed: %s", exc)
