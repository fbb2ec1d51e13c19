"""The Bolt app (sync, HTTP mode or Socket Mode).

Sync Bolt with `process_before_response=False`: a listener calls `ack()` first, Bolt answers
Slack at once and runs the rest of the listener on its thread pool, so no ack ever waits on
the database, Kubernetes, Prometheus or a model. The WSGI server is threaded (waitress).
"""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime
from handlers.slack import actions, approvals, commands, digests, events, lifecycle, verification


def build_bolt_app(runtime: Runtime) -> App:
    app = App(
        client=runtime.web_client,
        signing_secret=runtime.signing_secret,
        process_before_response=False,
        token_verification_enabled=runtime.settings.uses_real_slack,
        request_verification_enabled=True,
    )
    commands.register(app, runtime)
    actions.register(app, runtime)
    lifecycle.register(app, runtime)
    approvals.register(app, runtime)
    events.register(app, runtime)
    verification.register(app, runtime)
    digests.register(app, runtime)
    return app
