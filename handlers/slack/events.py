"""Events API listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime
from bot.slack.render.status import render_help


def register(app: App, runtime: Runtime) -> None:
    @app.event("app_mention")
    def mentioned(event: dict) -> None:
        reply = render_help()
        runtime.gateway.post_message(event["channel"], reply["text"], reply["blocks"],
                                     thread_ts=event.get("thread_ts") or event.get("ts"))
