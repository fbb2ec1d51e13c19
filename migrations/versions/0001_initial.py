"""Initial schema: deliveries, incidents, alerts, the append-only timeline, Slack messages, job claims.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.db.types import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "timeline_entries is append-only"


def upgrade() -> None:
    op.create_table(
        "raw_deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_until", UTCDateTime()),
        sa.Column("processed_at", UTCDateTime()),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_raw_deliveries"),
    )
    op.create_index("ix_raw_deliveries_body_sha256", "raw_deliveries", ["body_sha256"])
    op.create_index("ix_raw_deliveries_status_id", "raw_deliveries", ["status", "id"])

    op.create_table(
        "incidents",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("group_key_hash", sa.String(64), nullable=False),
        sa.Column("is_open", sa.Boolean()),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("cluster", sa.String(128)),
        sa.Column("namespace", sa.String(128)),
        sa.Column("service", sa.String(256)),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("firing_count", sa.Integer(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime()),
        sa.Column("card_version", sa.Integer(), nullable=False),
        sa.Column("card_synced_version", sa.Integer(), nullable=False),
        sa.Column("card_lease_owner", sa.String(128)),
        sa.Column("card_lease_until", UTCDateTime()),
        sa.Column("card_attempts", sa.Integer(), nullable=False),
        sa.Column("card_last_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("uq_incidents_open_group_key", "incidents", ["group_key_hash", "is_open"], unique=True)
    op.create_index("ix_incidents_card_pending", "incidents", ["card_synced_version", "card_version"])

    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("starts_at", UTCDateTime()),
        sa.Column("ends_at", UTCDateTime()),
        sa.Column("generator_url", sa.Text()),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("notification_count", sa.Integer(), nullable=False),
        sa.Column("last_delivery_id", BigId),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_alerts_incident_id_incidents"),
        sa.ForeignKeyConstraint(
            ["last_delivery_id"], ["raw_deliveries.id"], name="fk_alerts_last_delivery_id_raw_deliveries"
        ),
        sa.UniqueConstraint("incident_id", "source", "fingerprint", name="uq_alerts_incident_id_source_fingerprint"),
    )
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"])

    op.create_table(
        "timeline_entries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_timeline_entries"),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name="fk_timeline_entries_incident_id_incidents"
        ),
        sa.UniqueConstraint("incident_id", "seq", name="uq_timeline_entries_incident_id_seq"),
    )

    op.create_table(
        "slack_messages",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("incident_id", BigId, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_slack_messages"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_slack_messages_incident_id_incidents"),
        sa.UniqueConstraint("incident_id", "purpose", name="uq_slack_messages_incident_id_purpose"),
        sa.UniqueConstraint("channel", "ts", name="uq_slack_messages_channel_ts"),
    )

    op.create_table(
        "job_claims",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("job", "slot", name="pk_job_claims"),
    )
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    """Refuse UPDATE and DELETE on the timeline in the database itself, not only in code."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER timeline_entries_no_{verb.lower()} BEFORE {verb} ON timeline_entries "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION timeline_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER timeline_entries_append_only BEFORE UPDATE OR DELETE ON timeline_entries "
            "FOR EACH ROW EXECUTE FUNCTION timeline_entries_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS timeline_entries_append_only ON timeline_entries")
        op.execute("DROP FUNCTION IF EXISTS timeline_entries_append_only()")
    for table in ("job_claims", "slack_messages", "timeline_entries", "alerts", "incidents", "raw_deliveries"):
        op.drop_table(table)
