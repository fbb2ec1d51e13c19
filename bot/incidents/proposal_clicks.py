"""Approve and Reject: what a click does, re-checked at click time.

A click carries a signed, expiring proposal reference (`tokens`). The proposal row is locked
for the whole decision, so two clicks (a double click, a replayed payload, two people at once)
are decided one after the other against what the first one did. The policy runs again with the
clicker as the actor: group membership, self-approval, an approval already given, a freeze or
kill switch that came on since the proposal, a channel that is not allowed (or no channel) —
any of them refuses the click with a reason the clicker sees (ephemeral). Enough approvals move
the proposal to `approved`; the executor (`execute`) runs it, checking the policy once more just
before.

Every click is on the timeline, refused or not (issue 12, item 12): a click the policy decided
is `remediation.clicked` with the decision; any other refusal (a value that is not ours or was
altered, an expired request, a step already approved or finished, a clicker who may not reject)
is `click.refused` with the reason (`bot.incidents.refused_clicks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.db.engine import reading, unit_of_work
from bot.db.locks import ROW_LOCK
from bot.db.models import Proposal
from bot.incidents import refused_clicks
from bot.policy import roles
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


@dataclass(frozen=True)
class Click:
    """Who clicked what, where: Slack's signed payload, read by the handler."""

    value: str
    user: str
    channel: str | None = None
    message_ts: str | None = None


def _record_refusal(session: Session, click: Click, action: str, message: str, now: datetime,
                    proposal: Proposal | None = None) -> ClickResult:
    incident_id = refused_clicks.record(session, proposal.incident_id if proposal else None, user=click.user,
                                        action=action, reason=message, channel=click.channel,
                                        message_ts=click.message_ts, now=now,
                                        proposal=proposal.id if proposal else None)
    return ClickResult(False, message, proposal.id if proposal else None, incident_id)


def _refused(kit: RemediationKit, click: Click, action: str, message: str, proposal_id: int | None = None) -> ClickResult:
    """`_record_refusal` in a transaction of its own (for refusals decided outside one)."""
    with unit_of_work(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id) if proposal_id is not None else None
        return _record_refusal(session, click, action, message, kit.clock(), proposal)


def approve(kit: RemediationKit, click: Click) -> ClickResult:
    now = kit.clock()
    try:
        proposal_id = tokens.verify(kit.key, APPROVE, click.value, now)
    except tokens.TokenError as exc:
        return _refused(kit, click, APPROVE, f"Not approved: {exc}.")
    user = click.user
    groups = kit.groups.groups_of(user)  # before any lock: it may ask Slack and PagerDuty
    with unit_of_work(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id, with_for_update=ROW_LOCK)
        if proposal is None:
            return _record_refusal(session, click, APPROVE, "Not approved: this step does not exist.", now)
        if proposal.status != "proposed":
            return _record_refusal(session, click, APPROVE, f"Not approved: this step is already "
                                   f"{proposal.status.replace('_', ' ')}.", now, proposal)
        if now > proposal.expires_at:
            store.transition(session, proposal.id, ("proposed",), "expired", now)
            chain.append(session, proposal.incident_id, "remediation.expired", f"slack:{user}",
                         {"proposal": proposal.id}, now)
            return _record_refusal(session, click, APPROVE, "Not approved: this request expired.", now, proposal)
        decision = kit.decide(session, proposal, "click", now, actor=user, actor_groups=groups, channel=click.channel)
        chain.append(session, proposal.incident_id, "remediation.clicked", f"slack:{user}",
                     {"proposal": proposal.id, "action": APPROVE, "decision": decision.as_dict(),
                      "channel": click.channel}, now)
        if decision.decision == "deny":
            return ClickResult(False, f"Not approved: {decision.reason}. {decision.hint}".strip(), proposal.id,
                               proposal.incident_id)
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


def check_reject(kit: RemediationKit, click: Click) -> ClickResult:
    """Whether the clicker may reject (before asking them for a reason); refusals are recorded."""
    now = kit.clock()
    try:
        proposal_id = tokens.verify(kit.key, REJECT, click.value, now)
    except tokens.TokenError as exc:
        return _refused(kit, click, REJECT, f"Not rejected: {exc}.")
    with reading(kit.factory) as session:
        proposal = session.get(Proposal, proposal_id)
        status = proposal.status if proposal else None
        _runbook, step = kit.step_of(proposal) if proposal else (None, None)
        requester, incident_id = (proposal.requested_by, proposal.incident_id) if proposal else (None, None)
    if status != "proposed":
        return _refused(kit, click, REJECT, f"Not rejected: this step is already "
                        f"{status.replace('_', ' ') if status else 'gone'}.", proposal_id if status else None)
    wrong_channel = roles.channel_refusal(kit.policy, click.channel)
    if wrong_channel:
        return _refused(kit, click, REJECT, f"Not rejected: {wrong_channel}.", proposal_id)
    allowed = set(step.approval.groups) if step else set()
    if click.user != requester and not (allowed & kit.groups.groups_of(click.user)):  # no transaction open
        return _refused(kit, click, REJECT, f"Not rejected: only {', '.join(sorted(allowed)) or 'the approvers'} "
                        "or the requester may reject this step.", proposal_id)
    return ClickResult(True, "", proposal_id, incident_id)


def reject(kit: RemediationKit, click: Click, reason: str) -> ClickResult:
    checked = check_reject(kit, click)
    if not checked.ok:
        return checked
    now = kit.clock()
    with unit_of_work(kit.factory) as session:
        if not store.transition(session, checked.proposal_id, ("proposed",), "rejected", now, rejected_by=click.user,
                                reject_reason=reason[:1000] or None):
            return _record_refusal(session, click, REJECT, "Not rejected: this step already moved on.", now,
                                   session.get(Proposal, checked.proposal_id))
        chain.append(session, checked.incident_id, "remediation.rejected", f"slack:{click.user}",
                     {"proposal": checked.proposal_id, "reason": reason[:1000]}, now)
    return ClickResult(True, "Rejected.", checked.proposal_id, checked.incident_id)
