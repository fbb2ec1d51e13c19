"""`/ops digest <name>` and a digest's "Propose fix" buttons. Thin: parse, ack, call the flow
(`bot.digests.flows`, `bot.digests.fix_flow`), tell the person (ephemeral) what happened."""

from __future__ import annotations

import logging
import re
import threading

from slack_bolt import Ack, App

from bot.digests.fix_flow import parse_value, propose_fix
from bot.digests.flows import BUILDERS, manual_slot
from bot.incidents.control_flows import Caller, IncidentControls
from bot.runtime import Runtime
from bot.slack import inbound
from bot.slack.render.digest import FIX_ACTION
from handlers.slack.ephemeral import tell
from handlers.slack.lifecycle import caller_of

log = logging.getLogger(__name__)
USAGE = f"Usage: `/ops digest {'|'.join(BUILDERS)}`: posts that digest here now."


def digest_command(runtime: Runtime, ack: Ack, command: dict, words: list[str]) -> None:
    """`/ops digest NAME`: built in the background (it can take a minute), posted in this channel
    once, under a manual slot (so it is recorded and its findings remembered like a scheduled one)."""
    name = words[0].lower() if len(words) == 1 else ""
    if name not in BUILDERS or runtime.digests is None:
        ack(response_type="ephemeral", text=USAGE)
        return
    channel, user = command.get("channel_id") or "", command.get("user_id") or ""
    caller = Caller(user, command.get("user_name") or user, channel, button=False)
    refusal = IncidentControls(runtime).refusal_text("digest", caller)
    if refusal:
        ack(response_type="ephemeral", text=f"Not posted: {refusal}.")
        return
    ack(response_type="ephemeral", text=f"Building the {BUILDERS[name][1].lower()} digest; it will be posted here.")

    def work() -> None:
        result = runtime.digests.run(name, channel, f"digest:{name}:{channel}"[:64], manual_slot(runtime.clock()))
        if result.outcome == "failed":
            tell(runtime, channel, user, f":warning: The {name} digest could not be posted: {result.error}")

    threading.Thread(target=work, name=f"opsbot-digest-{name}", daemon=True).start()


def register(app: App, runtime: Runtime) -> None:
    @app.action(re.compile(rf"^{FIX_ACTION}_\d+$"))
    def fix_clicked(ack: Ack, body: dict, action: dict) -> None:
        ack()
        caller = caller_of(body)
        parsed = parse_value(inbound.field(action, "value") or "")
        if parsed is None:
            tell(runtime, caller.channel, caller.user, ":no_entry: Not proposed: this button is not one of ours.")
            return
        reply = propose_fix(runtime, caller, *parsed)
        tell(runtime, caller.channel, caller.user, (":white_check_mark: " if reply.ok else ":no_entry: ") + reply.text)
