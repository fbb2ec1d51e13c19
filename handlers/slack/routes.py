"""Slack's HTTP endpoints, all served by Bolt (which verifies every signature)."""

from __future__ import annotations

from flask import Blueprint, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler

PATHS = ("/slack/events", "/slack/interactions", "/slack/commands")


def slack_blueprint(bolt_app: App) -> Blueprint:
    blueprint = Blueprint("slack", __name__)
    handler = SlackRequestHandler(bolt_app)

    def endpoint():
        return handler.handle(request)

    for path in PATHS:
        blueprint.add_url_rule(path, endpoint=path.strip("/").replace("/", "_"), view_func=endpoint,
                               methods=["POST"])
    return blueprint
