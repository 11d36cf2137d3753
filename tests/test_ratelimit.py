"""BigCommerce rate limits: 429 + X-Retry-After, X-Rate-Limit-* pacing, long waits rescheduled.
Being throttled never fails a delivery. A fake clock stands in for time in the client: no real
sleeps."""
from datetime import timedelta

import pytest
import responses

from core.clock import utcnow
from core.models import StoredDelivery
from core.worker import Worker
from plugins.bigcommerce import client as bc_client
from tests.conftest import BC_STORE


class FakeClock:
    """``time`` as plugins.bigcommerce.client sees it: sleeping advances the clock."""

    def __init__(self):
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(round(seconds, 3))
        self.now += seconds

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bc_client, "time", fake)
    bc_client.PACER.reset()
    yield fake
    bc_client.PACER.reset()


ORDER = {"id": 250, "status_id": 5, "status": "Cancelled", "items_total": 1, "items_shipped": 0,
         "is_deleted": False}


def order_url(order_id=250):
    return f"{BC_STORE}/v2/orders/{order_id}"


def calls_to(api, url):
    return sum(1 for c in api.calls if c.request.url.split("?")[0] == url)


def row(app, delivery_id) -> StoredDelivery:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.get(StoredDelivery, delivery_id)


def setup_cancel(bc, make_order):
    channel = bc.create()
    order = make_order(channel["id"], 250)
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
    return order, delivery_id


def test_429_with_retry_after_then_200_is_applied(bc, api, admin, make_order, worker, app, clock):
    order, delivery_id = setup_cancel(bc, make_order)
    wait = bc_client.MAX_INLINE_WAIT / 2
    api.add(responses.GET, order_url(), status=429, json={"title": "Too many requests"},
            headers={"X-Retry-After": str(wait)})
    api.add(responses.GET, order_url(), json=ORDER)
    worker.run_until_idle()
    assert calls_to(api, order_url()) == 2
    assert clock.sleeps == [wait]
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "applied" and delivery["attempts"] == 0
    assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"


def test_429_without_headers_waits_a_default_second_and_retries(bc, api, admin, make_order,
                                                                 worker, clock):
    order, delivery_id = setup_cancel(bc, make_order)
    api.add(responses.GET, order_url(), status=429, body="")
    api.add(responses.GET, order_url(), json=ORDER)
    worker.run_until_idle()
    assert clock.sleeps == [1.0]
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "applied" and delivery["attempts"] == 0
    assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"


def test_low_requests_left_makes_the_next_call_wait(bc, api, admin, make_order, worker, clock):
    channel = bc.create()
    order = make_order(channel["id"], 251)
    api.add(responses.GET, order_url(251), json={**ORDER, "id": 251, "status_id": 2},
            headers={"X-Rate-Limit-Requests-Left": "1", "X-Rate-Limit-Time-Reset-Ms": "750",
                     "X-Rate-Limit-Requests-Quota": "150"})
    api.add(responses.GET, f"{order_url(251)}/shipments", json=[{"id": 1, "tracking_number": "T"}])
    bc.send(order_id=251, new_status=2)
    worker.run_until_idle()
    assert clock.sleeps == [0.75]  # the shipments read waited for the window to reset
    assert admin.get(f"/orders/{order['id']}")["status"] == "SHIPPED"


def test_plenty_of_requests_left_means_no_wait(bc, api, admin, make_order, worker, clock):
    channel = bc.create()
    make_order(channel["id"], 252)
    api.add(responses.GET, order_url(252), json={**ORDER, "id": 252, "status_id": 2},
            headers={"X-Rate-Limit-Requests-Left": "120", "X-Rate-Limit-Time-Reset-Ms": "750"})
    api.add(responses.GET, f"{order_url(252)}/shipments", status=204, body=b"")
    bc.send(order_id=252, new_status=2)
    worker.run_until_idle()
    assert clock.sleeps == []
    assert admin.get("/deliveries")[0]["outcome"] == "applied"


