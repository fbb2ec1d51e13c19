"""Digests: what each scheduled run did (outcome, message, figures) and the findings kept
between runs.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_CLAIM_COLUMNS = ("outcome", "channel", "ts", "summary", "error")


def upgrade() -> None:
    with op.batch_alter_table("job_claims") as batch:
        batch.add_column(sa.Column("outcome", sa.String(16)))
        batch.add_column(sa.Column("channel", sa.String(64)))
        batch.add_column(sa.Column("ts", sa.String(32)))
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("error", sa.Text()))
    op.create_table(
        "digest_findings",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("section", sa.String(120), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("fixed_at", UTCDateTime()),
        sa.Column("fix", sa.JSON()),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_digest_findings"),
    )


def downgrade() -> None:
    op.drop_table("digest_findings")
    with op.batch_alter_table("job_claims") as batch:
        for column in _CLAIM_COLUMNS:
            batch.drop_column(column)
