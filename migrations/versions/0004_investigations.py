"""Investigations: the RCA of each incident, claimed by workers, stored, then posted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "investigations",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("result", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("posted_at", UTCDateTime()),
        sa.Column("post_ts", sa.String(32)),
        sa.Column("post_attempts", sa.Integer(), nullable=False),
        sa.Column("post_retry_at", UTCDateTime()),
        sa.Column("files_posted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_investigations"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_investigations_incident_id_incidents"),
        sa.UniqueConstraint("incident_id", "round", name="uq_investigations_incident_id_round"),
    )
    op.create_index("ix_investigations_status_not_before", "investigations", ["status", "not_before"])


def downgrade() -> None:
    op.drop_index("ix_investigations_status_not_before", "investigations")
    op.drop_table("investigations")
