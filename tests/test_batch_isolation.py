"""One delivery can never stall the others: whatever fails while a batch is translated or
recorded — a value the database refuses at commit, a plugin that raises for the whole batch — is
narrowed to the delivery that caused it, which is retried with backoff and ends dead; the rest
of the batch (every channel's) is recorded. Runs on SQLite and, with
ORDERHOOKS_TEST_DATABASE_URL, on PostgreSQL."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from core import intents, orders
from core.models import (CHANNEL_ORDER_ID_LENGTH, StoredDelivery, Order, OrderChange, PendingIntent,
                         utcnow)
from core.testing import test_database_url
from tests.shopify_helpers import ORDER_ID, cancelled_order
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
from tests.test_worker import row

LONG_ID = "1" * (CHANNEL_ORDER_ID_LENGTH + 1)  # 129 digits, sent as a string


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAX_ATTEMPTS": 3}


@pytest.fixture
def two_channels(bc, shopify, make_order):
    """A BigCommerce and a Shopify channel, each with orders awaiting shipment."""
    big = bc.create()
    shop = shopify.create()
    for order_id in (250, 251):
        make_order(big["id"], order_id)
        bc.order(order_id, status_id=5)  # cancelled in BigCommerce
    make_order(shop["id"], ORDER_ID)
    return big, shop


def _status(admin, channel_id, channel_order_id) -> str:
    found = admin.get(f"/orders?channel_id={channel_id}&channel_order_id={channel_order_id}")
    return found[0]["status"]


def _make_due(app, delivery_id) -> None:
    with app.extensions["orderhooks.db"].session() as session:
        session.execute(update(StoredDelivery).where(StoredDelivery.id == delivery_id)
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_a_129_character_order_id_is_refused_at_intake_and_never_stalls_a_batch(
        app, admin, bc, shopify, two_channels, worker):
    big, shop = two_channels
    # The captured attack: an authentic Shopify delivery naming an order id of 129 characters
    # (the tables hold 128). Its id is not a Shopify order id, so the intake refuses it.
    with app.extensions["orderhooks.db"].Session() as session:
        before = session.query(StoredDelivery).count()
    refused = shopify.send("orders/cancelled", cancelled_order(order_id=LONG_ID))
    assert refused.status_code == 400, refused.get_json()
    assert "orders/cancelled" in refused.get_json()["message"]
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.query(StoredDelivery).count() == before

    # A row stored before that check (an older version's intake, a restored database) is held
    # to the same rule by the worker: ignored with the reason, in one batch with genuine
    # deliveries of both channels, which are applied.
    stored = shopify.send("orders/cancelled", cancelled_order(order_id=ORDER_ID + 7))
    bad_id = stored.get_json()["delivery_id"]
    with app.extensions["orderhooks.db"].session() as session:
        session.execute(update(StoredDelivery).where(StoredDelivery.id == bad_id).values(
            body=json.dumps(cancelled_order(order_id=LONG_ID)).encode()))
    good_ids = [bc.send(order_id=250).get_json()["delivery_id"],
                shopify.send("orders/cancelled", cancelled_order()).get_json()["delivery_id"]]
    assert worker.run_once() == 3  # one batch holds all three
    assert worker.run_once() == 0  # and nothing comes back: no stall, no loop
    ignored = row(app, bad_id)
    assert (ignored.state, ignored.outcome) == ("done", "ignored")
    assert "not a Shopify order id" in ignored.reason
    assert [row(app, i).outcome for i in good_ids] == ["applied", "applied"]
    assert _status(admin, big["id"], 250) == "CANCELLED"
    assert _status(admin, shop["id"], ORDER_ID) == "CANCELLED"
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.query(PendingIntent).count() == 0

    # Replaying it brings back no stall: ignored again, and the next deliveries go through.
    admin.post(f"/deliveries/{bad_id}/replay", expect=202)
    later = bc.send(order_id=251).get_json()["delivery_id"]
    assert worker.run_until_idle() == 2
    assert row(app, bad_id).outcome == "ignored"
    assert row(app, later).outcome == "applied"


def test_an_intent_naming_a_129_character_order_id_ends_dead_at_once():
    """Third-party plugins build intents too: the id rule is the intent's own."""
    with pytest.raises(intents.InvalidIntent, match="129 characters long"):
        intents.Cancel(channel_order_id=LONG_ID)


