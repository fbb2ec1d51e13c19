"""Replay guard (request ids seen: PagerDuty event ids, Slack trigger and event ids) and the
keyed MAC of each timeline entry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("keep_until", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "request_id", name="pk_seen_requests"),
    )
    op.create_index("ix_seen_requests_keep_until", "seen_requests", ["keep_until"])
    # a plain ADD COLUMN: a batch copy would drop the append-only triggers on SQLite
    op.add_column("timeline_entries", sa.Column("mac", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("timeline_entries") as batch:
        batch.drop_column("mac")
    op.drop_index("ix_seen_requests_keep_until", "seen_requests")
    op.drop_table("seen_requests")
