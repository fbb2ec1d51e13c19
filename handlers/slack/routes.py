"""Slack's HTTP endpoints: checked (signature, shape, replay) by `bot.slack.inbound`, then served
by Bolt, which verifies the signature once more and runs the listeners."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler

from bot.db import seen
from bot.db.engine import unit_of_work
from bot.runtime import Runtime
from bot.slack import inbound

PATHS = (inbound.EVENTS, inbound.INTERACTIONS, inbound.COMMANDS)


def slack_blueprint(bolt_app: App, runtime: Runtime) -> Blueprint:
    blueprint = Blueprint("slack", __name__)
    handler = SlackRequestHandler(bolt_app)
    refusals = inbound.RefusalLog()

    def refuse(refusal: inbound.Refusal) -> tuple[Response, int]:
        refusals.refused(request.path, refusal, request.remote_addr)
        return jsonify(error=refusal.error), refusal.status

    def endpoint():
        body = request.get_data(cache=True)  # kept for Bolt, which reads it again
        refusal = inbound.signature_refusal(runtime.signing_secret, request.headers, body, time.time())
        if refusal:
            return refuse(refusal)
        checked = inbound.shape(request.path, body)
        if isinstance(checked, inbound.Refusal):
            return refuse(checked)
        if checked.replay_key:
            source, request_id = checked.replay_key
            now = runtime.clock()
            with unit_of_work(runtime.factory, urgent=True) as session:
                first = seen.first_time(session, source, request_id, now, inbound.REPLAY_KEEP)
            if not first:
                return Response(status=200)  # already acted on: Slack stops re-sending, nothing runs twice
        return handler.handle(request)

    for path in PATHS:
        blueprint.add_url_rule(path, endpoint=path.strip("/").replace("/", "_"), view_func=endpoint,
                               methods=["POST"])
    return blueprint
