"""Slack's HTTP endpoints: checked (signature, shape, replay) by `bot.slack.inbound`, then served
by Bolt, which verifies the signature once more and runs the listeners."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler

from bot.db import seen
from bot.db.engine import unit_of_work
from bot.incidents import refused_clicks
from bot.runtime import Runtime
from bot.slack import inbound

PATHS = (inbound.EVENTS, inbound.INTERACTIONS, inbound.COMMANDS)
OUTCOMES = {401: "unsigned", 400: "malformed"}


def slack_blueprint(bolt_app: App, runtime: Runtime) -> Blueprint:
    blueprint = Blueprint("slack", __name__)
    handler = SlackRequestHandler(bolt_app)
    refusals = inbound.RefusalLog()

    def count(outcome: str) -> None:
        runtime.metrics.slack_requests.labels(endpoint=request.path, outcome=outcome).inc()

    def refuse(refusal: inbound.Refusal) -> tuple[Response, int]:
        refusals.refused(request.path, refusal, request.remote_addr)
        count(OUTCOMES.get(refusal.status, str(refusal.status)))
        return jsonify(error=refusal.error), refusal.status

    def first_time(checked: inbound.Checked) -> bool:
        """Records the request id; a replayed click is recorded on its thread's timeline."""
        source, request_id = checked.replay_key
        now = runtime.clock()
        with unit_of_work(runtime.factory, urgent=True) as session:
            if seen.first_time(session, source, request_id, now, inbound.REPLAY_KEEP):
                return True
            if checked.payload is not None:
                action = inbound.field(checked.payload, "actions", "0", "action_id")
                refused_clicks.record(session, None, user=inbound.user_id(checked.payload),
                                      action=action or str(checked.payload.get("type")),
                                      reason="a replay of a click already received (the same signed request "
                                             "again): ignored",
                                      channel=inbound.channel_id(checked.payload),
                                      message_ts=inbound.message_ts(checked.payload), now=now)
            return False

    def endpoint():
        body = request.get_data(cache=True)  # kept for Bolt, which reads it again
        refusal = inbound.signature_refusal(runtime.signing_secret, request.headers, body, time.time())
        if refusal:
            return refuse(refusal)
        checked = inbound.shape(request.path, body)
        if isinstance(checked, inbound.Refusal):
            return refuse(checked)
        if checked.replay_key and not first_time(checked):
            count("duplicate")
            return Response(status=200)  # already acted on: Slack stops re-sending, nothing runs twice
        count("accepted")
        return handler.handle(request)

    for path in PATHS:
        blueprint.add_url_rule(path, endpoint=path.strip("/").replace("/", "_"), view_func=endpoint,
                               methods=["POST"])
    return blueprint
