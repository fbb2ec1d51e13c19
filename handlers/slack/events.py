"""Events API listeners: mentions of the bot.

A mention in an incident thread (its root is the incident's card) is a question, answered in
that thread from the incident's evidence (`bot.ask.answers`); a mention anywhere else gets the
help message, in a thread under it. Messages from bots, the bot itself included, are ignored,
so two bots can never answer each other in a loop. Bolt acks the event before the listener
runs (`process_before_response=False`); Slack's retries of one event never reach it twice
(`bot.slack.inbound` drops a repeated `event_id`).
"""

from __future__ import annotations

from slack_bolt import App

from bot.ask.answers import ThreadQuestions
from bot.runtime import Runtime
from bot.slack.render.status import render_help


def from_a_bot(event: dict, body: dict, bot_user_id: str | None) -> bool:
    """True for a message written by a bot: any app (`bot_id`, `bot_message`) or this bot's user."""
    ours = {bot_user_id} | {a.get("user_id") for a in body.get("authorizations") or [] if a.get("is_bot")}
    return bool(event.get("bot_id") or event.get("subtype") == "bot_message"
                or event.get("bot_profile") or event.get("user") in ours - {None})


def register(app: App, runtime: Runtime) -> None:
    kit = runtime.remediation
    def prometheus_of(cluster: str | None) -> str | None:
        access = kit.clusters.resolve(cluster) if kit is not None else None
        return access.prometheus_url if access is not None else runtime.settings.prometheus_url

    questions = ThreadQuestions(runtime.factory, runtime.gateway, runtime.clock,
                                lambda: kit.policy if kit is not None else None, prometheus_of)

    @app.event("app_mention")
    def mentioned(event: dict, body: dict, context) -> None:
        if from_a_bot(event, body, context.bot_user_id) or not event.get("channel"):
            return
        channel, thread_ts = event["channel"], event.get("thread_ts")
        incident_id = questions.incident_of_thread(channel, thread_ts) if thread_ts else None
        if incident_id is not None:
            questions.answer(incident_id, channel, thread_ts, str(event.get("text") or ""), str(event.get("user")))
            return
        reply = render_help()
        runtime.gateway.post_message(channel, reply["text"], reply["blocks"], thread_ts=thread_ts or event.get("ts"))
