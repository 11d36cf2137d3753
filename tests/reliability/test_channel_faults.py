"""Channel faults: the channel's API answering 500, timing out, or 429 with and
without retry headers. Deliveries are retried with exponential backoff and jitter, never marked
applied on a failed read, dead only after the configured attempts, and replayable — one, or a
channel's failed/dead deliveries in a time window."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from sqlalchemy import update

from core.clock import utcnow
from core.models import StoredDelivery
from core.worker import backoff
from tests.conftest import BC_STORE

from .live import Stack

MAX_ATTEMPTS = 4
BASE, CAP = 10.0, 60.0


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAX_ATTEMPTS": MAX_ATTEMPTS, "RETRY_BASE_SECONDS": BASE,
            "RETRY_MAX_SECONDS": CAP}


@pytest.fixture(autouse=True)
def fresh_pacer():
    """The BigCommerce client remembers rate limits per store, process-wide: start clean and
    leave clean."""
    from plugins.bigcommerce.client import PACER
    PACER._blocked_until.clear()
    yield PACER
    PACER._blocked_until.clear()


def _delivery(app, delivery_id) -> StoredDelivery:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.get(StoredDelivery, delivery_id)


def _make_due(app, worker=None) -> None:
    """Fast-forward: every waiting delivery is due now (instead of sleeping through backoff)."""
    with app.extensions["orderhooks.db"].session() as session:
        session.execute(update(StoredDelivery).where(StoredDelivery.state == "pending").values(
            next_attempt_at=utcnow() - timedelta(seconds=1)))
    if worker is not None:
        worker.blocked.clear()


def _unchanged(admin, order_id):
    detail = admin.get(f"/orders/{order_id}")
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert [h["event"] for h in detail["history"]] == ["created"], detail["history"]


def test_backoff_is_exponential_capped_and_jittered():
    for attempt in range(1, 10):
        ceiling = min(CAP, BASE * 2 ** (attempt - 1))
        samples = [backoff(attempt, BASE, CAP) for _ in range(200)]
        assert all(0.5 * ceiling <= s <= ceiling for s in samples)
        assert len({round(s, 6) for s in samples}) > 150  # jitter: retries do not synchronise


def test_500s_are_retried_with_backoff_become_dead_after_max_attempts_then_replay(
        bc, admin, make_order, worker, api, app):
    channel = bc.create()
    order = make_order(channel["id"], 300)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/300", status=500, json={"error": "boom"})
    delivery_id = bc.send(order_id=300).get_json()["delivery_id"]

    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = utcnow()
        assert worker.run_until_idle() == 1
        row = _delivery(app, delivery_id)
        assert row.attempts == attempt
        assert row.outcome != "applied"
        _unchanged(admin, order["id"])
        if attempt < MAX_ATTEMPTS:
            assert (row.state, row.outcome) == ("pending", "failed")
            assert "500" in row.reason
            delay = (row.next_attempt_at - before).total_seconds()
            ceiling = min(CAP, BASE * 2 ** (attempt - 1))
            assert 0.5 * ceiling - 1 <= delay <= ceiling + 1, (attempt, delay)
            assert worker.run_until_idle() == 0  # not due before its backoff
            _make_due(app, worker)
    assert (row.state, row.outcome) == ("done", "dead")
    assert f"dead after {MAX_ATTEMPTS} attempts" in row.reason
    _make_due(app, worker)
    assert worker.run_until_idle() == 0  # dead stays dead

    bc.order(300, status_id=5)  # the channel recovers
    replayed = admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
    assert (replayed["state"], replayed["attempts"]) == ("pending", 0)
    assert worker.run_until_idle() == 1
    assert _delivery(app, delivery_id).outcome == "applied"
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "CANCELLED"
    assert [(h["event"], h["delivery_id"]) for h in detail["history"]] == [
        ("created", None), ("cancelled", delivery_id)]


def test_a_failed_shipments_read_marks_nothing_applied(bc, admin, make_order, worker, api, app):
    """The order reads as Shipped but its shipments cannot be read: no half-applied fulfilment."""
    channel = bc.create()
    order = make_order(channel["id"], 301)
    bc.order(301, status_id=2, items_shipped=2)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/301/shipments", status=503, json={})
    delivery_id = bc.send(order_id=301, new_status=2).get_json()["delivery_id"]
    worker.run_until_idle()
    row = _delivery(app, delivery_id)
    assert (row.state, row.outcome, row.attempts) == ("pending", "failed", 1)
    _unchanged(admin, order["id"])
    assert admin.get(f"/orders/{order['id']}")["shipments"] == []


def test_timeouts_are_failed_attempts(bc, admin, make_order, worker, api, app):
    channel = bc.create()
    order = make_order(channel["id"], 302)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/302",
               body=requests.exceptions.ReadTimeout("read timed out"))
    delivery_id = bc.send(order_id=302).get_json()["delivery_id"]
    worker.run_until_idle()
    row = _delivery(app, delivery_id)
    assert (row.state, row.outcome, row.attempts) == ("pending", "failed", 1)
    assert "ReadTimeout" in row.reason
    _unchanged(admin, order["id"])


def test_a_real_hung_api_times_out_after_the_configured_seconds(database_url, tmp_path):
    """A stand-in on a real socket that answers after 10 s, ORDERHOOKS_HTTP_TIMEOUT_SECONDS=0.5:
    the worker gives up after about half a second, and the attempt counts as failed."""
    import time

    from core import create_app
    from core.testing import ADMIN_TOKEN, PUBLIC_BASE_URL, SECRET_KEY
    from core.worker import Worker
    with Stack(database_url, tmp_path / "live") as stack:
        stack.start_standin(default_status=5)
        app = create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN,
                          "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "SECRET_KEY": SECRET_KEY,
                          "ALLOWED_API_BASE_URLS": stack.standin_url,
                          "HTTP_TIMEOUT_SECONDS": 0.5, "CHANNEL_CACHE_SECONDS": 0,
                          "LOG_LEVEL": "WARNING"})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        channel = client.post("/api/v1/channels", headers=headers, json={
            "type": "bigcommerce", "name": "hung", "credentials": {
                "store_hash": "hung", "access_token": "t", "api_base_url": stack.standin_url},
            "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]}).get_json()
        client.post("/api/v1/orders", headers=headers, json={
            "channel_id": channel["id"], "channel_order_id": "9", "status": "AWAITING_SHIPMENT"})
        from core.testing import channel_view
        from .live import delivery_body
        secret = channel_view(app, channel["id"]).webhook_secret
        answer = client.post(f"/webhooks/bigcommerce/{channel['id']}",
                             data=delivery_body("hung", 9)[0],
                             headers={"X-Orderhooks-Secret": secret})
        assert answer.status_code == 200
        stack.control("/_faults", {"delay": 10.0, "count": -1})
        started = time.monotonic()
        Worker(app, name="w").run_once()
        assert time.monotonic() - started < 8  # not the 10 s the API takes
        row = _delivery(app, answer.get_json()["delivery_id"])
        assert (row.state, row.outcome, row.attempts) == ("pending", "failed", 1)
        assert "Timeout" in row.reason
        app.extensions["orderhooks.db"].dispose()


def test_429_with_retry_after_is_throttled_not_failed(bc, admin, make_order, worker, api, app,
                                                     fresh_pacer):
    """Being rate limited never counts as an attempt: after more 429s than MAX_ATTEMPTS the
    delivery is still waiting (not dead), rescheduled after X-Retry-After, and applies once the
    channel lets us in."""
    channel = bc.create()
    order = make_order(channel["id"], 303)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/303", status=429,
               headers={"X-Retry-After": "120"}, json={"status": 429})
    delivery_id = bc.send(order_id=303).get_json()["delivery_id"]
    for _ in range(MAX_ATTEMPTS + 2):
        before = utcnow()
        worker.run_until_idle()
        row = _delivery(app, delivery_id)
        assert (row.state, row.attempts) == ("pending", 0)
        assert row.outcome is None and "throttled" in row.reason
        assert 100 <= (row.next_attempt_at - before).total_seconds() <= 125
        _unchanged(admin, order["id"])
        fresh_pacer._blocked_until.clear()
        _make_due(app, worker)
    bc.order(303, status_id=5)
    assert worker.run_until_idle() == 1
    assert _delivery(app, delivery_id).outcome == "applied"


def test_429_without_retry_headers_waits_and_reschedules(bc, admin, make_order, worker, api,
                                                         app, fresh_pacer):
    channel = bc.create()
    order = make_order(channel["id"], 304)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/304", status=429, json={"status": 429})
    delivery_id = bc.send(order_id=304).get_json()["delivery_id"]
    worker.run_until_idle()
    row = _delivery(app, delivery_id)
    assert (row.state, row.attempts, row.outcome) == ("pending", 0, None)
    assert "throttled" in row.reason and row.next_attempt_at > utcnow()
    _unchanged(admin, order["id"])
    calls = [c for c in api.calls if c.request.url.endswith("/v2/orders/304")]
    assert 1 <= len(calls) <= 4  # a few paced tries, not a tight loop
    fresh_pacer._blocked_until.clear()
    _make_due(app, worker)
    bc.order(304, status_id=5)
    assert worker.run_until_idle() == 1
    assert _delivery(app, delivery_id).outcome == "applied"


def test_replay_window_replays_failed_and_dead_deliveries_of_one_channel(
        bc, admin, make_order, worker, api, app, make_channel):
    channel = bc.create()
    for n in range(310, 316):
        make_order(channel["id"], n)
        api.upsert(responses.GET, f"{BC_STORE}/v2/orders/{n}", status=500, json={})
    ids = {n: bc.send(order_id=n).get_json()["delivery_id"] for n in range(310, 316)}
    worker.run_until_idle()  # all failed once
    with app.extensions["orderhooks.db"].session() as session:  # 312, 313: dead
        session.execute(update(StoredDelivery).where(StoredDelivery.id.in_([ids[312], ids[313]])).values(
            state="done", outcome="dead", attempts=MAX_ATTEMPTS))
        # 315 arrived long ago: outside the window
        session.execute(update(StoredDelivery).where(StoredDelivery.id == ids[315]).values(
            received_at=utcnow() - timedelta(days=3), state="done", outcome="dead"))
    for n in range(310, 316):
        bc.order(n, status_id=5)  # the channel recovers
    since = (utcnow() - timedelta(hours=1)).isoformat() + "Z"
    until = (utcnow() + timedelta(minutes=1)).isoformat() + "Z"

    answer = admin.post("/deliveries/replay", {"channel_id": channel["id"], "since": since,
                                               "until": until, "outcome": ["dead", "failed"]},
                        expect=202)
    assert sorted(answer["delivery_ids"]) == sorted(ids[n] for n in range(310, 315))
    assert answer["replayed"] == 5
    assert worker.run_until_idle() == 5
    outcomes = {n: _delivery(app, ids[n]).outcome for n in ids}
    assert outcomes == {310: "applied", 311: "applied", 312: "applied", 313: "applied",
                        314: "applied", 315: "dead"}
    again = admin.post("/deliveries/replay", {"channel_id": channel["id"], "since": since,
                                              "until": until}, expect=202)
    assert again["replayed"] == 0  # default outcomes: failed and dead — none left

    # refused politely
    admin.post("/deliveries/replay", {"channel_id": channel["id"], "since": until,
                                      "until": since}, expect=422)
    admin.post("/deliveries/replay", {"channel_id": 999, "since": since, "until": until},
               expect=422)
    admin.post("/deliveries/replay", {"channel_id": channel["id"], "since": since,
                                      "until": until, "outcome": ["bogus"]}, expect=422)
