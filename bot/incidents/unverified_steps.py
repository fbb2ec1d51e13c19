"""Roll back or Accept a step that was applied but could not be verified: a person decides.

A step whose verification read no data at all (`execute.verdict_at_deadline`) ends `unverified`:
not rolled back, no next step. Its message in the thread carries two buttons whose values are
signed, expiring references (`tokens`, purposes `verify_rollback` / `verify_accept`, valid for
`execute.DECIDE_WINDOW`). A click locks the proposal row, so two clicks are decided one after the
other; then the policy runs again with the clicker as the actor (`CLICK_GATES`: which of its
gates apply to which button, as data). The approval gate's "already approved" and "self-
approval" rules are about approving a step, not about judging its result, so the request is
evaluated without the recorded approvals and without a requester.

- Accept: `unverified` → `accepted` (a person vouches for it); the runbook's next step follows
  as after a success.
- Roll back: `unverified` → `rollback_requested`; the executor claims it (`rolling_back`, a
  conditional UPDATE: once) and applies the undo with its intent recorded first, like a step.
  Refused when another step is in flight on the target, or when a later step ran on it (the
  undo would overwrite that change too), or when there is nothing to undo.

Every click, refused or not, is on the timeline (`remediation.verification_clicked`; a value that
does not verify is `click.refused` on the thread's incident); a refused one is answered to the
clicker alone. A Roll back is checked again by the executor just before it writes
(`execute.ROLLBACK_GATES`); a kill switch or freeze set since the click returns it here.
After `execute.DECIDE_WINDOW` with no decision the step ends `unverified_expired`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.db.engine import unit_of_work
from bot.db.locks import ROW_LOCK
from bot.db.models import Proposal
from bot.incidents import refused_clicks
from bot.incidents.proposal_clicks import Click, ClickResult
from bot.policy import engine
from bot.remediation import store, tokens
from bot.remediation.execute import ROLLBACK_GATES, gate_denial, propose_next, rollback_available
from bot.remediation.kit import RemediationKit
from bot.timeline import chain

ROLLBACK, ACCEPT = "verify_rollback", "verify_accept"
CLICK_GATES = {
    ROLLBACK: (*ROLLBACK_GATES, "actor_and_channel", "approval"),  # it writes to the cluster (checked again then)
    ACCEPT: ("actor_and_channel", "approval"),  # it writes nothing: only who may decide
}
REFUSED = {ROLLBACK: "Not rolled back", ACCEPT: "Not accepted"}
DONE = {ROLLBACK: "Rolling back: {title}.", ACCEPT: "Accepted without verification: {title}."}


def button_values(kit: RemediationKit, proposal: Proposal) -> dict[str, str | None]:
    """The signed values of the Roll back and Accept buttons while the step is unverified."""
    until = (proposal.result or {}).get("decide_until")
    if proposal.status != store.UNVERIFIED or not until:
        return {"rollback_value": None, "accept_value": None}
    expires = datetime.fromisoformat(until)
    _runbook, step = kit.step_of(proposal)
    return {"rollback_value": tokens.sign(kit.key, ROLLBACK, proposal.id, expires)
            if rollback_available(step, proposal.undo) else None,
            "accept_value": tokens.sign(kit.key, ACCEPT, proposal.id, expires)}


def _refusal(kit: RemediationKit, session: Session, proposal: Proposal, purpose: str, user: str,
             groups: frozenset[str], channel: str | None, now: datetime) -> tuple[str | None, engine.Decision | None]:
    if proposal.status != store.UNVERIFIED:
        return f"this step is {proposal.status.replace('_', ' ')}, no longer waiting for a decision", None
    if not channel:
        return "the click came from no channel", None
    denial, decision = gate_denial(kit, session, proposal, "click", now, CLICK_GATES[purpose], actor=user,
                                   actor_groups=groups, channel=channel)
    if denial is not None:
        return denial, decision
    if purpose == ROLLBACK:
        _runbook, step = kit.step_of(proposal)
        if not rollback_available(step, proposal.undo):
            return "this step has no rollback (nothing was captured to restore)", decision
        if store.running_on(session, proposal.target, excluding=proposal.id):
            return f"another step is in flight on {proposal.target}", decision
        if proposal.started_at and store.ran_on_since(session, proposal.target, proposal.started_at, proposal.id):
            return (f"a later step changed {proposal.target} since; rolling this one back would undo that too "
                    "(roll back by hand)"), decision
    return None, decision


def click(kit: RemediationKit, purpose: str, signed: Click) -> ClickResult:
    """Roll back (`ROLLBACK`) or Accept (`ACCEPT`) an unverified step, or say why not.

    A value that does not verify names nothing we trust (the proposal id in it may be anyone's):
    the refusal goes to the incident whose thread holds the clicked message, read from Slack's
    signed payload (`refused_clicks`), never to the one the value names."""
    now = kit.clock()
    user, channel = signed.user, signed.channel
    try:
        proposal_id = tokens.verify(kit.key, purpose, signed.value, now)
    except tokens.TokenError as exc:
        message = f"{REFUSED[purpose]}: {exc}."
        with unit_of_work(kit.factory) as session:
            incident_id = refused_clicks.record(session, None, user=user, action=purpose, reason=message,
                                                channel=channel, message_ts=signed.message_ts, now=now)
        return ClickResult(False, message, None, incident_id)
    groups = kit.groups.groups_of(user)  # before any lock: it may ask Slack and PagerDuty
    with unit_of_work(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id, with_for_update=ROW_LOCK)
        if proposal is None:
            return ClickResult(False, f"{REFUSED[purpose]}: this step does not exist.")
        refusal, decision = _refusal(kit, session, proposal, purpose, user, groups, channel, now)
        chain.append(session, proposal.incident_id, "remediation.verification_clicked", f"slack:{user}",
                     {"proposal": proposal.id, "action": purpose, "refused": refusal,
                      "decision": decision.as_dict() if decision else None}, now)
        if refusal is not None:
            return ClickResult(False, f"{REFUSED[purpose]}: {refusal}", proposal.id, proposal.incident_id)
        result = dict(proposal.result or {})
        if purpose == ACCEPT:
            store.transition(session, proposal.id, (store.UNVERIFIED,), "accepted", now, finished_at=now,
                             result={**result, "accepted_by": user})
            chain.append(session, proposal.incident_id, "remediation.accepted", f"slack:{user}",
                         {"proposal": proposal.id}, now)
        else:
            store.transition(session, proposal.id, (store.UNVERIFIED,), "rollback_requested", now,
                             result={**result, "rollback_requested_by": user})
            chain.append(session, proposal.incident_id, "remediation.rollback_requested", f"slack:{user}",
                         {"proposal": proposal.id}, now)
        done = ClickResult(True, DONE[purpose].format(title=proposal.title), proposal.id, proposal.incident_id)
    if purpose == ACCEPT:  # committed (objects stay loaded): the next step, as after a success
        propose_next(kit, proposal, "accepted")
    return done
