"""Risk checks: every answer to "should we deploy this now?" (`/ops risk`, the deploy gate), with
who asked, the verdict and the findings it rests on.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_checks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("asked_by", sa.String(128), nullable=False),
        sa.Column("workload", sa.String(300), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_checks"),
    )
    op.create_index("ix_risk_checks_workload_at", "risk_checks", ["workload", "at"])


def downgrade() -> None:
    op.drop_index("ix_risk_checks_workload_at", table_name="risk_checks")
    op.drop_table("risk_checks")
