"""SQLAlchemy 2 models. Dialect-neutral: the same schema on SQLite and PostgreSQL.

Invariants enforced by the schema itself, not only by code:
- one open incident per grouping key: a unique index over (group_key_hash, is_open) where
  is_open is TRUE while open and NULL once closed (NULLs never collide in a unique index); the
  key is hashed because group keys have no length limit and btree index entries do;
- the timeline is append-only: database triggers (see the migration) refuse UPDATE and DELETE,
  and (incident_id, seq) is unique so two writers can never fork an incident's hash chain;
- a scheduled job runs once per slot: (job, slot) is the primary key of `job_claims`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.db.types import BigId, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class RawDelivery(Base):
    """A webhook body exactly as received: stored before the 2xx, processed by a worker.

    status: pending -> processing (claimed until `claimed_until`) -> done | failed. A claim
    whose lease expired is taken again, so a crash mid-processing loses nothing.
    """

    __tablename__ = "raw_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime]
    headers: Mapped[dict[str, Any]]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_raw_deliveries_status_id", "status", "id"),)


class Incident(Base):
    """One problem, one Slack thread.

    `card_version` is bumped whenever the card should change; the card worker brings Slack up
    to `card_synced_version`. The lease columns make sure one worker at a time touches the card,
    so a card is posted once even with several replicas.
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_key: Mapped[str] = mapped_column(Text)
    group_key_hash: Mapped[str] = mapped_column(String(64))
    is_open: Mapped[bool | None] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(24), default="open")
    source: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(16), default="unknown")
    cluster: Mapped[str | None] = mapped_column(String(128))
    namespace: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[str | None] = mapped_column(String(256))
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    firing_count: Mapped[int] = mapped_column(Integer, default=0)
    links: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    category: Mapped[str] = mapped_column(String(24), default="other", server_default="other")
    acknowledged_by: Mapped[str | None] = mapped_column(String(256))
    previous_incident_id: Mapped[int | None] = mapped_column(BigId)
    related_incident_id: Mapped[int | None] = mapped_column(BigId)
    merged_into_id: Mapped[int | None] = mapped_column(BigId)
    note_pending: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    pagerduty_dedup_key: Mapped[str | None] = mapped_column(String(255))
    pagerduty_incident_id: Mapped[str | None] = mapped_column(String(64))
    pagerduty_status_wanted: Mapped[str | None] = mapped_column(String(24))
    pagerduty_status_synced: Mapped[str | None] = mapped_column(String(24))
    pagerduty_retry_at: Mapped[datetime | None]
    card_version: Mapped[int] = mapped_column(Integer, default=1)
    card_synced_version: Mapped[int] = mapped_column(Integer, default=0)
    card_synced_at: Mapped[datetime | None]
    card_hash: Mapped[str | None] = mapped_column(String(64))
    card_lease_owner: Mapped[str | None] = mapped_column(String(128))
    card_lease_until: Mapped[datetime | None]
    card_attempts: Mapped[int] = mapped_column(Integer, default=0)
    card_last_error: Mapped[str | None] = mapped_column(Text)
    # The timeline's newest entry, kept with every append: deleting the last entries (which
    # the hash chain alone cannot reveal) shows as a head that no longer matches.
    timeline_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    timeline_head: Mapped[str | None] = mapped_column(String(64))
    # The incident's life (bot.incidents.controls): who leads it, what was last said, how it ended.
    commander: Mapped[str | None] = mapped_column(String(256))
    severity_by: Mapped[str | None] = mapped_column(String(256))  # set by a person: alerts no longer change it
    declared_by: Mapped[str | None] = mapped_column(String(256))  # opened by hand (/ops declare)
    latest_update: Mapped[str | None] = mapped_column(Text)
    latest_update_by: Mapped[str | None] = mapped_column(String(256))
    latest_update_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(256))  # "source", "slack:U…", "opsbot"
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # Times resolved: each resolution gets its postmortem version (bot.postmortem.stage).
    resolutions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    catchup_hash: Mapped[str | None] = mapped_column(String(64))  # the catch-up message as last written

    __table_args__ = (
        Index("uq_incidents_open_group_key", "group_key_hash", "is_open", unique=True),
        Index("ix_incidents_card_pending", "card_synced_version", "card_version"),
        Index("ix_incidents_pagerduty_dedup_key", "pagerduty_dedup_key"),
        Index("ix_incidents_pagerduty_incident_id", "pagerduty_incident_id"),
    )

    @property
    def reference(self) -> str:
        return f"INC-{self.id}"


