"""Approve and Reject: what a click does, re-checked at click time.

A click carries a signed, expiring proposal reference (`tokens`). The proposal row is locked
for the whole decision, so two clicks (a double click, a replayed payload, two people at once)
are decided one after the other against what the first one did. The policy runs again with the
clicker as the actor: group membership, self-approval, an approval already given, a freeze or
kill switch that came on since the proposal — any of them refuses the click with a reason the
clicker sees (ephemeral) and the timeline records. Enough approvals move the proposal to
`approved`; the executor (`execute`) runs it, checking the policy once more just before.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.db.engine import reading, unit_of_work
from bot.db.locks import ROW_LOCK
from bot.db.models import Proposal
from bot.remediation import store, tokens
from bot.remediation.kit import RemediationKit
from bot.timeline import chain

APPROVE, REJECT = "approve", "reject"


@dataclass(frozen=True)
class ClickResult:
    ok: bool
    message: str  # shown to the clicker (ephemeral) when not ok, or as a confirmation
    proposal_id: int | None = None
    incident_id: int | None = None


def _refused(message: str, proposal: Proposal | None = None) -> ClickResult:
    return ClickResult(False, message, proposal.id if proposal else None, proposal.incident_id if proposal else None)


def approve(kit: RemediationKit, value: str, user: str, channel: str | None) -> ClickResult:
    now = kit.clock()
    try:
        proposal_id = tokens.verify(kit.key, APPROVE, value, now)
    except tokens.TokenError as exc:
        return _refused(f"Not approved: {exc}.")
    groups = kit.groups.groups_of(user)  # before any lock: it may ask Slack and PagerDuty
    with unit_of_work(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id, with_for_update=ROW_LOCK)
        if proposal is None:
            return _refused("Not approved: this step does not exist.")
        if proposal.status != "proposed":
            return _refused(f"Not approved: this step is already {proposal.status.replace('_', ' ')}.", proposal)
        if now > proposal.expires_at:
            store.transition(session, proposal.id, ("proposed",), "expired", now)
            chain.append(session, proposal.incident_id, "remediation.expired", f"slack:{user}",
                         {"proposal": proposal.id}, now)
            return _refused("Not approved: this request expired.", proposal)
        decision = kit.decide(session, proposal, "click", now, actor=user, actor_groups=groups, channel=channel)
        chain.append(session, proposal.incident_id, "remediation.clicked", f"slack:{user}",
                     {"proposal": proposal.id, "action": APPROVE, "decision": decision.as_dict()}, now)
        if decision.decision == "deny":
            return _refused(f"Not approved: {decision.reason}. {decision.hint}".strip(), proposal)
        store.add_approval(session, proposal.id, user, now)
        given = len(store.approvals(session, proposal.id))
        needed = max(1, decision.approvals_needed)
        if given >= needed:
            store.transition(session, proposal.id, ("proposed",), "approved", now)
            chain.append(session, proposal.incident_id, "remediation.approved", f"slack:{user}",
                         {"proposal": proposal.id, "approvals": given}, now)
            return ClickResult(True, f"Approved: {proposal.title}. It runs now.", proposal.id, proposal.incident_id)
        proposal.message_version += 1
        return ClickResult(True, f"Approval recorded ({given} of {needed}).", proposal.id, proposal.incident_id)


def check_reject(kit: RemediationKit, value: str, user: str) -> ClickResult:
    """Whether `user` may reject (before asking them for a reason)."""
    now = kit.clock()
    try:
        proposal_id = tokens.verify(kit.key, REJECT, value, now)
    except tokens.TokenError as exc:
        return _refused(f"Not rejected: {exc}.")
    with reading(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id)
        if proposal is None or proposal.status != "proposed":
            return _refused(f"Not rejected: this step is already {proposal.status if proposal else 'gone'}.",
                            proposal)
        _runbook, step = kit.step_of(proposal)
        requester, incident_id = proposal.requested_by, proposal.incident_id
    allowed = set(step.approval.groups) if step else set()
    if user != requester and not (allowed & kit.groups.groups_of(user)):  # no transaction open: may ask Slack
        return ClickResult(False, f"Not rejected: only {', '.join(sorted(allowed)) or 'the approvers'} or the "
                           "requester may reject this step.", proposal_id, incident_id)
    return ClickResult(True, "", proposal_id, incident_id)


def reject(kit: RemediationKit, value: str, user: str, reason: str) -> ClickResult:
    checked = check_reject(kit, value, user)
    if not checked.ok:
        return checked
    now = kit.clock()
    with unit_of_work(kit.factory) as session:
        if not store.transition(session, checked.proposal_id, ("proposed",), "rejected", now, rejected_by=user,
                                reject_reason=reason[:1000] or None):
            return _refused("Not rejected: this step already moved on.")
        chain.append(session, checked.incident_id, "remediation.rejected", f"slack:{user}",
                     {"proposal": checked.proposal_id, "reason": reason[:1000]}, now)
    return ClickResult(True, "Rejected.", checked.proposal_id, checked.incident_id)
