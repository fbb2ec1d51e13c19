"""The incident's life and its record: commander, status updates, how it was resolved (and how
many times), the catch-up message's hash; the postmortem message per incident; follow-ups; the
signature each resolved incident leaves for later RCAs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INCIDENT_COLUMNS = (
    ("commander", sa.String(256)), ("severity_by", sa.String(256)), ("declared_by", sa.String(256)), ("latest_update", sa.Text()),
    ("latest_update_by", sa.String(256)), ("latest_update_at", UTCDateTime()), ("resolved_by", sa.String(256)),
    ("resolution_note", sa.Text()), ("catchup_hash", sa.String(64)),
)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        for name, kind in INCIDENT_COLUMNS:
            batch.add_column(sa.Column(name, kind))
        batch.add_column(sa.Column("resolutions", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "postmortems",
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("posted_resolution", sa.Integer(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("channel", sa.String(64)),
        sa.Column("ts", sa.String(32)),
        sa.Column("posted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("incident_id", name="pk_postmortems"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_postmortems_incident_id_incidents"),
    )
    op.create_index("ix_postmortems_due_at", "postmortems", ["due_at"])
    op.create_table(
        "follow_ups",
        sa.Column("id", BigId, nullable=False),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("closed_by", sa.String(128)),
        sa.Column("closed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_follow_ups"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_follow_ups_incident_id_incidents"),
    )
    op.create_index("ix_follow_ups_incident_id", "follow_ups", ["incident_id"])
    op.create_table(
        "incident_signatures",
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=False),
        sa.Column("cluster", sa.String(128)),
        sa.Column("namespace", sa.String(128)),
        sa.Column("resource", sa.String(300)),
        sa.Column("category", sa.String(24), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("resolution", sa.String(24), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name="pk_incident_signatures"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name="fk_incident_signatures_incident_id_incidents"),
    )


def downgrade() -> None:
    op.drop_table("incident_signatures")
    op.drop_index("ix_follow_ups_incident_id", table_name="follow_ups")
    op.drop_table("follow_ups")
    op.drop_index("ix_postmortems_due_at", table_name="postmortems")
    op.drop_table("postmortems")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("resolutions")
        for name, _kind in reversed(INCIDENT_COLUMNS):
            batch.drop_column(name)