class Alert(Base):
    """One alert (by source fingerprint) within one incident; repeats bump the counters."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(24), default="other", server_default="other")
    # Derived from the labels when the alert arrives or changes (bot.incidents.summary.alert_scope),
    # so the incident's card is computed by one GROUP BY instead of loading every alert.
    severity: Mapped[str] = mapped_column(String(16), default="unknown", server_default="unknown")
    cluster: Mapped[str | None] = mapped_column(String(128))
    namespace: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[str | None] = mapped_column(String(256))
    target: Mapped[str] = mapped_column(String(256), default="", server_default="")
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    generator_url: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    notification_count: Mapped[int] = mapped_column(Integer, default=1)
    last_delivery_id: Mapped[int | None] = mapped_column(ForeignKey("raw_deliveries.id"))

    __table_args__ = (UniqueConstraint("incident_id", "source", "fingerprint"),)


class TimelineEntry(Base):
    """Append-only audit log of an incident. Each entry's `hash` covers its content and the
    previous entry's hash (`prev_hash`), so an edit or a deletion breaks the chain."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))  # HMAC of `hash` under the audit key, when one is set

    __table_args__ = (UniqueConstraint("incident_id", "seq"),)


class SlackMessage(Base):
    """A message the bot posted, by purpose: `card` is the thread's root message."""

    __tablename__ = "slack_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("incident_id", "purpose"), UniqueConstraint("channel", "ts"))


class SlackPostIntent(Base):
    """A message about to be posted (`purpose` as in `SlackMessage`), recorded before the
    `chat.postMessage` call and deleted when its ts is stored. Its `marker` travels in the
    message's metadata, so a retry after a crash finds the message instead of posting it twice
    (see `bot.incidents.slack_posts`)."""

    __tablename__ = "slack_post_intents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    purpose: Mapped[str] = mapped_column(String(64))
    marker: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the message accounts for (a note's counts)

    __table_args__ = (UniqueConstraint("incident_id", "purpose"),)


class Investigation(Base):
    """The RCA of one incident: created with the incident (ack first, nothing lost), claimed by
    one worker at a time, run outside any transaction, its result stored, then posted.

    status: pending -> running (leased until `lease_until`) -> done | failed. A lapsed lease is
    claimed again, so a crash mid-investigation only costs a re-run. Posting is separate:
    `posted_at` is set once the thread was told: the RCA is in it (done), or the note saying
    the investigation gave up was queued (failed; `bot.incidents.investigations`). Until then the post is retried
    (`post_attempts`, `post_retry_at`), after the card exists. Its files follow in a later
    write (`files_posted_at`): each Slack write of an incident waits its turn in the
    one-write-per-interval budget the card keeps (`incident.card_synced_at`).
    """

    __tablename__ = "investigations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    not_before: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    posted_at: Mapped[datetime | None]
    post_ts: Mapped[str | None] = mapped_column(String(32))
    post_attempts: Mapped[int] = mapped_column(Integer, default=0)
    post_retry_at: Mapped[datetime | None]
    files_posted_at: Mapped[datetime | None]  # the graph and evidence file, shared after the message

    __table_args__ = (
        UniqueConstraint("incident_id", "round"),
        Index("ix_investigations_status_not_before", "status", "not_before"),
    )


class Proposal(Base):
    """One runbook step proposed for an incident: its parameters, plan, policy decision, the
    approvals it gathered, and how it ran.

    status: described (autonomy suggest: shown, no buttons) | proposed (buttons) -> approved ->
    running -> verifying -> succeeded | failed | rolled_back | rollback_failed; or rejected,
    expired, denied (policy said no at click or execution time); or, when verification read no
    data at all, verifying -> unverified (Roll back / Accept buttons) -> accepted, or
    rollback_requested -> rolling_back -> rolled_back | rollback_failed, or, nobody deciding
    within the buttons' window, unverified_expired. A failed verification's automatic rollback
    goes verifying -> rolling_back too. A `running` or
    `rolling_back` step whose lease lapsed (its worker died) is recovered once, never re-applied:
    `result.intent` / `result.rollback_intent` record the write before it is sent
    (`bot.remediation.recovery`). Every transition is a
    conditional UPDATE on the current status, so a double click, a retried request or a second
    replica can never run a step twice. `message_version` is bumped at each change; the
    proposal sync brings the Slack message up to it.
    """

    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    runbook_id: Mapped[str] = mapped_column(String(63))
    step_id: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(300))
    params: Mapped[dict[str, Any]]
    target: Mapped[str] = mapped_column(String(300))
    namespace: Mapped[str | None] = mapped_column(String(128))
    cluster: Mapped[str | None] = mapped_column(String(128))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    risk: Mapped[str] = mapped_column(String(16))
    autonomy: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    decision: Mapped[dict[str, Any]]
    plan: Mapped[dict[str, Any]]
    undo: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    verify_deadline: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rejected_by: Mapped[str | None] = mapped_column(String(64))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    message_version: Mapped[int] = mapped_column(Integer, default=1)
    message_synced_version: Mapped[int] = mapped_column(Integer, default=0)
    message_retry_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_proposals_status", "status"),)


