"""Alert scope columns: severity, cluster, namespace, service and target derived from labels.

The incident flow summarises an incident with one GROUP BY over these columns instead of
loading every alert on each notification. Existing alerts are filled in from their labels.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.incidents.summary import alert_scope

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("severity", lambda: sa.Column("severity", sa.String(16), nullable=False, server_default="unknown")),
    ("cluster", lambda: sa.Column("cluster", sa.String(128))),
    ("namespace", lambda: sa.Column("namespace", sa.String(128))),
    ("service", lambda: sa.Column("service", sa.String(256))),
    ("target", lambda: sa.Column("target", sa.String(256), nullable=False, server_default="")),
)
BACKFILL_BATCH = 1000


def _backfill(connection: sa.Connection) -> None:
    alerts = sa.table("alerts", sa.column("id"), sa.column("labels", sa.JSON()), sa.column("fingerprint"),
                      *(sa.column(name) for name, _column in COLUMNS))
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(alerts.c.id, alerts.c.labels, alerts.c.fingerprint)
            .where(alerts.c.id > last_id).order_by(alerts.c.id).limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        values = [{"row_id": row.id, **vars(alert_scope(row.labels or {}, row.fingerprint))} for row in rows]
        connection.execute(
            alerts.update().where(alerts.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(name) for name, _column in COLUMNS}),
            values,
        )
        last_id = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        for _name, column in COLUMNS:
            batch.add_column(column())
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        for name, _column in reversed(COLUMNS):
            batch.drop_column(name)
