"""Issue 12, item 2 (review): a live write made of many calls is never taken for a dead one.

A drain is a cordon and then one eviction per pod. With every request slow (each within the
request bound, half the lease, but all together longer than the lease), a second replica runs
its executor rounds the whole time: it must never find the step's lease lapsed, recover it and
mark it failed while the first worker is still evicting pods. The lease is renewed before each
request, on the condition that the worker still holds it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot.db.engine import unit_of_work
from bot.db.models import Proposal, TimelineEntry
from bot.remediation.execute import Executor
from tests.concurrency import eventually
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, BOB, world  # noqa: F401 - fixture

# Wide margins: a loaded 2-core machine can stall a worker for a second or two, which must not
# look like a dead one. Each request stays under the bound (LEASE_SECONDS / 2); three outlast the lease.
LEASE_SECONDS = 8
SLOW_SECONDS = 3.0
NODE = "k8s-worker-01.dc1.northwind.internal"


@pytest.fixture(scope="module")
def orders():
    return shared("orders-api-revision-22-panics-on-start")


def drain_of(w) -> Proposal:
    with unit_of_work(w.bot.runtime.factory) as session:
        return session.execute(select(Proposal).where(Proposal.runbook_id == "drain-node")).scalar_one()


def kinds(w) -> list[str]:
    with unit_of_work(w.bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.kind).order_by(TimelineEntry.id)).scalars())


def test_a_drain_longer_than_the_lease_is_not_recovered_by_another_replica(world, orders):
    w = world(orders, prometheus=False, step_lease_seconds=LEASE_SECONDS)
    cordons = w.kube.slow("PATCH", f"/api/v1/nodes/{NODE}", SLOW_SECONDS)
    evictions = w.kube.slow("POST", r"/api/v1/namespaces/[^/]+/pods/[^/]+/eviction", SLOW_SECONDS)
    pods = [p["metadata"]["name"] for p in w.cluster.list("Pod") if p["spec"].get("nodeName") == NODE]
    assert len(pods) >= 2, "a cordon and at least two evictions: longer than the lease in all"
    w.deliver()
    w.proposal("rollback-deployment")
    assert w.command(f"run INC-1 drain-node node={NODE}", BOB).status_code == 200
    message = w.proposal("drain-node")
    replica = Executor(w.bot.runtime.remediation, "replica-2", timedelta(seconds=LEASE_SECONDS))
    stop = threading.Event()

    def second_replica() -> None:  # its rounds look for lapsed leases all along
        while not stop.is_set():
            replica.round()
            stop.wait(0.05)

    thread = threading.Thread(target=second_replica, daemon=True)
    thread.start()
    try:
        w.click(message, "step_approve", ALICE)
        eventually(lambda: drain_of(w).status not in ("proposed", "approved", "running"), timeout=60)
    finally:
        stop.set()
        thread.join(timeout=30)
    drain = drain_of(w)
    assert "remediation.recovered" not in kinds(w), "a live worker's step was taken over"
    assert drain.status == "unverified", (drain.status, drain.result)  # applied; no Prometheus to verify it
    assert cordons.count == 1 and evictions.count == len(pods), "every pod evicted once"
    assert w.cluster.get("Node", None, NODE)["spec"]["unschedulable"] is True


def test_a_worker_that_lost_its_lease_stops_before_its_next_request(world, orders, caplog):
    """A worker that hung past its lease (another replica recovered the step meanwhile) must not
    go on writing under the recovery: it stops before its next request."""
    w = world(orders, prometheus=False)
    pods = [p for p in w.cluster.list("Pod") if p["spec"].get("nodeName") == NODE]
    first = pods[0]["metadata"]
    hold = w.kube.hold("POST", f"/api/v1/namespaces/{first['namespace']}/pods/{first['name']}/eviction",
                       when="after_write", seconds=20)
    w.deliver()
    w.proposal("rollback-deployment")
    assert w.command(f"run INC-1 drain-node node={NODE}", BOB).status_code == 200
    w.click(w.proposal("drain-node"), "step_approve", ALICE)
    assert hold.arrived.wait(30), "the first eviction never came"
    with unit_of_work(w.bot.runtime.factory) as session:  # what `store.claim_lapsed` does for a recovery
        session.execute(update(Proposal).where(Proposal.runbook_id == "drain-node")
                        .values(lease_owner="replica-2:recovering"))
    hold.release()
    eventually(lambda: "its lease was lost" in caplog.text, timeout=30)
    assert len([m for m in w.writes() if m.subresource == "eviction"]) == 1, "no request after the lease was lost"
    assert drain_of(w).status == "running", "the recovery decides what became of it"
