"""A person's click on a button of a bot message, as Slack delivers it to the bot.

`block_actions` builds the interactivity payload Slack posts when someone clicks a button in a
message (type `block_actions`, the clicker, the channel, the message as shown, one action with
the button's `action_id` and `value`); `click` signs it with the app's signing secret
(`slack_signing.interaction`) and posts it to the bot's `/slack/interactions`, exactly the
request the bot receives from Slack in production. Nothing here reaches into the bot: what the
click does is decided by the bot's own handlers and policy.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from bot.sandbox import slack_signing

INTERACTIONS_PATH = "/slack/interactions"


class NoSuchButton(LookupError):
    """The message shows no button with that action id (already decided, or never offered)."""


def find_button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    """The button with `action_id` in the message's actions blocks, with its block's `block_id`
    (Slack reports both); NoSuchButton otherwise."""
    for block in message.get("blocks") or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return {"block_id": block.get("block_id", "actions"), **element}
    raise NoSuchButton(f"no {action_id} button on message {message.get('ts')}")


def block_actions(message: dict[str, Any], button: dict[str, Any], user: str, *, user_name: str | None = None,
                  team_id: str = slack_signing.DEFAULT_TEAM_ID, channel_name: str = "incidents") -> dict[str, Any]:
    """The payload of one click on `button` in `message` (as the emulator stores it) by `user`."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user_name or user.lower(), "team_id": team_id},
        "api_app_id": slack_signing.DEFAULT_APP_ID,
        "team": {"id": team_id, "domain": slack_signing.DEFAULT_TEAM_DOMAIN},
        "channel": {"id": message["channel"], "name": channel_name},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                      "is_ephemeral": False},
        "message": {key: message[key] for key in ("type", "ts", "text", "blocks") if key in message},
        "trigger_id": slack_signing.new_trigger_id(),
        "response_url": "http://127.0.0.1:9/response-url-unused",
        "actions": [{"type": "button", "action_id": button["action_id"], "block_id": button.get("block_id", "actions"),
                     "value": button.get("value", ""), "action_ts": f"{time.time():.6f}"}],
    }


def click(bot_url: str, signing_secret: str, message: dict[str, Any], action_id: str, user: str,
          *, user_name: str | None = None, timeout_seconds: float = 10) -> requests.Response:
    """Click the `action_id` button of `message` as `user`: a signed POST to the bot's
    interactivity endpoint. Raises NoSuchButton when the message has no such button."""
    payload = block_actions(message, find_button(message, action_id), user, user_name=user_name)
    body, headers = slack_signing.interaction(signing_secret, payload)
    return requests.post(bot_url.rstrip("/") + INTERACTIONS_PATH, data=body, headers=headers,
                         timeout=timeout_seconds)
