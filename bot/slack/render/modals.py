"""The incident controls' modals (Resolve with a note, Post update, Declare). Pure: what the
modal asks and the `private_metadata` it carries back (the incident id and the channel the
button was clicked in, so the submission is checked against the same channel policy)."""

from __future__ import annotations

import json
from typing import Any

from bot.slack.render.card import SEVERITY_CHOICES
from bot.slack.render.text import plain

RESOLVE_VIEW = "incident_resolve_note"
UPDATE_VIEW = "incident_update_text"
DECLARE_VIEW = "incident_declare"
FOLLOWUP_VIEW = "incident_followup"
FOLLOWUP_SHORTCUT = "incident_followup_from_message"  # the message shortcut (deploy/slack-app-manifest.yaml)


def _metadata(incident_id: int | None, channel: str | None) -> str:
    return json.dumps({"incident": incident_id, "channel": channel})


def _text_input(block_id: str, label: str, optional: bool, max_length: int, multiline: bool = True) -> dict[str, Any]:
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": label},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": multiline,
                        "max_length": max_length}}


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "modal", "callback_id": callback_id, "private_metadata": metadata,
            "title": {"type": "plain_text", "text": title}, "submit": {"type": "plain_text", "text": submit},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def resolve_modal(incident_id: int, reference_title: str, channel: str | None) -> dict[str, Any]:
    return _modal(RESOLVE_VIEW, "Resolve the incident", "Resolve", _metadata(incident_id, channel), [
        {"type": "section", "text": {"type": "plain_text", "text": plain(reference_title, 2000)}},
        _text_input("note", "What fixed it (optional, goes into the postmortem)", True, 2000)])


def update_modal(incident_id: int, reference_title: str, channel: str | None) -> dict[str, Any]:
    return _modal(UPDATE_VIEW, "Post a status update", "Post", _metadata(incident_id, channel), [
        {"type": "section", "text": {"type": "plain_text", "text": plain(reference_title, 2000)}},
        _text_input("update", "What changed, what is next", False, 2000)])


def declare_modal(channel: str | None) -> dict[str, Any]:
    options = [{"text": {"type": "plain_text", "text": grade.title()}, "value": grade} for grade in SEVERITY_CHOICES]
    severity = {"type": "input", "block_id": "severity", "optional": True,
                "label": {"type": "plain_text", "text": "Severity"},
                "element": {"type": "static_select", "action_id": "choice", "options": options,
                            "initial_option": options[2]}}
    return _modal(DECLARE_VIEW, "Declare an incident", "Declare", _metadata(None, channel), [
        _text_input("title", "Title", False, 300, multiline=False), severity])


def followup_modal(incident_id: int, reference_title: str, channel: str | None, text: str) -> dict[str, Any]:
    """A follow-up from a message in the thread: its text to start from, an optional owner."""
    item = _text_input("followup", "What to do", False, 2000)
    if text.strip():
        item["element"]["initial_value"] = plain(text, 2000)
    owner = {"type": "input", "block_id": "owner", "optional": True, "label": {"type": "plain_text", "text": "Owner"},
             "element": {"type": "users_select", "action_id": "user"}}
    return _modal(FOLLOWUP_VIEW, "Add a follow-up", "Add", _metadata(incident_id, channel), [
        {"type": "section", "text": {"type": "plain_text", "text": plain(reference_title, 2000)}}, item, owner])


def read_metadata(view: dict[str, Any]) -> tuple[int | None, str | None]:
    """(incident id, channel) from a submitted modal; (None, None) when it is not ours."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    incident = data.get("incident")
    channel = data.get("channel")
    return (incident if isinstance(incident, int) and not isinstance(incident, bool) else None,
            channel if isinstance(channel, str) else None)
