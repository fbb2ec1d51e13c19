"""What a person does in the web view, delivered to the bot exactly as Slack delivers it.

`BotLink` holds the bot's base URL and the app's signing secret. Each method builds the payload
Slack would send for one human act (a click on a button or a menu, a modal submitted or closed,
a slash command, a message that mentions the bot), signs it with `bot.sandbox.slack_signing`
and posts it to the bot's `/slack/interactions`, `/slack/commands` or `/slack/events`.

Invariants:
- Every request carries a fresh `trigger_id` (slash commands, clicks, submissions) or `event_id`
  (events), as Slack's do; the bot treats a repeated one as a replay. The caller learns the
  trigger id, so a modal the bot opens with it is shown to the person who acted.
- Nothing here decides anything for the bot: the answer is the bot's HTTP response, returned
  as it came (status, and the JSON body when there is one).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests

from bot.sandbox import slack_signing

REQUEST_TIMEOUT_SECONDS = 10
INTERACTIONS, COMMANDS, EVENTS = "/slack/interactions", "/slack/commands", "/slack/events"
RESPONSE_URL_UNUSED = "http://127.0.0.1:9/response-url-unused"


@dataclass(frozen=True)
class BotAnswer:
    """The bot's HTTP answer: status, and its JSON body (None when empty or not JSON)."""

    status: int
    body: dict[str, Any] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


@dataclass(frozen=True)
class Actor:
    """Who acts, where: the Slack user and the channel (id and name)."""

    user_id: str
    user_name: str
    channel_id: str
    channel_name: str


def _element_action(element: dict[str, Any], block_id: str, choice: str | None) -> dict[str, Any]:
    """The `actions[0]` Slack reports for a click on a button or a choice in a static_select."""
    action: dict[str, Any] = {"type": element.get("type", "button"), "action_id": element.get("action_id", ""),
                              "block_id": block_id, "action_ts": f"{time.time():.6f}"}
    if element.get("type") == "static_select":
        option = next((o for o in _options(element) if o.get("value") == choice), None)
        if option is None:
            raise LookupError(f"no option {choice!r} in the menu {element.get('action_id')}")
        action["selected_option"] = option
        action["placeholder"] = element.get("placeholder")
    else:
        action["text"] = element.get("text")
        action["value"] = element.get("value", "")
    return {k: v for k, v in action.items() if v is not None}


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def block_id_of(block: dict[str, Any]) -> str:
    """The block's `block_id`, or the one Slack reports for a block sent without one (its type)."""
    return str(block.get("block_id") or block.get("type") or "")


def find_element(blocks: list[dict[str, Any]], block_id: str, action_id: str) -> dict[str, Any]:
    """The interactive element `action_id` of block `block_id` (an actions block's element or a
    section's accessory); LookupError when the message shows none."""
    for block in blocks or []:
        if block_id_of(block) != block_id:
            continue
        elements = block.get("elements") if block.get("type") == "actions" else [block.get("accessory")]
        for element in elements or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element
    raise LookupError(f"no element {action_id!r} in block {block_id!r}")


