"""Intake: incident and alert category, links between incidents, card debounce, thread notes, PagerDuty link.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("category", lambda: sa.Column("category", sa.String(24), nullable=False, server_default="other")),
    ("acknowledged_by", lambda: sa.Column("acknowledged_by", sa.String(256))),
    ("previous_incident_id", lambda: sa.Column("previous_incident_id", BigId)),
    ("related_incident_id", lambda: sa.Column("related_incident_id", BigId)),
    ("merged_into_id", lambda: sa.Column("merged_into_id", BigId)),
    ("note_pending", lambda: sa.Column("note_pending", sa.JSON(), nullable=False, server_default="{}")),
    ("pagerduty_dedup_key", lambda: sa.Column("pagerduty_dedup_key", sa.String(255))),
    ("pagerduty_incident_id", lambda: sa.Column("pagerduty_incident_id", sa.String(64))),
    ("pagerduty_status_wanted", lambda: sa.Column("pagerduty_status_wanted", sa.String(24))),
    ("pagerduty_status_synced", lambda: sa.Column("pagerduty_status_synced", sa.String(24))),
    ("pagerduty_retry_at", lambda: sa.Column("pagerduty_retry_at", UTCDateTime())),
    ("card_synced_at", lambda: sa.Column("card_synced_at", UTCDateTime())),
    ("card_hash", lambda: sa.Column("card_hash", sa.String(64))),
)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        for _name, column in COLUMNS:
            batch.add_column(column())
    op.create_index("ix_incidents_pagerduty_dedup_key", "incidents", ["pagerduty_dedup_key"])
    op.create_index("ix_incidents_pagerduty_incident_id", "incidents", ["pagerduty_incident_id"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("category", sa.String(24), nullable=False, server_default="other"))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("category")
    op.drop_index("ix_incidents_pagerduty_incident_id", "incidents")
    op.drop_index("ix_incidents_pagerduty_dedup_key", "incidents")
    with op.batch_alter_table("incidents") as batch:
        for name, _column in reversed(COLUMNS):
            batch.drop_column(name)