def _poison_commit(monkeypatch, poisoned: str) -> None:
    """Applying an intent for order ``poisoned`` leaves behind a row the database refuses only
    when the transaction is flushed or committed (an order history line without its order):
    a failure outside the code that applies any one delivery."""
    real = orders.apply_intent

    def apply_intent(session, channel, intent, **kw):
        if str(intent.channel_order_id) == poisoned:
            session.add(OrderChange(order_id=None, event="created", message="refused"))
        return real(session, channel, intent, **kw)

    monkeypatch.setattr(orders, "apply_intent", apply_intent)


def test_a_commit_failure_is_narrowed_retried_with_backoff_then_dead(
        app, admin, bc, shopify, two_channels, worker, monkeypatch):
    big, shop = two_channels
    _poison_commit(monkeypatch, "251")
    poisoned = bc.send(order_id=251).get_json()["delivery_id"]
    good_ids = [bc.send(order_id=250).get_json()["delivery_id"],
                shopify.send("orders/cancelled", cancelled_order()).get_json()["delivery_id"]]

    assert worker.run_once() == 3
    failed = row(app, poisoned)
    assert (failed.state, failed.outcome, failed.attempts) == ("pending", "failed", 1)
    assert failed.next_attempt_at > utcnow() + timedelta(seconds=4)  # backoff (base 10 s)
    assert "order_id" in failed.reason and "INSERT" not in failed.reason  # the driver's words
    assert "parameters" not in failed.reason  # never the statement or its values
    assert [row(app, i).outcome for i in good_ids] == ["applied", "applied"]
    assert _status(admin, big["id"], 250) == "CANCELLED"
    assert _status(admin, shop["id"], ORDER_ID) == "CANCELLED"
    assert _status(admin, big["id"], 251) == "AWAITING_SHIPMENT"  # rolled back whole
    assert worker.run_once() == 0  # not due: the worker is free for everything else

    for attempt in (2, 3):  # ORDERHOOKS_MAX_ATTEMPTS = 3
        _make_due(app, poisoned)
        other = bc.send(order_id=250, created_at=1561479335 + attempt).get_json()["delivery_id"]
        assert worker.run_once() == 2
        assert row(app, other).outcome == "ignored"  # already cancelled: recorded all the same
        assert row(app, poisoned).attempts == attempt
    dead = row(app, poisoned)
    assert (dead.state, dead.outcome) == ("done", "dead")
    assert dead.reason.startswith("dead after 3 attempts") and "order_id" in dead.reason

    # Replayed while the fault is still there: it fails again on its own, nothing else stalls.
    admin.post(f"/deliveries/{poisoned}/replay", expect=202)
    fresh = shopify.send("orders/cancelled", cancelled_order(note="again"))  # a new body: a new event
    assert worker.run_once() == 2
    assert row(app, poisoned).outcome == "failed"
    assert row(app, fresh.get_json()["delivery_id"]).outcome == "ignored"


@pytest.mark.skipif(test_database_url() is None,
                    reason="SQLite keeps over-long text: only PostgreSQL refuses it")
