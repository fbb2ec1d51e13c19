import threading
from datetime import timedelta

import pytest

from bot.alerts import deliveries
from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import RawDelivery
from tests.incidents.helpers import NOW


@pytest.fixture
def factory(engine):
    return make_session_factory(engine)


def store(factory, count):
    with unit_of_work(factory) as session:
        return [deliveries.store(session, "alertmanager", b"{}", {"Authorization": "Bearer x",
                                 "Content-Type": "application/json"}, NOW).id for _ in range(count)]


def test_credentials_are_never_stored_with_a_delivery(factory):
    (delivery_id,) = store(factory, 1)
    with unit_of_work(factory) as session:
        headers = session.get(RawDelivery, delivery_id).headers
    assert headers == {"content-type": "application/json"}


def test_concurrent_claimers_share_the_work_without_overlap(factory):
    ids = store(factory, 40)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(name):
        barrier.wait()
        mine = []
        while True:
            with unit_of_work(factory) as session:
                batch = deliveries.claim(session, name, NOW, timedelta(seconds=60), 5)
            if not batch:
                break
            mine += [delivery.id for delivery in batch]
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [delivery for mine in claimed.values() for delivery in mine]
    assert sorted(everything) == ids, "every delivery claimed exactly once"


def test_a_lapsed_lease_is_claimed_again_and_failures_stop_after_max_attempts(factory):
    (delivery_id,) = store(factory, 1)
    lease = timedelta(seconds=60)
    with unit_of_work(factory) as session:
        assert [delivery.id for delivery in deliveries.claim(session, "crashed", NOW, lease, 5)] == [delivery_id]
    with unit_of_work(factory) as session:
        assert deliveries.claim(session, "other", NOW + timedelta(seconds=30), lease, 5) == []
    now = NOW + timedelta(seconds=61)
    for _attempt in range(2, deliveries.MAX_ATTEMPTS + 1):
        with unit_of_work(factory) as session:
            assert [delivery.id for delivery in deliveries.claim(session, "other", now, lease, 5)] == [delivery_id]
        with unit_of_work(factory) as session:
            status = deliveries.mark_failed(session, delivery_id, "other", "boom", now, timedelta(seconds=1))
        now += timedelta(seconds=2)
    assert status == "failed"
    with unit_of_work(factory) as session:
        assert deliveries.claim(session, "other", now + timedelta(days=1), lease, 5) == []
        assert session.get(RawDelivery, delivery_id).attempts == deliveries.MAX_ATTEMPTS