def test_long_retry_after_reschedules_without_failing(bc, api, admin, make_order, worker, app,
                                                      clock):
    order, delivery_id = setup_cancel(bc, make_order)
    api.add(responses.GET, order_url(), status=429, headers={"X-Retry-After": "30"})
    api.add(responses.GET, order_url(), json=ORDER)
    before = utcnow()
    worker.run_until_idle()
    assert clock.sleeps == []  # not slept in-process
    stored = row(app, delivery_id)
    assert stored.state == "pending" and stored.attempts == 0
    assert stored.outcome is None and "throttled" in stored.reason
    assert before + timedelta(seconds=25) <= stored.next_attempt_at <= utcnow() + \
        timedelta(seconds=31)
    assert admin.get(f"/orders/{order['id']}")["status"] == "AWAITING_SHIPMENT"
    assert admin.get("/deliveries", query_string={"outcome": "pending"})[0]["id"] == delivery_id
    assert admin.get("/deliveries", query_string={"outcome": "failed"}) == []

    # Time passes: the window is over and the delivery is due again.
    clock.advance(31)
    with app.extensions["orderhooks.db"].session() as session:
        session.get(StoredDelivery, delivery_id).next_attempt_at = utcnow() - timedelta(seconds=1)
    later = Worker(app, name="later-worker")
    assert later.run_until_idle() == 1
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "applied" and delivery["attempts"] == 0
    assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"


def test_429_every_time_reschedules_never_fails(bc, api, admin, make_order, worker, app, clock):
    _order, delivery_id = setup_cancel(bc, make_order)
    api.add(responses.GET, order_url(), status=429, headers={"X-Retry-After": "0.2"})
    for _ in range(5):
        worker.run_until_idle()
        stored = row(app, delivery_id)
        assert stored.state == "pending" and stored.outcome is None and stored.attempts == 0
        with app.extensions["orderhooks.db"].session() as session:
            session.get(StoredDelivery, delivery_id).next_attempt_at = utcnow() - timedelta(seconds=1)
        worker = Worker(app, name=f"w{_}")
    assert calls_to(api, order_url()) >= 5


@pytest.mark.parametrize("retry_after", ["1e12", "inf", "-5", "nan", "soon"])
def test_garbled_retry_after_never_fails_or_breaks_the_worker(bc, api, admin, make_order, worker,
                                                              app, clock, retry_after):
    _order, delivery_id = setup_cancel(bc, make_order)
    api.add(responses.GET, order_url(), status=429, headers={"X-Retry-After": retry_after})
    api.add(responses.GET, order_url(), json=ORDER)
    worker.run_until_idle()
    stored = row(app, delivery_id)
    assert stored.outcome in (None, "applied") and stored.attempts == 0
    if stored.outcome is None:
        assert stored.state == "pending"
        assert stored.next_attempt_at <= utcnow() + timedelta(hours=1, minutes=1)
    assert stored.claimed_by is None


def test_rate_limited_hooks_api_still_subscribes(bc, api, app, clock):
    answers = iter([(429, {"X-Retry-After": "0.5"}, "")])

    def flaky_list(request):
        return next(answers, None) or bc._list_hooks(request)

    api.replace(responses.CallbackResponse(responses.GET, f"{BC_STORE}/v3/hooks",
                                           callback=flaky_list))
    channel = bc.create()
    assert clock.sleeps == [0.5]
    assert len(bc.hooks) == 1
    assert [s["status"] for s in channel["subscriptions"]] == ["active"]


def test_a_throttled_delivery_waits_from_when_it_was_throttled(monkeypatch):
    """A batch's other reads may take a while after one of them was throttled: the wait the
    API asked for counts from the throttling, so the delivery is due when the window resets,
    not that much later."""
    from core import errors

    fake = FakeClock()
    monkeypatch.setattr(errors, "time", fake)
    throttled = errors.RetryLater("store rate limited", delay=3.0)
    fake.advance(1.25)
    assert throttled.remaining() == 1.75
    fake.advance(5)
    assert throttled.remaining() == 0.0


def test_an_idle_worker_wakes_when_a_stores_wait_ends(worker, app):
    """Nothing due: the worker waits for the bell no longer than the idle time, and no longer
    than the first store's API wait, so the store's next window is used from its start."""
    import time

    idle = app.config["WORKER_IDLE_SECONDS"]
    assert worker.idle_wait() == idle
    worker.blocked[1] = time.monotonic() - 1  # over
    worker.blocked[2] = time.monotonic() + idle * 10
    assert worker.idle_wait() == idle
    worker.blocked[3] = time.monotonic() + idle / 5
    assert 0 < worker.idle_wait() <= idle / 5