def test_postgresql_refusing_a_value_at_commit_stalls_nothing(
        app, admin, bc, shopify, two_channels, worker, monkeypatch):
    """The check in the intents taken away, the 129-character id reaches PostgreSQL, which
    refuses it at commit (varchar(128) of pending_intents): still narrowed to its delivery."""
    big, shop = two_channels
    monkeypatch.setattr(intents, "CHANNEL_ORDER_ID_LENGTH", 10_000)
    # A plugin that names the 129-character id (the built-in ones refuse it before this).
    adapter = app.extensions["orderhooks.channel_types"].get("bigcommerce")
    real = adapter.translate_many

    def translate_many(deliveries, channel):
        return [[intents.Cancel(channel_order_id=LONG_ID)] if b'"id": 251' in d.body else r
                for d, r in zip(deliveries, real(deliveries, channel))]

    monkeypatch.setattr(adapter, "translate_many", translate_many)
    bc.order(251, status_id=5)
    bad_id = bc.send(order_id=251).get_json()["delivery_id"]
    good_id = bc.send(order_id=250).get_json()["delivery_id"]
    assert worker.run_once() == 2
    failed = row(app, bad_id)
    assert (failed.outcome, failed.attempts) == ("failed", 1)
    assert "StringDataRightTruncation" in failed.reason, failed.reason
    assert row(app, good_id).outcome == "applied"
    assert _status(admin, big["id"], 250) == "CANCELLED"


def test_a_plugin_failing_for_the_whole_batch_fails_only_the_delivery_that_breaks_it(
        app, bc, two_channels, worker, monkeypatch):
    adapter = app.extensions["orderhooks.channel_types"].get("bigcommerce")
    real = adapter.translate_many
    poison = b'"id": 251'

    def translate_many(deliveries, channel):
        if any(poison in d.body for d in deliveries):
            raise RuntimeError("the plugin chokes on order 251")
        return real(deliveries, channel)

    monkeypatch.setattr(adapter, "translate_many", translate_many)
    poisoned = bc.send(order_id=251).get_json()["delivery_id"]
    good = bc.send(order_id=250).get_json()["delivery_id"]
    assert worker.run_once() == 2
    assert row(app, good).outcome == "applied"
    failed = row(app, poisoned)
    assert (failed.outcome, failed.attempts) == ("failed", 1)
    assert "chokes on order 251" in failed.reason


def test_an_intent_refuses_an_order_id_the_tables_cannot_hold():
    for bad in ("", "1" * (CHANNEL_ORDER_ID_LENGTH + 1), "a\x00b", "\ud800", None):
        with pytest.raises(intents.InvalidIntent):
            intents.Cancel(bad)
        with pytest.raises(intents.InvalidIntent):
            intents.Fulfill(bad)
    assert intents.Cancel("1" * CHANNEL_ORDER_ID_LENGTH).channel_order_id
    # The limit is the tables' own.
    for table in (Order, StoredDelivery, PendingIntent):
        assert table.__table__.c.channel_order_id.type.length == CHANNEL_ORDER_ID_LENGTH


def test_the_admin_api_applies_the_same_order_id_rule(admin, bc):
    channel = bc.create()
    too_long = "1" * (CHANNEL_ORDER_ID_LENGTH + 1)
    answer = admin.post("/orders", {"channel_id": channel["id"], "channel_order_id": too_long},
                        expect=422)
    assert "channel_order_id" in answer["message"]
    admin.post("/orders", {"channel_id": channel["id"],
                           "channel_order_id": too_long[:CHANNEL_ORDER_ID_LENGTH]}, expect=201)


def test_a_channel_that_cannot_be_read_fails_only_its_own_deliveries(
        app, admin, bc, shopify, two_channels, worker, monkeypatch):
    big, shop = two_channels
    import core.worker
    real = core.worker.view

    def view(row, *args):
        if row.id == shop["id"]:
            raise ValueError("credentials the plugin no longer accepts")
        return real(row, *args)

    monkeypatch.setattr(core.worker, "view", view)
    unread = shopify.send("orders/cancelled", cancelled_order()).get_json()["delivery_id"]
    good = bc.send(order_id=250).get_json()["delivery_id"]
    assert worker.run_once() == 2
    assert row(app, good).outcome == "applied"
    failed = row(app, unread)
    assert (failed.outcome, failed.attempts) == ("failed", 1)
    assert "no longer accepts" in failed.reason
