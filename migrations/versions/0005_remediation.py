"""Remediation: proposals, their approvals, kill switches; the timeline's head on incidents.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _backfill_heads() -> None:
    """Existing incidents get the head of the timeline they already have."""
    connection = op.get_bind()
    last = connection.execute(sa.text(
        "SELECT t.incident_id, t.seq, t.hash FROM timeline_entries t JOIN (SELECT incident_id, MAX(seq) AS seq "
        "FROM timeline_entries GROUP BY incident_id) m ON m.incident_id = t.incident_id AND m.seq = t.seq")).all()
    for incident_id, seq, head in last:
        connection.execute(sa.text("UPDATE incidents SET timeline_seq = :seq, timeline_head = :head WHERE id = :id"),
                           {"seq": seq, "head": head, "id": incident_id})


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("timeline_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("timeline_head", sa.String(64)))
    _backfill_heads()
    op.create_table(
        "proposals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("runbook_id", sa.String(63), nullable=False),
        sa.Column("step_id", sa.String(63), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("namespace", sa.String(128)),
        sa.Column("cluster", sa.String(128)),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("autonomy", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("undo", sa.JSON()),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("verify_deadline", UTCDateTime()),
        sa.Column("next_check_at", UTCDateTime()),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("rejected_by", sa.String(64)),
        sa.Column("reject_reason", sa.Text()),
        sa.Column("message_version", sa.Integer(), nullable=False),
        sa.Column("message_synced_version", sa.Integer(), nullable=False),
        sa.Column("message_retry_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_proposals"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_proposals_incident_id_incidents"),
    )
    op.create_index("ix_proposals_incident_id", "proposals", ["incident_id"])
    op.create_index("ix_proposals_status", "proposals", ["status"])
    op.create_table(
        "proposal_approvals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("proposal_id", BigId, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_proposal_approvals"),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposals.id"], name="fk_proposal_approvals_proposal_id_proposals"),
        sa.UniqueConstraint("proposal_id", "user_id", name="uq_proposal_approvals_proposal_id_user_id"),
    )
    op.create_table(
        "kill_switches",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_kill_switches"),
    )


def downgrade() -> None:
    op.drop_table("kill_switches")
    op.drop_table("proposal_approvals")
    op.drop_index("ix_proposals_status", "proposals")
    op.drop_index("ix_proposals_incident_id", "proposals")
    op.drop_table("proposals")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("timeline_head")
        batch.drop_column("timeline_seq")
