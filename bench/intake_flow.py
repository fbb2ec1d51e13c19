"""Intake flow benchmark: the ingest path alone, without HTTP, workers or Slack.

    .venv/bin/python bench/intake_flow.py [--alerts 20000] [--services 50] [--batch 100] [--runs 3]

Stores the storm of `bench/ingest.py` as raw deliveries, then claims and applies them with the
intake worker's own code (`Workers.process_delivery`: parse the claimed body, then lock the
delivery, `flows.ingest` and mark it done in one transaction) in one thread, on SQLite (PostgreSQL when DATABASE_URL is set: a fresh database is created and
dropped). It separates the cost of grouping from the server's other work (HTTP, card sync, the
shared interpreter) that `bench/ingest.py` measures together, and counts the SQL statements a
batch costs. Ends with `bench: intake_flow alerts_per_s=N statements_per_batch=N`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import database_for_run, storm  # noqa: E402

from bot.alerts import deliveries  # noqa: E402
from bot.clock import utc_now  # noqa: E402
from bot.db.engine import make_engine, make_session_factory, unit_of_work  # noqa: E402
from bot.db.migrate import upgrade  # noqa: E402
from bot.incidents.lifecycle import Windows  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.workers import CLAIM_BATCH, IntakeRules, Workers  # noqa: E402

OWNER = "bench"


def one_run(bodies: list[bytes]) -> tuple[float, float]:
    """(alerts per second, statements per batch) over a fresh database."""
    database_url, _backend, drop = database_for_run(Path(tempfile.mkdtemp(prefix="opsbot-bench-")))
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        factory = make_session_factory(engine)
        with unit_of_work(factory) as session:
            ids = [deliveries.store(session, "alertmanager", body, {}, datetime.now(UTC)).id for body in bodies]
        alerts = sum(len(json.loads(body)["alerts"]) for body in bodies)
        statements = 0

        def count(*_args) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine, "before_cursor_execute", count)
        # one incident per grouping key, as bench/ingest.py checks: storm folding off
        workers = Workers(factory, None, utc_now, Metrics(), intake=IntakeRules(windows=Windows(storm_incidents=0)))
        started = time.perf_counter()
        while True:
            with unit_of_work(factory) as session:
                claimed = deliveries.claim(session, OWNER, utc_now(), timedelta(minutes=10), CLAIM_BATCH)
            if not claimed:
                break
            for delivery in claimed:
                workers.process_delivery(delivery, OWNER)
        elapsed = time.perf_counter() - started
        with unit_of_work(factory) as session:
            if deliveries.pending_count(session):
                raise RuntimeError("some deliveries were not processed")
        return alerts / elapsed, statements / len(ids)
    finally:
        engine.dispose()
        drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bodies = storm(args.alerts, args.services, args.batch)
    results = []
    for number in range(1, args.runs + 1):
        rate, per_batch = one_run(bodies)
        results.append((rate, per_batch))
        print(f"run {number}: {rate:.0f} alerts/s, {per_batch:.1f} statements per batch", flush=True)
    rate = statistics.median(r for r, _ in results)
    per_batch = statistics.median(p for _, p in results)
    print(f"median of {args.runs}: {rate:.0f} alerts/s applied (stored alerts grouped into incidents, one thread)")
    print(f"reproduce: .venv/bin/python bench/intake_flow.py --alerts {args.alerts} --services {args.services} "
          f"--batch {args.batch} --runs {args.runs}")
    print(f"bench: intake_flow alerts_per_s={rate:.0f} statements_per_batch={per_batch:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
