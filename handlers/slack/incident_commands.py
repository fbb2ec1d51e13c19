"""`/ops ack|resolve|reopen|severity|commander|update|catchup|followup|declare`: parse the words,
call the flow (`bot.incidents.control_flows`), answer the person ephemerally. A malformed
command gets one line of usage and changes nothing.

Slack does not say in which thread a slash command was typed, so every command names its
incident (`INC-12` or `12`); the card's buttons act on their own incident. Mentions arrive as
`<@U123|name>` (the manifest asks Slack to escape them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.incidents.control_flows import Caller, IncidentControls, Reply
from bot.incidents.controls import SEVERITIES, Person

_REFERENCE = re.compile(r"(?i)(?:inc-)?(\d{1,18})")
_FOLLOW_UP = re.compile(r"(?i)(?:f-)?(\d{1,18})")
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|([^>]{0,80}))?>")

USAGE = {
    "ack": "`/ops ack INC-N`",
    "resolve": "`/ops resolve INC-N [what fixed it]`",
    "reopen": "`/ops reopen INC-N`",
    "severity": f"`/ops severity INC-N {'|'.join(SEVERITIES)}`",
    "commander": "`/ops commander INC-N [@person]` (yourself when no one is named)",
    "update": "`/ops update INC-N <what changed>` (Slack does not tell which thread a command was typed in; "
              "the card's Post update button needs no number)",
    "catchup": "`/ops catchup INC-N`",
    "followup": "`/ops followup INC-N <what to do> [@owner]` or `/ops followup done F-N`",
    "declare": "`/ops declare <title> [critical|high|warning|info]` (no title: a form opens)",
}
SUBCOMMANDS = frozenset(USAGE)


@dataclass(frozen=True)
class Usage:
    """A malformed command: the line to answer."""

    text: str


def _usage(subcommand: str, problem: str) -> Usage:
    return Usage(f"{problem}. Usage: {USAGE[subcommand]}")


def incident_of(word: str | None) -> int | None:
    match = _REFERENCE.fullmatch(word or "")
    return int(match.group(1)) if match else None


def mentioned(word: str) -> Person | None:
    match = _MENTION.fullmatch(word)
    return Person(match.group(1), match.group(2) or match.group(1)) if match else None


def plan(subcommand: str, words: list[str], caller: Caller,
         controls: IncidentControls) -> Callable[[], Reply] | Usage:
    """What to run for `/ops <subcommand> <words…>`, or the usage line. Pure apart from binding."""
    if subcommand == "declare":
        title_words = list(words)
        severity = ""
        if title_words and title_words[-1].lower() in SEVERITIES:
            severity = title_words.pop().lower()
        if not title_words:
            return _usage("declare", "A declared incident needs a title")
        return lambda: controls.declare(caller, " ".join(title_words), severity)
    if subcommand == "followup" and words[:1] and words[0].lower() == "done":
        match = _FOLLOW_UP.fullmatch(words[1]) if len(words) == 2 else None
        if not match:
            return _usage("followup", "Name the follow-up to close")
        return lambda: controls.close_followup(caller, int(match.group(1)))
    incident_id = incident_of(words[0] if words else None)
    if incident_id is None:
        return _usage(subcommand, "Name the incident" if not words else f"`{words[0][:40]}` is not an incident")
    rest = words[1:]
    if subcommand in ("ack", "reopen", "catchup") and rest:
        return _usage(subcommand, "Too many words")
    if subcommand == "ack":
        return lambda: controls.acknowledge(caller, incident_id)
    if subcommand == "reopen":
        return lambda: controls.reopen(caller, incident_id)
    if subcommand == "catchup":
        return lambda: controls.catchup(caller, incident_id)
    if subcommand == "resolve":
        return lambda: controls.resolve(caller, incident_id, " ".join(rest))
    if subcommand == "severity":
        if len(rest) != 1 or rest[0].lower() not in SEVERITIES:
            return _usage("severity", "Name one severity")
        return lambda: controls.severity(caller, incident_id, rest[0].lower())
    if subcommand == "commander":
        if len(rest) > 1:
            return _usage("commander", "Name one person")
        commander = mentioned(rest[0]) if rest else None
        if rest and commander is None:
            return _usage("commander", f"`{rest[0][:40]}` is not a mention of a person")
        return lambda: controls.command(caller, incident_id, commander)
    if subcommand == "update":
        if not rest:
            return _usage("update", "An update needs some text")
        return lambda: controls.update(caller, incident_id, " ".join(rest))
    # followup INC-N <text> [@owner]
    owner = mentioned(rest[-1]) if rest else None
    text_words = rest[:-1] if owner else rest
    if not text_words:
        return _usage("followup", "A follow-up needs a text")
    return lambda: controls.followup(caller, incident_id, " ".join(text_words), owner.user if owner else None)
