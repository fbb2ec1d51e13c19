"""The card's incident controls: Acknowledge, Resolve (a modal for the note), Reopen, Take
command, Post update (a modal) and the severity menu; the Declare form; and the "Add
follow-up" message shortcut on any message of an incident's thread. Thin: ack, read who
clicked what where from the signed payload, call the flow (`bot.incidents.control_flows`), tell
the clicker (ephemeral) what happened or why not."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App

from bot.db.engine import reading
from bot.db.models import Incident
from bot.incidents import service
from bot.incidents.acknowledge import ActionRefused, parse_incident_value
from bot.incidents.control_flows import Caller, IncidentControls, Reply
from bot.runtime import Runtime
from bot.slack import inbound
from bot.slack.gateway import SlackError
from bot.slack.render import modals
from bot.slack.render.card import (
    ACK_ACTION_ID,
    COMMAND_ACTION_ID,
    REOPEN_ACTION_ID,
    RESOLVE_ACTION_ID,
    SEVERITY_ACTION_ID,
    UPDATE_ACTION_ID,
)
from handlers.slack.ephemeral import tell

log = logging.getLogger(__name__)


def caller_of(body: dict, channel: str | None = None) -> Caller:
    user = inbound.user_id(body)
    name = inbound.field(body, "user", "name") or inbound.field(body, "user", "username") or user or "someone"
    return Caller(user, name, channel if channel is not None else inbound.channel_id(body), button=True,
                  message_ts=inbound.message_ts(body))


def _answer(runtime: Runtime, caller: Caller, reply: Reply) -> None:
    """Only a refusal, or a partial success, is said to the clicker: what a control did shows on
    the card and in the thread for everyone."""
    if not reply.ok:
        tell(runtime, caller.channel, caller.user, ":no_entry: " + reply.text)
    elif reply.text.endswith(")") and "Not posted" in reply.text:
        tell(runtime, caller.channel, caller.user, ":warning: " + reply.text)


def register(app: App, runtime: Runtime) -> None:
    controls = IncidentControls(runtime)

    def incident_or_refuse(caller: Caller, action: dict, control: str) -> int | None:
        try:
            return parse_incident_value(inbound.field(action, "value") or "")
        except ActionRefused as exc:
            _answer(runtime, caller, controls.refuse_malformed(control, caller, str(exc)))
            return None

    def simple(control: str, run):
        def clicked(ack: Ack, body: dict, action: dict) -> None:
            ack()
            caller = caller_of(body)
            incident_id = incident_or_refuse(caller, action, control)
            if incident_id is not None:
                _answer(runtime, caller, run(caller, incident_id))
        return clicked

    app.action(ACK_ACTION_ID)(simple("acknowledge", controls.acknowledge))
    app.action(REOPEN_ACTION_ID)(simple("reopen", controls.reopen))
    app.action(COMMAND_ACTION_ID)(simple("commander", controls.command))

    def with_modal(control: str, modal, run_without):
        """Open the modal (the control happens when it is submitted); without a trigger id or
        when Slack refuses the modal, act at once without the optional text, or say why not."""
        def clicked(ack: Ack, body: dict, action: dict) -> None:
            ack()
            caller = caller_of(body)
            incident_id = incident_or_refuse(caller, action, control)
            if incident_id is None:
                return
            refusal = controls.refusal_reply(control, caller, incident_id)
            if refusal is not None:
                _answer(runtime, caller, refusal)
                return
            with reading(runtime.factory) as session:
                incident = session.get(Incident, incident_id)
                heading = f"{incident.reference} · {incident.title}" if incident else f"INC-{incident_id}"
            trigger = body.get("trigger_id")
            if isinstance(trigger, str) and trigger:
                try:
                    runtime.gateway.open_view(trigger, modal(incident_id, heading, caller.channel))
                    return
                except SlackError as exc:
                    log.warning("%s form not opened: %s", control, exc)
            _answer(runtime, caller, run_without(caller, incident_id))
        return clicked

    app.action(RESOLVE_ACTION_ID)(with_modal("resolve", modals.resolve_modal,
                                             lambda caller, incident_id: controls.resolve(caller, incident_id)))
    app.action(UPDATE_ACTION_ID)(with_modal(
        "update", modals.update_modal,
        lambda caller, incident_id: Reply(False, "The update form did not open: use `/ops update "
                                                 f"INC-{incident_id} <text>`.")))

    @app.action(SEVERITY_ACTION_ID)
    def severity_chosen(ack: Ack, body: dict, action: dict) -> None:
        ack()
        caller = caller_of(body)
        value = inbound.field(action, "selected_option", "value") or ""
        incident_text, _, severity = value.partition(":")
        try:
            incident_id = parse_incident_value(incident_text)
        except ActionRefused as exc:
            _answer(runtime, caller, controls.refuse_malformed("severity", caller, str(exc)))
            return
        _answer(runtime, caller, controls.severity(caller, incident_id, severity))

    def submitted(run):
        def on_submit(ack: Ack, body: dict, view: dict) -> None:
            ack()
            incident_id, channel = modals.read_metadata(view)
            caller = caller_of(body, channel)
            _answer(runtime, caller, run(caller, incident_id, view))
        return on_submit

    def typed(view: dict, block: str, action: str = "text", key: str = "value") -> str:
        return inbound.field(view, "state", "values", block, action, key) or ""

    def resolve_submitted(caller: Caller, incident_id: int | None, view: dict) -> Reply:
        if incident_id is None:
            return controls.refuse_malformed("resolve", caller, "this form is malformed: nothing was changed")
        return controls.resolve(caller, incident_id, typed(view, "note"))

    def update_submitted(caller: Caller, incident_id: int | None, view: dict) -> Reply:
        if incident_id is None:
            return controls.refuse_malformed("update", caller, "this form is malformed: nothing was changed")
        return controls.update(caller, incident_id, typed(view, "update"))

    def declare_submitted(caller: Caller, _incident_id: int | None, view: dict) -> Reply:
        severity = inbound.field(view, "state", "values", "severity", "choice", "selected_option", "value") or ""
        return controls.declare(caller, typed(view, "title"), severity)

    def followup_submitted(caller: Caller, incident_id: int | None, view: dict) -> Reply:
        if incident_id is None:
            return controls.refuse_malformed("followup", caller, "this form is malformed: nothing was changed")
        owner = inbound.field(view, "state", "values", "owner", "user", "selected_user")
        return controls.followup(caller, incident_id, typed(view, "followup"), owner)

    @app.shortcut(modals.FOLLOWUP_SHORTCUT)
    def followup_from_message(ack: Ack, body: dict) -> None:
        """A message in an incident's thread becomes a follow-up (the form starts from its text)."""
        ack()
        caller = caller_of(body)
        thread = inbound.field(body, "message", "thread_ts") or inbound.field(body, "message", "ts")
        with reading(runtime.factory) as session:
            incident_id = service.incident_of_message(session, caller.channel, thread)
            incident = session.get(Incident, incident_id) if incident_id is not None else None
            heading = f"{incident.reference} · {incident.title}" if incident else ""
        if incident_id is None:
            tell(runtime, caller.channel, caller.user, ":no_entry: This message is not in an incident's thread: "
                 "use `/ops followup INC-N <text> [@owner]`.")
            return
        refusal = controls.refusal_reply("followup", caller, incident_id)
        if refusal is not None:
            _answer(runtime, caller, refusal)
            return
        try:
            runtime.gateway.open_view(body.get("trigger_id") or "", modals.followup_modal(
                incident_id, heading, caller.channel, inbound.field(body, "message", "text") or ""))
        except SlackError as exc:
            tell(runtime, caller.channel, caller.user, f":no_entry: The form did not open ({exc.error}): use "
                 f"`/ops followup INC-{incident_id} <text> [@owner]`.")

    app.view(modals.FOLLOWUP_VIEW)(submitted(followup_submitted))
    app.view(modals.RESOLVE_VIEW)(submitted(resolve_submitted))
    app.view(modals.UPDATE_VIEW)(submitted(update_submitted))
    app.view(modals.DECLARE_VIEW)(submitted(declare_submitted))
