"""An incident's alert rows as the intake reads and writes them: in bulk, without the ORM.

A batch loads only the alerts it names (the columns the intake compares, with Core statements
built once: no ORM objects, no autoflush), and
writes at most three statements whatever its size: one UPDATE for all plain repeats (the same
values for every row, so one statement with an IN list), one executemany for the alerts whose
state changed, and one executemany INSERT for the new ones. The ORM's unit of work cost more
than the statements themselves (it grouped updates by changed columns in row order, and
tracked every loaded row). Nothing else in the transaction holds these rows as ORM objects,
so nothing can go stale.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from bot.db.models import Alert
from bot.db.types import UTCDateTime

ALERTS = Alert.__table__
IDS_PER_STATEMENT = 500  # well under SQLite's and PostgreSQL's bound-parameter limits


@dataclass
class StoredAlert:
    """What the intake needs of an alert already in the incident; the flow changes it in place
    and says so with `changed` (state) or `touched` (seen again)."""

    id: int
    source: str
    fingerprint: str
    status: str
    labels: dict
    annotations: dict
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None
    last_delivery_id: int | None
    category: str = ""
    severity: str = ""
    cluster: str | None = None
    namespace: str | None = None
    service: str | None = None
    target: str = ""
    changed: bool = False
    touched: bool = False


_LOAD = (select(*[ALERTS.c[field.name] for field in fields(StoredAlert)[:10]])
         .where(ALERTS.c.incident_id == bindparam("incident_id"),
                ALERTS.c.fingerprint.in_(bindparam("fingerprints", expanding=True))))
# Written for an alert whose state changed (besides last_seen_at, the count and the delivery).
CHANGED_COLUMNS = ("status", "labels", "annotations", "category", "severity", "cluster", "namespace", "service",
                   "target", "starts_at", "ends_at", "generator_url")


@dataclass
class NewAlert:
    """An alert first seen in this batch, inserted with the batch's one executemany."""

    incident_id: int
    source: str
    fingerprint: str
    name: str
    status: str
    category: str
    severity: str
    cluster: str | None
    namespace: str | None
    service: str | None
    target: str
    labels: dict
    annotations: dict
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    notification_count: int
    last_delivery_id: int


def load(session: Session, incident_id: int, fingerprints: set[str]) -> list[StoredAlert]:
    """The incident's alerts among `fingerprints` (a batch touches only these)."""
    wanted, found = sorted(fingerprints), []
    for start in range(0, len(wanted), IDS_PER_STATEMENT):
        rows = session.execute(_LOAD, {"incident_id": incident_id,
                                       "fingerprints": wanted[start:start + IDS_PER_STATEMENT]})
        found += [StoredAlert(*row) for row in rows]
    return found


_CHANGED = (update(ALERTS).where(ALERTS.c.id == bindparam("alert_id"))
            .values(**{column: bindparam(f"new_{column}") for column in CHANGED_COLUMNS},
                    last_seen_at=bindparam("seen_at"), last_delivery_id=bindparam("delivery_id"),
                    notification_count=ALERTS.c.notification_count + 1))


def write(session: Session, stored: list[StoredAlert], new: list[NewAlert], delivery_id: int, now: datetime) -> None:
    """Write what the flow changed: repeats, changed alerts, new alerts."""
    repeated = [alert.id for alert in stored if alert.touched and not alert.changed]
    for start in range(0, len(repeated), IDS_PER_STATEMENT):
        session.execute(update(ALERTS).where(ALERTS.c.id.in_(repeated[start:start + IDS_PER_STATEMENT]))
                        .values(last_seen_at=now, last_delivery_id=delivery_id,
                                notification_count=ALERTS.c.notification_count + 1))
    changed = [{"alert_id": alert.id, "seen_at": now, "delivery_id": delivery_id,
                **{f"new_{column}": getattr(alert, column) for column in CHANGED_COLUMNS}}
               for alert in stored if alert.changed]
    if changed:
        session.execute(_CHANGED, changed)
    if new:  # psycopg pipelines an executemany: one round trip, not one per row
        _insert_new(session, new)


class _LeanInsert:
    """The alerts INSERT, compiled once per dialect, with each column's own bind processor
    (the same functions SQLAlchemy would call, so the stored values are identical) applied in
    one tight loop: SQLAlchemy's generic per-row parameter handling cost more than the insert."""

    def __init__(self, dialect):
        columns = [column for column in ALERTS.columns if column.name != "id"]
        compiled = insert(ALERTS).compile(dialect=dialect, column_keys=[column.key for column in columns],
                                          for_executemany=True)  # no RETURNING of ids nobody reads
        self.sql = compiled.string
        processors = {column.key: column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns}
        self.names = list(compiled.positiontup) if compiled.positional else [column.key for column in columns]
        self.processors = [processors[name] for name in self.names]
        # Timestamps repeat within a batch (first and last seen are the batch's `now`): each
        # distinct one is encoded once per call.
        self.memoised = {column.key for column in columns if isinstance(column.type, UTCDateTime)}
        self.positional = compiled.positional

    def rows(self, alerts: list[NewAlert]) -> list:
        memo: dict = {}

        def encode(name: str, process, value):
            if process is None:
                return value
            if name not in self.memoised:
                return process(value)
            if value not in memo:
                memo[value] = process(value)
            return memo[value]

        encoded = []
        for alert in alerts:
            values = vars(alert)
            row = [encode(name, process, values[name]) for name, process in zip(self.names, self.processors, strict=True)]
            encoded.append(tuple(row) if self.positional else dict(zip(self.names, row, strict=True)))
        return encoded


_LEAN_INSERTS: dict[tuple[str, str], _LeanInsert] = {}


def _insert_new(session: Session, new: list[NewAlert]) -> None:
    connection = session.connection()
    dialect = connection.dialect
    key = (dialect.name, dialect.driver)
    lean = _LEAN_INSERTS.get(key) or _LEAN_INSERTS.setdefault(key, _LeanInsert(dialect))
    connection.exec_driver_sql(lean.sql, lean.rows(new))
