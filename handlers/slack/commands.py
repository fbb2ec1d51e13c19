"""`/ops` slash command. Acks first; anything that reads the database runs after the ack."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App

from bot.ask import explain, risk
from bot.db.engine import unit_of_work
from bot.incidents import remediation_commands, service
from bot.incidents.card import card_view
from bot.incidents.control_flows import Caller, IncidentControls
from bot.incidents.weekly import weekly_numbers
from bot.runtime import Runtime
from bot.slack.gateway import SlackError
from bot.slack.render.explain import render_explanation
from bot.slack.render.modals import declare_modal
from bot.slack.render.risk import render_risk
from bot.slack.render.status import STATUS_LIMIT, render_help, render_status, render_unknown_subcommand
from bot.slack.render.text import untrusted
from bot.slack.render.weekly import render_week
from handlers.slack import digests, incident_commands

log = logging.getLogger(__name__)
REMEDIATION = {"freeze": remediation_commands.freeze, "unfreeze": remediation_commands.unfreeze,
               "run": remediation_commands.run}


def register(app: App, runtime: Runtime) -> None:
    controls = IncidentControls(runtime)

    def reply(command: dict, text: str, blocks: list | None = None) -> None:
        try:
            runtime.gateway.post_ephemeral(command["channel_id"], command["user_id"], untrusted(text, 2000)
                                           if blocks is None else text, blocks)
        except SlackError as exc:
            log.warning("/ops reply failed: %s", exc)

    @app.command("/ops")
    def ops(ack: Ack, command: dict) -> None:
        words = (command.get("text") or "").split()
        subcommand = words[0].lower() if words else "help"
        if subcommand == "help":
            ack(response_type="ephemeral", **render_help())
            return
        if subcommand == "explain":
            ack()
            try:
                answer = render_explanation(explain.answer(runtime.remediation, " ".join(words[1:]),
                                                           command.get("channel_id"), command.get("channel_name")))
            except explain.NotAnswered as exc:
                reply(command, str(exc))
                return
            reply(command, answer["text"], answer["blocks"])
            return
        if subcommand == "risk":
            try:
                workload = risk.parse_workload(words[1] if len(words) == 2 else "")
            except risk.RiskInputError as exc:
                ack(response_type="ephemeral", text=f"Usage: `/ops risk deploy/NAMESPACE/NAME`: {exc}")
                return
            refusal = controls.refusal_text("risk", Caller(command.get("user_id", ""), "", command.get("channel_id"),
                                                          button=True))
            if refusal:  # it lists the workload's incidents: only where incidents may be shown
                ack(response_type="ephemeral", text=untrusted(f"Not answered: {refusal}.", 500))
                return
            ack()
            verdict = risk.assess(runtime.factory, workload, risk.inputs_of(runtime), runtime.clock(),
                                  f"slack:{command.get('user_id', '')}")
            rendered = render_risk(verdict)
            reply(command, rendered["text"], rendered["blocks"])
            return
        if subcommand == "digest":
            digests.digest_command(runtime, ack, command, words[1:])
            return
        if subcommand in REMEDIATION:
            ack()
            reply(command, REMEDIATION[subcommand](runtime.remediation, command.get("user_id", ""), words[1:]))
            runtime.workers.wake_stages()
            return
        if subcommand in incident_commands.SUBCOMMANDS:
            caller = Caller(command.get("user_id", ""), command.get("user_name") or command.get("user_id", ""),
                            command.get("channel_id"), button=False)
            if subcommand == "declare" and len(words) == 1 and command.get("trigger_id"):
                ack()
                try:
                    runtime.gateway.open_view(command["trigger_id"], declare_modal(caller.channel))
                except SlackError as exc:
                    reply(command, f"The form did not open ({exc.error}). Usage: "
                                   f"{incident_commands.USAGE['declare']}")
                return
            planned = incident_commands.plan(subcommand, words[1:], caller, controls)
            if isinstance(planned, incident_commands.Usage):
                ack(response_type="ephemeral", text=planned.text)
                return
            ack()
            result = planned()
            reply(command, result.text if result.blocks else (":white_check_mark: " if result.ok else ":no_entry: ")
                  + result.text, result.blocks)
            return
        if subcommand != "status":
            ack(response_type="ephemeral", text=render_unknown_subcommand(subcommand))
            return
        ack()
        with unit_of_work(runtime.factory) as session:
            views = [card_view(incident) for incident in service.open_incidents(session, STATUS_LIMIT)]
            total = service.count_open_incidents(session)
            week = weekly_numbers(session, runtime.clock())[-1]
        status = render_status(views, total)
        reply(command, status["text"], status["blocks"] + render_week(week))
