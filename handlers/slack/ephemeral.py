"""Telling the clicker (and only them) what their click did or why not: an ephemeral message."""

from __future__ import annotations

import logging

from bot.runtime import Runtime
from bot.slack.gateway import SlackError
from bot.slack.render.text import untrusted

log = logging.getLogger(__name__)


def tell(runtime: Runtime, channel: str | None, user: str, text: str) -> None:
    """Nothing without a channel (there is nowhere to show it); a Slack error is logged, not raised:
    the click was already decided and recorded."""
    if not channel:
        return
    try:
        runtime.gateway.post_ephemeral(channel, user, untrusted(text, 1000))
    except SlackError as error:
        log.warning("could not tell %s about their click: %s", user, error)
