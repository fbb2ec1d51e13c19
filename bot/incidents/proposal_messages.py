"""Each proposal's message in the incident thread, brought up to date after every change.

A proposal's `message_version` is bumped by every transition; this sync posts the message the
first time (in the card's thread, once the card exists) and updates it in place afterwards,
then records the synced version. Slack answering 429 or 5xx defers the update (Retry-After,
else backoff); the state is in the database, so a late message is never a wrong one. The first
post goes through `bot.incidents.slack_posts`: a crash after Slack applied it (before the ts
was stored) does not leave a second message whose stale buttons stay live; the retry adopts
the first one and updates it in place.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select

from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Proposal, SlackMessage
from bot.incidents import service, unverified_steps
from bot.incidents.proposal_clicks import APPROVE, REJECT
from bot.incidents.slack_posts import PostSpec, forget, post_once
from bot.remediation import store, tokens
from bot.remediation.kit import RemediationKit
from bot.slack.gateway import SlackError, SlackGateway, SlackRetryLater
from bot.slack.render.proposal import ProposalView, render_proposal
from bot.timeline import chain

log = logging.getLogger(__name__)


def masked_params(proposal: Proposal) -> dict:
    secret = set((proposal.plan or {}).get("secret_params") or [])
    return {k: ("••••••" if k in secret else v) for k, v in (proposal.params or {}).items()}


def view_of(kit: RemediationKit, proposal: Proposal, reference: str, approvals: list[str]) -> ProposalView:
    return ProposalView(
        reference=reference, title=proposal.title, runbook=proposal.runbook_id, step=proposal.step_id,
        risk=proposal.risk, status=proposal.status, params=masked_params(proposal), plan=dict(proposal.plan or {}),
        decision=dict(proposal.decision or {}), approvals=approvals, result=dict(proposal.result or {}),
        approve_value=tokens.sign(kit.key, APPROVE, proposal.id, proposal.expires_at),
        reject_value=tokens.sign(kit.key, REJECT, proposal.id, proposal.expires_at),
        **unverified_steps.button_values(kit, proposal),
        rejected_by=proposal.rejected_by, reject_reason=proposal.reject_reason, proposal_id=proposal.id)


class ProposalMessages:
    def __init__(self, kit: RemediationKit, gateway: SlackGateway, min_interval: timedelta = timedelta(0),
                 lease: timedelta = timedelta(seconds=120)):
        """`min_interval`: the incident's one-write-per-interval budget, shared with its card and
        RCA (`service.lease_thread_write`)."""
        self._kit, self._gateway = kit, gateway
        self._interval, self._lease = min_interval, lease

    def round(self) -> bool:
        with reading(self._kit.factory) as session:
            due = store.messages_due(session, self._kit.clock())
        return any([self.sync(proposal_id) for proposal_id in due])

    def sync(self, proposal_id: int) -> bool:
        kit = self._kit
        purpose = f"proposal:{proposal_id}"
        owner = f"proposal-sync:{uuid.uuid4().hex[:12]}"
        now = kit.clock()
        with unit_of_work(kit.factory) as session:
            incident_id = session.get(Proposal, proposal_id).incident_id
            if service.card_message(session, incident_id) is None:
                return False  # the thread does not exist yet
            if not service.lease_thread_write(session, incident_id, owner, now, now + self._lease, self._interval):
                return False  # the incident wrote to Slack within the interval: next round
        # Rendered from a snapshot once the write slot is ours, not inside the write transaction
        # (on SQLite that would hold the one writer lock, and the webhooks, for the rendering).
        # Should rendering fail, the slot is given back (as the rolled-back lease was).
        try:
            with reading(kit.factory) as session:
                proposal = session.get(Proposal, proposal_id)
                card = service.card_message(session, incident_id)
                incident = session.get(Incident, incident_id)
                message = session.execute(select(SlackMessage).where(
                    SlackMessage.incident_id == incident_id, SlackMessage.purpose == purpose)).scalar_one_or_none()
                approvals = [a.user_id for a in store.approvals(session, proposal_id)]
                rendered = render_proposal(view_of(kit, proposal, incident.reference, approvals))
                version = proposal.message_version
                target = (message.channel, message.ts) if message else (card.channel, None)
                thread_ts = card.ts
        except Exception:
            with unit_of_work(kit.factory) as session:
                service.release_thread_write(session, incident_id, owner, None)
            raise
        adopted = False
        try:
            if target[1] is None:
                result = post_once(kit.factory, self._gateway, kit.clock,
                                   PostSpec(incident_id, purpose, target[0], thread_ts),
                                   rendered["text"], rendered["blocks"])
                target, adopted = (result.message.channel, result.message.ts), result.adopted
            else:
                self._gateway.update_message(target[0], target[1], rendered["text"], rendered["blocks"])
        except SlackError as exc:
            delay = exc.retry_after if isinstance(exc, SlackRetryLater) and exc.retry_after else 5.0
            log.warning("proposal message deferred %.0fs: %s", delay, exc)
            with unit_of_work(kit.factory) as session:
                store.defer_message(session, proposal_id, kit.clock() + timedelta(seconds=delay))
                service.release_thread_write(session, incident_id, owner, None)
                chain.append(session, incident_id, "slack.failed", "opsbot",
                             {"method": exc.method, "error": exc.error, "proposal": proposal_id}, kit.clock())
            return False
        now = kit.clock()
        with unit_of_work(kit.factory) as session:
            # lock order everywhere: the proposal row, then the incident row (a new slack_messages
            # row takes a key-share lock on the incident through its foreign key)
            if not adopted:  # an adopted message shows an earlier version: updated next round
                store.mark_message_synced(session, proposal_id, version)
            if message is None:
                session.add(SlackMessage(incident_id=incident_id, purpose=purpose, channel=target[0], ts=target[1],
                                         thread_ts=thread_ts, created_at=now, updated_at=now))
                forget(session, incident_id, purpose)
            service.release_thread_write(session, incident_id, owner, now)
            service.catchup_moved(session, incident_id)
        return True
