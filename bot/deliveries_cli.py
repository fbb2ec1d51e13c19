"""`opsbot deliveries`: look at stored webhook deliveries and replay one.

A replay stores a copy of the delivery as a new pending one (the original stays as received,
for the audit trail); a running `opsbot serve` processes it like any other. Replays bypass the
duplicate window on purpose: replaying is a deliberate act. A listing is never empty: with
nothing to show it says so in one line.
"""

from __future__ import annotations

import json
import sys

from sqlalchemy import select

from bot.alerts import deliveries
from bot.db.engine import unit_of_work
from bot.db.models import RawDelivery

STATUSES = ("pending", "processing", "done", "failed")


def list_deliveries(factory, status: str | None, limit: int) -> list[str]:
    with unit_of_work(factory) as session:
        query = select(RawDelivery).order_by(RawDelivery.id.desc()).limit(limit)
        if status:
            query = query.where(RawDelivery.status == status)
        rows = list(session.execute(query).scalars())
    if not rows:
        return [f"no deliveries with status {status}" if status else "no deliveries stored"]
    return [
        f"{row.id:>8}  {row.received_at:%Y-%m-%d %H:%M:%S}  {row.source:<12} {row.status:<10} "
        f"{len(row.body):>8} B  attempts {row.attempts}" + (f"  error: {row.error.splitlines()[0][:80]}"
                                                            if row.error else "")
        for row in rows
    ]


def show_delivery(factory, delivery_id: int) -> str | None:
    with unit_of_work(factory) as session:
        row = session.get(RawDelivery, delivery_id)
        if row is None:
            return None
        try:
            body = json.dumps(json.loads(row.body), indent=2, ensure_ascii=False)
        except ValueError:
            body = row.body.decode("utf-8", "replace")
        header = {"id": row.id, "source": row.source, "status": row.status, "received_at": row.received_at.isoformat(),
                  "attempts": row.attempts, "error": row.error, "headers": row.headers, "sha256": row.body_sha256}
        return json.dumps(header, indent=2) + "\n" + body


def replay_delivery(factory, delivery_id: int, now) -> int | None:
    """Queue a copy of the delivery; returns the new id (None if there is no such delivery)."""
    with unit_of_work(factory) as session:
        row = session.get(RawDelivery, delivery_id)
        if row is None:
            return None
        copy = deliveries.store(session, row.source, row.body, {**row.headers, "x-opsbot-replay-of": str(row.id)},
                                now)
        return copy.id


def print_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
