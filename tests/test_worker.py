"""The worker: failures and backoff, dead deliveries, replay, expired claims, no double work."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses

from core.clock import utcnow
from core.models import StoredDelivery
from core.worker import Worker
from tests.conftest import BC_STORE

ORDER_URL = f"{BC_STORE}/v2/orders/250"


def row(app, delivery_id) -> StoredDelivery:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.get(StoredDelivery, delivery_id)


def order_calls(api, url=ORDER_URL):
    return sum(1 for c in api.calls if c.request.url.split("?")[0] == url)


def cancelled_in_history(admin, order_id):
    return [h["event"] for h in admin.get(f"/orders/{order_id}")["history"]].count("cancelled")


@pytest.fixture
def cancel_setup(bc, make_order):
    channel = bc.create()
    order = make_order(channel["id"], 250)
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
    return channel, order, delivery_id


@pytest.mark.parametrize("failure", ["500", "503", "connection", "bad_json"])
def test_channel_api_failure_is_retried_with_backoff(bc, api, admin, worker, app, cancel_setup,
                                                     failure):
    _channel, order, delivery_id = cancel_setup
    if failure == "connection":
        api.upsert(responses.GET, ORDER_URL, body=requests.ConnectionError("refused"))
    elif failure == "bad_json":
        api.upsert(responses.GET, ORDER_URL, body="<html>oops</html>", status=200)
    else:
        api.upsert(responses.GET, ORDER_URL, status=int(failure), json={"title": "Server Error"})
    before = utcnow()
    assert worker.run_until_idle() == 1  # not retried at once
    stored = row(app, delivery_id)
    assert stored.outcome == "failed" and stored.state == "pending"
    assert stored.attempts == 1
    assert stored.claimed_by is None
    # RETRY_BASE_SECONDS is 10 in tests: the first retry waits 5–10 s (jitter)
    assert before + timedelta(seconds=4) <= stored.next_attempt_at <= utcnow() + \
        timedelta(seconds=10)
    assert stored.reason.startswith("attempt 1 failed")
    if failure in ("500", "503"):
        assert failure in stored.reason
    assert admin.get(f"/orders/{order['id']}")["status"] == "AWAITING_SHIPMENT"
    listed = admin.get("/deliveries", query_string={"outcome": "failed"})
    assert [d["id"] for d in listed] == [delivery_id]


def test_backoff_grows_and_is_capped():
    from core.worker import backoff
    for attempt in range(1, 12):
        delay = backoff(attempt, 30.0, 3600.0)
        expected = min(3600.0, 30.0 * 2 ** (attempt - 1))
        assert expected * 0.5 <= delay <= expected


class TestDead:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "MAX_ATTEMPTS": 3, "RETRY_BASE_SECONDS": 0.0}

    def test_dead_after_max_attempts_then_replayed_once_the_api_recovers(
            self, bc, api, admin, worker, app, cancel_setup):
        _channel, order, delivery_id = cancel_setup
        api.upsert(responses.GET, ORDER_URL, status=500, json={"title": "down"})
        worker.run_until_idle()
        stored = row(app, delivery_id)
        assert stored.outcome == "dead" and stored.state == "done"
        assert stored.attempts == 3
        assert order_calls(api) == 3
        assert stored.reason.startswith("dead after 3 attempts")
        assert "500" in stored.reason
        assert [d["id"] for d in admin.get("/deliveries", query_string={"outcome": "dead"})] == \
            [delivery_id]
        assert worker.run_until_idle() == 0  # dead stays dead

        bc.order(250, status_id=5)  # the API recovers
        replayed = admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
        assert replayed["state"] == "pending" and replayed["attempts"] == 0
        assert replayed["outcome"] is None and "dead" in replayed["reason"]
        assert worker.run_until_idle() == 1
        delivery = admin.get(f"/deliveries/{delivery_id}")
        assert delivery["outcome"] == "applied" and delivery["state"] == "done"
        assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"


def test_replay_of_unknown_delivery_is_404(admin):
    body = admin.post("/deliveries/999/replay", expect=404)
    assert body["error"] and "999" in body["message"]


def test_replay_of_a_delivery_being_processed_is_409(bc, admin, worker, app, cancel_setup):
    _channel, _order, delivery_id = cancel_setup
    assert worker.claim() == [delivery_id]
    body = admin.post(f"/deliveries/{delivery_id}/replay", expect=409)
    assert body["error"] and body["message"]
    assert row(app, delivery_id).claimed_by == worker.name


class TestReplayWindow:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "MAX_ATTEMPTS": 1}

    def test_replays_failed_and_dead_deliveries_in_the_window(self, bc, api, admin, make_order,
                                                              worker, app):
        channel = bc.create()
        for order_id in (250, 251, 252):
            make_order(channel["id"], order_id)
        api.upsert(responses.GET, ORDER_URL, status=500)             # 250: dead
        bc.order(251, status_id=5)                                    # 251: applied
        bc.order(252, status_id=11)                                   # 252: ignored
        ids = [bc.send(order_id=n).get_json()["delivery_id"] for n in (250, 251, 252)]
        worker.run_until_idle()
        assert [row(app, i).outcome for i in ids] == ["dead", "applied", "ignored"]

        window = {"channel_id": channel["id"],
                  "since": (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat(),
                  "until": (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()}
        empty = {**window, "since": (datetime.now(timezone.utc) + timedelta(minutes=1))
                 .isoformat()}
        assert admin.post("/deliveries/replay", empty, expect=202) == {
            "replayed": 0, "delivery_ids": [], "limit": 1000, "next": None}
        bc.order(250, status_id=5)
        result = admin.post("/deliveries/replay", window, expect=202)
        assert result == {"replayed": 1, "delivery_ids": [ids[0]], "limit": 1000, "next": None}
        assert row(app, ids[1]).state == "done"  # the applied one was left alone
        worker.run_until_idle()
        assert row(app, ids[0]).outcome == "applied"

        result = admin.post("/deliveries/replay", {**window, "outcome": ["ignored"]},
                            expect=202)
        assert result["delivery_ids"] == [ids[2]]

    def test_bad_windows_are_422(self, bc, admin):
        channel = bc.create()
        now = datetime.now(timezone.utc)
        backwards = {"channel_id": channel["id"], "since": now.isoformat(),
                     "until": (now - timedelta(hours=1)).isoformat()}
        assert "until" in admin.post("/deliveries/replay", backwards, expect=422)["message"]
        unknown = {**backwards, "channel_id": 999, "until": now.isoformat()}
        assert "999" in admin.post("/deliveries/replay", unknown, expect=422)["message"]
        bad_outcome = {**unknown, "channel_id": channel["id"], "outcome": ["pending"]}
        assert admin.post("/deliveries/replay", bad_outcome, expect=422)["error"]


def test_expired_claim_is_reclaimed_by_another_worker(bc, api, admin, app, cancel_setup):
    _channel, order, delivery_id = cancel_setup
    bc.order(250, status_id=5)
    crashed, rescuer = Worker(app, name="crashed"), Worker(app, name="rescuer")
    assert crashed.claim() == [delivery_id]
    assert rescuer.claim() == []  # the lease is still valid
    with app.extensions["orderhooks.db"].session() as session:  # ...until it expires
        session.get(StoredDelivery, delivery_id).claimed_until = utcnow() - timedelta(seconds=1)
    assert rescuer.run_until_idle() == 1
    assert row(app, delivery_id).outcome == "applied"
    # the crashed worker coming back does nothing more
    assert crashed.process(delivery_id) is None
    assert cancelled_in_history(admin, order["id"]) == 1
    assert order_calls(api) == 1


def test_delivery_claimed_by_another_worker_is_not_processed_twice(bc, api, admin, app,
                                                                   cancel_setup):
    _channel, order, delivery_id = cancel_setup
    bc.order(250, status_id=5)
    first, second = Worker(app, name="first"), Worker(app, name="second")
    assert first.claim() == [delivery_id]
    assert second.run_until_idle() == 0
    assert second.process(delivery_id) is None
    assert order_calls(api) == 0
    assert first.process(delivery_id) == "applied"
    assert second.run_until_idle() == 0
    assert cancelled_in_history(admin, order["id"]) == 1
    assert order_calls(api) == 1


def test_claim_lost_mid_translation_is_not_recorded_twice(bc, api, admin, app, cancel_setup,
                                                          monkeypatch):
    """A slow worker's lease expires while it calls the API; another takes over and finishes.
    The slow one then records nothing."""
    _channel, order, delivery_id = cancel_setup
    bc.order(250, status_id=5)
    slow, fast = Worker(app, name="slow"), Worker(app, name="fast")
    adapter = app.extensions["orderhooks.channel_types"].get("bigcommerce")
    original = adapter.translate_many
    taken_over = []

    def translate_many(deliveries, channel):
        result = original(deliveries, channel)
        if not taken_over:
            taken_over.append(True)
            with app.extensions["orderhooks.db"].session() as session:
                session.get(StoredDelivery, delivery_id).claimed_until = utcnow() - \
                    timedelta(seconds=1)
            assert fast.run_until_idle() == 1
        return result

    monkeypatch.setattr(adapter, "translate_many", translate_many)
    assert slow.claim() == [delivery_id]
    assert slow.process(delivery_id) is None
    stored = row(app, delivery_id)
    assert stored.outcome == "applied" and stored.state == "done" and stored.claimed_by is None
    assert cancelled_in_history(admin, order["id"]) == 1


def test_concurrent_claims_never_overlap(bc, app, make_order):
    bc.create()
    ids = {bc.send(order_id=n).get_json()["delivery_id"] for n in range(1000, 1020)}
    workers = [Worker(app, name=f"w{n}") for n in range(4)]
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(len(workers))

    def claim(worker):
        barrier.wait()
        claimed[worker.name] = worker.claim(limit=6)

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [i for got in claimed.values() for i in got]
    assert len(every) == len(set(every)) == 20
    assert set(every) == ids
    for name, got in claimed.items():
        assert all(row(app, i).claimed_by == name for i in got)


def test_unknown_plugin_type_fails_instead_of_crashing(bc, admin, app, worker, cancel_setup):
    _channel, _order, delivery_id = cancel_setup
    with app.extensions["orderhooks.db"].session() as session:
        session.get(StoredDelivery, delivery_id).channel_type = "gone"
    worker.run_until_idle()
    stored = row(app, delivery_id)
    assert stored.outcome == "failed" and "gone" in stored.reason


def test_delivery_for_a_channel_deactivated_meanwhile_is_ignored(bc, api, admin, worker, app,
                                                                 cancel_setup):
    channel, order, delivery_id = cancel_setup
    bc.order(250, status_id=5)
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    worker.run_until_idle()
    stored = row(app, delivery_id)
    assert stored.outcome == "ignored" and "inactive" in stored.reason
    assert order_calls(api) == 0
    assert admin.get(f"/orders/{order['id']}")["status"] == "AWAITING_SHIPMENT"


def _settings_of_claims_and_batches(db, seen: dict):
    """Listeners that note, for the claim's UPDATE and the batch's UPDATE of a delivery, the
    synchronous_commit of the transaction it runs in (asked on its own connection)."""
    from sqlalchemy import event

    def note(kind):
        def before(conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith("UPDATE DELIVERIES"):
                raw = conn.connection.driver_connection
                seen.setdefault(kind, set()).add(
                    raw.execute("SHOW synchronous_commit").fetchone()[0])
        return before

    listeners = [(db.lease_engine, note("claim")), (db.engine, note("batch"))]
    for engine, listener in listeners:
        event.listen(engine, "before_cursor_execute", listener)
    return listeners


def test_claims_commit_without_the_wal_flush_and_batches_with_it(bc, app, cancel_setup):
    """A claim is a lease (lost in a crash, the delivery is claimable again): its commit does
    not wait for the WAL flush. The batch that writes the change and its event does."""
    from sqlalchemy import event
    db = app.extensions["orderhooks.db"]
    if db.is_sqlite:
        pytest.skip("synchronous_commit is PostgreSQL's")
    bc.order(250, status_id=5)
    seen: dict = {}
    listeners = _settings_of_claims_and_batches(db, seen)
    try:
        assert Worker(app, name="w").run_until_idle() == 1
    finally:
        for engine, listener in listeners:
            event.remove(engine, "before_cursor_execute", listener)
    assert seen == {"claim": {"off"}, "batch": {"on"}}


def test_a_claim_lost_before_its_commit_leaves_the_delivery_claimable(bc, api, admin, app,
                                                                      cancel_setup):
    """The claim's transaction dies before its commit (as when the database loses a commit
    that did not wait for the WAL flush): the delivery is PENDING, unclaimed, and the next
    worker takes it and applies it once."""
    from sqlalchemy import event
    _channel, order, delivery_id = cancel_setup
    bc.order(250, status_id=5)
    db = app.extensions["orderhooks.db"]

    def lost(_conn):
        raise ConnectionError("the database went away before the claim's commit")

    event.listen(db.lease_engine, "commit", lost)
    try:
        with pytest.raises(ConnectionError):
            Worker(app, name="lost").run_once()
    finally:
        event.remove(db.lease_engine, "commit", lost)
    stored = row(app, delivery_id)
    assert stored.state == "pending" and stored.claimed_by is None
    assert stored.attempts == 0
    assert Worker(app, name="next").run_until_idle() == 1
    assert row(app, delivery_id).outcome == "applied"
    assert cancelled_in_history(admin, order["id"]) == 1


def test_a_batch_writes_events_and_history_in_the_order_of_its_deliveries(bc, app, admin,
                                                                          make_order):
    """The batch holds its history lines and events back and writes them a table at a time:
    ids still follow the order they were made in, and every row is there."""
    from sqlalchemy import select
    from core.models import Event, OrderChange
    channel = bc.create()
    orders = {n: make_order(channel["id"], n) for n in (301, 302, 303, 304)}
    for n in orders:
        bc.order(n, status_id=5)
    deliveries = [bc.send(order_id=n).get_json()["delivery_id"] for n in orders]
    assert Worker(app, name="w").run_until_idle() == len(deliveries)
    db = app.extensions["orderhooks.db"]
    with db.Session() as session:
        written = session.execute(select(Event.id, Event.position, Event.data).where(
            Event.type == "order.cancelled").order_by(Event.id)).all()
        lines = session.execute(select(OrderChange.id, OrderChange.delivery_id).where(
            OrderChange.event == "cancelled").order_by(OrderChange.id)).all()
    assert [e.data["delivery_id"] for e in written] == deliveries
    assert [e.position for e in written] == sorted(e.position for e in written)
    assert [line.delivery_id for line in lines] == deliveries
    for n, order in orders.items():
        assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"


def test_held_inserts_are_written_before_the_session_reads(app):
    """A session that defers inserts sees its held rows in any query, and a rollback drops
    them."""
    from sqlalchemy import func, select
    from core import events
    from core.db import defer_inserts
    from core.models import Event
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        defer_inserts(session)
        before = session.scalar(select(func.count()).select_from(Event))
        events.emit(session, "order.cancelled", {"n": 1})
        events.emit(session, "order.cancelled", {"n": 2})
        assert session.scalar(select(func.count()).select_from(Event)) == before + 2
        assert [e.data["n"] for e in session.scalars(
            select(Event).where(Event.id > 0).order_by(Event.id))][-2:] == [1, 2]
    with db.Session() as session:
        session.begin()
        defer_inserts(session)
        events.emit(session, "order.cancelled", {"n": 3})
        session.rollback()
        # nothing held is left to write before this query or at this commit
        assert session.scalar(select(func.count()).select_from(Event)) == before + 2
        session.commit()
    with db.Session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == before + 2
    # a savepoint rolled back drops the rows held since it began, not those held before it
    with db.session() as session:
        defer_inserts(session)
        events.emit(session, "order.cancelled", {"n": 4})
        savepoint = session.begin_nested()
        events.emit(session, "order.cancelled", {"n": 5})
        savepoint.rollback()
    with db.Session() as session:
        assert [e.data["n"] for e in session.scalars(
            select(Event).order_by(Event.id))][-3:] == [1, 2, 4]
