"""Slack post intents: a message about to be posted (an incident's card, a thread note, an RCA,
a proposal) is recorded with a random marker (and, for a note, the counts it announces) before
the `chat.postMessage` call and forgotten once its `ts` is stored. An intent still present on a retry means an earlier attempt may have posted (the
process died, or the answer was lost, after Slack applied the post): the retry looks for the
marker in Slack's message metadata and adopts that message instead of posting a duplicate.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_post_intents",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("marker", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name="pk_slack_post_intents"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_slack_post_intents_incident_id_incidents"),
        sa.UniqueConstraint("incident_id", "purpose", name="uq_slack_post_intents_incident_id_purpose"),
    )


def downgrade() -> None:
    op.drop_table("slack_post_intents")
