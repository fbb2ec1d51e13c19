"""`/ops freeze`, `/ops unfreeze` and `/ops run`: the flows behind the slash commands.

freeze / unfreeze flip a kill switch at once (global, or one namespace) for the policy's
freeze managers; every later decision sees it, including the execution check of steps already
approved but not yet running. run lets a person ask for a runbook step on an incident; it is
planned, dry-run and decided like the bot's own proposals, and the person who asked is its
requester (who, by default, may not approve it).
"""

from __future__ import annotations

import re

from sqlalchemy import select

from bot.context.subject import valid_name
from bot.db.engine import unit_of_work
from bot.db.models import Alert, Incident
from bot.incidents import investigations
from bot.policy import roles
from bot.remediation import catalog, propose, store
from bot.remediation.kit import RemediationKit
from bot.timeline import chain

_REFERENCE = re.compile(r"(?i)inc-(\d{1,18})")
_ASSIGNMENT = re.compile(r"([a-z_][a-z0-9_]*)=(\S+)")


def _scope(words: list[str]) -> tuple[str, str]:
    """(scope, reason) from `[namespace|all] [reason...]`."""
    if not words or words[0] in ("all", "*", "global"):
        return "global", " ".join(words[1:])
    if valid_name(words[0]) and len(words[0]) <= 63:
        return f"namespace:{words[0]}", " ".join(words[1:])
    return "global", " ".join(words)


def freeze(kit: RemediationKit, user: str, words: list[str]) -> str:
    refusal = roles.freeze_refusal(kit.policy, kit.groups.groups_of(user))
    if refusal:
        return f":no_entry: Not frozen: {refusal}."
    scope, reason = _scope(words)
    now = kit.clock()
    with unit_of_work(kit.factory) as session:
        if not store.set_kill_switch(session, scope, reason, user, now):
            return f"The kill switch for {scope} was already on."
        for incident_id in session.execute(select(Incident.id).where(Incident.is_open.is_(True))).scalars():
            if store.unfinished_of_incident(session, incident_id):
                chain.append(session, incident_id, "remediation.kill_switch_on", f"slack:{user}",
                             {"scope": scope, "reason": reason}, now)
    return (f":octagonal_sign: Kill switch on for {scope}" + (f" ({reason})" if reason else "") +
            ". No step runs there until /ops unfreeze; approved steps stop before running.")


def unfreeze(kit: RemediationKit, user: str, words: list[str]) -> str:
    refusal = roles.freeze_refusal(kit.policy, kit.groups.groups_of(user))
    if refusal:
        return f":no_entry: Not unfrozen: {refusal}."
    scope, _ = _scope(words[:1])
    with unit_of_work(kit.factory) as session:
        if not store.clear_kill_switch(session, scope):
            active = ", ".join(sorted(store.kill_switches(session))) or "none"
            return f"No kill switch for {scope} (active: {active})."
    return f":white_check_mark: Kill switch for {scope} lifted."


def run(kit: RemediationKit, user: str, words: list[str]) -> str:
    """`/ops run INC-12 RUNBOOK key=value ...`"""
    usage = "Usage: /ops run INC-12 RUNBOOK [param=value ...]"
    if len(words) < 2 or not _REFERENCE.fullmatch(words[0]):
        return usage
    incident_id = int(_REFERENCE.fullmatch(words[0]).group(1))
    runbook = kit.catalog.get(words[1])
    if runbook is None:
        return f"No runbook {words[1]!r}. Runbooks: {', '.join(sorted(kit.catalog.runbooks))}."
    given: dict[str, str] = {}
    for word in words[2:]:
        match = _ASSIGNMENT.fullmatch(word)
        if not match:
            return f"{word!r} is not param=value. {usage}"
        given[match.group(1)] = match.group(2)
    with unit_of_work(kit.factory) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return f"No incident INC-{incident_id}."
        latest = investigations.latest_for(session, incident_id)
        top = ((latest.result or {}).get("hypotheses") or [{}])[0] if latest and latest.result else {}
        labels = next(iter(session.execute(select(Alert.labels).where(Alert.incident_id == incident_id)
                                           .limit(1)).scalars()), {}) or {}
        cluster = incident.cluster
    values, problems = catalog.resolve_params(runbook, top.get("facts") or {}, labels, given)
    if problems:
        return "Not proposed: " + "; ".join(problems)
    outcome = propose.propose(kit, incident_id, runbook, values, requested_by=user, cluster=cluster,
                              labels=dict(labels))
    if outcome.status == "denied":
        return f"Proposed in the thread of INC-{incident_id}, but denied: " + "; ".join(outcome.problems or
                                                                                     ["see the policy decision"])
    return f"Proposed in the thread of INC-{incident_id}; someone else in the approver group approves it."