class BotLink:
    """Signed requests to one bot."""

    def __init__(self, bot_url: str, signing_secret: str, *, team_id: str = slack_signing.DEFAULT_TEAM_ID,
                 team_domain: str = slack_signing.DEFAULT_TEAM_DOMAIN, app_id: str = slack_signing.DEFAULT_APP_ID,
                 bot_user_id: str = slack_signing.DEFAULT_BOT_USER_ID) -> None:
        self.bot_url = bot_url.rstrip("/")
        self._secret = signing_secret
        self.team_id, self.team_domain, self.app_id, self.bot_user_id = team_id, team_domain, app_id, bot_user_id

    def _user(self, actor: Actor) -> dict[str, Any]:
        return {"id": actor.user_id, "username": actor.user_name, "name": actor.user_name, "team_id": self.team_id}

    def _team(self) -> dict[str, Any]:
        return {"id": self.team_id, "domain": self.team_domain}

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> BotAnswer:
        try:
            response = requests.post(self.bot_url + path, data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            return BotAnswer(0, None, f"the bot did not answer: {exc.__class__.__name__}")
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        return BotAnswer(response.status_code, parsed if isinstance(parsed, dict) else None,
                         None if response.ok else f"the bot answered HTTP {response.status_code}")

    def click(self, actor: Actor, message: dict[str, Any], block_id: str, action_id: str, *,
              choice: str | None = None, ephemeral: bool = False) -> tuple[str, BotAnswer]:
        """A click on an element of `message` (as the emulator stores it); returns (trigger id, answer).
        LookupError when the message shows no such element."""
        element = find_element(message.get("blocks") or [], block_id, action_id)
        trigger = slack_signing.new_trigger_id()
        payload = {
            "type": "block_actions", "user": self._user(actor), "api_app_id": self.app_id, "token": "unused",
            "team": self._team(), "channel": {"id": actor.channel_id, "name": actor.channel_name},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": actor.channel_id,
                          "is_ephemeral": ephemeral},
            "message": {k: message[k] for k in ("type", "ts", "text", "blocks", "user", "bot_id", "thread_ts")
                        if k in message},
            "trigger_id": trigger, "response_url": RESPONSE_URL_UNUSED,
            "state": {"values": {}},
            "actions": [_element_action(element, block_id, choice)],
        }
        body, headers = slack_signing.interaction(self._secret, payload)
        return trigger, self._post(INTERACTIONS, body, headers)

    def submit_view(self, actor: Actor, view: dict[str, Any], values: dict[str, dict[str, Any]]) -> BotAnswer:
        """A modal submitted with `values` ({block_id: {action_id: state}}), as Slack reports them."""
        submitted = {**view, "state": {"values": values}}
        payload = {"type": "view_submission", "team": self._team(), "user": self._user(actor),
                   "api_app_id": self.app_id, "token": "unused", "trigger_id": slack_signing.new_trigger_id(),
                   "view": submitted, "response_urls": [], "is_enterprise_install": False}
        body, headers = slack_signing.interaction(self._secret, payload)
        return self._post(INTERACTIONS, body, headers)

    def close_view(self, actor: Actor, view: dict[str, Any]) -> BotAnswer | None:
        """Cancel on a modal: Slack tells the app only when the view asked (`notify_on_close`)."""
        if not view.get("notify_on_close"):
            return None
        payload = {"type": "view_closed", "team": self._team(), "user": self._user(actor),
                   "api_app_id": self.app_id, "token": "unused", "view": view, "is_cleared": False}
        body, headers = slack_signing.interaction(self._secret, payload)
        return self._post(INTERACTIONS, body, headers)

    def slash_command(self, actor: Actor, command: str, text: str, response_url: str) -> tuple[str, BotAnswer]:
        """`/ops …` typed in the channel; returns (trigger id, answer). The answer's body is what
        Slack shows the typist alone (or the channel, with `response_type: in_channel`)."""
        trigger = slack_signing.new_trigger_id()
        body, headers = slack_signing.slash_command(
            self._secret, command, text, actor.user_id, actor.channel_id, self.team_id, response_url=response_url,
            trigger_id=trigger, user_name=actor.user_name, channel_name=actor.channel_name,
            team_domain=self.team_domain, api_app_id=self.app_id)
        return trigger, self._post(COMMANDS, body, headers)

    def mention(self, actor: Actor, text: str, ts: str, thread_ts: str | None) -> BotAnswer:
        """The `app_mention` event for a message that names the bot (the only event the app subscribes to)."""
        event: dict[str, Any] = {"type": "app_mention", "user": actor.user_id, "text": text, "ts": ts,
                                 "channel": actor.channel_id, "event_ts": ts, "team": self.team_id}
        if thread_ts:
            event["thread_ts"] = thread_ts
        body, headers = slack_signing.event_callback(self._secret, event, team_id=self.team_id,
                                                     api_app_id=self.app_id, bot_user_id=self.bot_user_id)
        return self._post(EVENTS, body, headers)


def values_for_view(view: dict[str, Any], form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`view.state.values` from what was typed or chosen, keyed `block_id/action_id` in `form`:
    each input element reported with its type, as Slack does (`value`, `selected_option`,
    `selected_user`). Unknown keys are ignored; a missing optional input is reported empty."""
    values: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block.get("element") or {}
        block_id, action_id = block.get("block_id", ""), element.get("action_id", "")
        raw = form.get(f"{block_id}/{action_id}")
        kind = element.get("type")
        state: dict[str, Any] = {"type": kind}
        if kind == "static_select":
            option = next((o for o in _options(element) if o.get("value") == raw), None)
            state["selected_option"] = option
        elif kind == "users_select":
            state["selected_user"] = raw or None
        else:
            state["value"] = raw if isinstance(raw, str) and raw != "" else None
        values.setdefault(block_id, {})[action_id] = state
    return values


def view_errors(answer: BotAnswer) -> dict[str, str]:
    """`response_action: errors` in the bot's answer to a submission ({block_id: message})."""
    body = answer.body or {}
    errors = body.get("errors") if body.get("response_action") == "errors" else None
    return {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}


def response_payload(raw: bytes) -> dict[str, Any] | None:
    """A message posted to a `response_url` (JSON object), or None."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None