class ProposalApproval(Base):
    """One person's approval of a proposal, at most once each."""

    __tablename__ = "proposal_approvals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("proposal_id", "user_id"),)


class KillSwitch(Base):
    """An active kill switch set from Slack (`/ops freeze`): `global`, `namespace:<ns>`."""

    __tablename__ = "kill_switches"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime]


class SeenRequest(Base):
    """A request id already acted on (a PagerDuty event id, a Slack trigger or event id), kept
    until `keep_until` so a replay of the same signed request is refused, not run again. The
    primary key makes the first writer win: two replicas receiving the same replay cannot both
    act on it."""

    __tablename__ = "seen_requests"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime]
    keep_until: Mapped[datetime] = mapped_column(index=True)


class JobClaim(Base):
    """A scheduled job's run for one slot (e.g. the 2026-11-21 09:00 drift digest for #platform),
    claimed once: the primary key makes the first replica to insert the row the only one to run
    it. A claim whose run never finished (its replica died) may be taken over once its lease
    lapsed (`bot.digests.claims`). outcome: posted | failed | empty (nothing was posted).
    `summary` keeps the run's figures for the next run (growth, forecasts)."""

    __tablename__ = "job_claims"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(64))
    ts: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class DigestFinding(Base):
    """A finding a digest reported, kept between runs so that the next run says "still drifted
    since <date>" and reports a fixed one once. `scope` is the digest's job (digest and channel):
    each channel hears of a fix once. `fixed_at` is set when a run that checked everything no
    longer finds it; `fix` is the runbook step the digest offered (looked up at click time,
    never taken from the button)."""

    __tablename__ = "digest_findings"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    section: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    fixed_at: Mapped[datetime | None]
    fix: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Postmortem(Base):
    """The postmortem message of an incident: one per incident, written into its thread.

    `resolution` is the incident's resolution it should describe (bumped each time the incident
    resolves); `posted_resolution` the one Slack shows. The stage posts the first version and
    edits it in place for later ones (a reopened and re-resolved incident gets an updated
    postmortem, never a second one). Written under the incident's thread-write slot (a
    conditional UPDATE one worker wins across replicas), and posted through `slack_posts`
    (intent + marker), so several replicas and a crash mid-post still give one message.
    """

    __tablename__ = "postmortems"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    resolution: Mapped[int] = mapped_column(Integer, default=1)
    posted_resolution: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]  # not before (a grace after resolving, then Slack's back-off)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(64))
    ts: Mapped[str | None] = mapped_column(String(32))
    posted_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_postmortems_due_at", "due_at"),)


class FollowUp(Base):
    """An action item recorded during an incident (`/ops followup`), with an optional owner;
    listed in the catch-up and the postmortem, closed when done (never deleted)."""

    __tablename__ = "follow_ups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None]


class IncidentSignature(Base):
    """What a resolved incident leaves behind for later RCAs (bot.postmortem.memory): compact,
    rewritten at each resolution. A hypothesis to check, never an answer."""

    __tablename__ = "incident_signatures"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    resolved_at: Mapped[datetime]
    cluster: Mapped[str | None] = mapped_column(String(128))
    namespace: Mapped[str | None] = mapped_column(String(128))
    resource: Mapped[str | None] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(24))
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # owner chain, alerts, log templates, runbooks
    resolution: Mapped[str] = mapped_column(String(24))
    summary: Mapped[str] = mapped_column(Text, default="")


class RiskCheck(Base):
    """One answer to "should we deploy this now?" (`/ops risk`, `POST /api/deploy-check`): who
    asked, the verdict and every finding it rests on (`bot.ask.risk`). Written once, never changed."""

    __tablename__ = "risk_checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]
    asked_by: Mapped[str] = mapped_column(String(128))
    workload: Mapped[str] = mapped_column(String(300))
    verdict: Mapped[str] = mapped_column(String(8))
    findings: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_risk_checks_workload_at", "workload", "at"),)
