"""Events: one per change, written in the change's transaction, with the resource after it."""
from __future__ import annotations

import pytest
import responses
from sqlalchemy import select

from core import events
from core.models import Event, Order, OrderChange
from core.subscriptions import check_all
from tests.shopify_helpers import (ORDER_ID, app_uninstalled, cancelled_order,  # noqa: F401
                                   shopify)

HOOKS = "https://bc.test/stores/abc123/v3/hooks"


def all_events(app) -> list[Event]:
    db = app.extensions["orderhooks.db"]
    events.sequence(db)
    with db.Session() as session:
        return session.scalars(select(Event).order_by(Event.position)).all()


def test_a_cancellation_writes_order_cancelled_with_the_order_after_it(bc, make_order, worker,
                                                                      app):
    channel = bc.create()
    order = make_order(channel["id"], 250, "AWAITING_SHIPMENT")
    bc.order(250, status_id=5)
    delivery_id = bc.send(order_id=250, new_status=5).get_json()["delivery_id"]
    worker.run_until_idle()
    [event] = all_events(app)
    assert event.type == "order.cancelled"
    assert event.event_id.startswith("evt_") and len(event.event_id) == 30
    assert event.channel_id == channel["id"] and event.order_key == f"order:{order['id']}"
    assert event.data["order"]["status"] == "CANCELLED"
    assert event.data["order"]["channel_order_id"] == "250"
    assert event.data["previous_status"] == "AWAITING_SHIPMENT"
    assert event.data["delivery_id"] == delivery_id and event.data["intent"] == "cancel"
    assert "customer" not in event.data["order"]
    assert event.position == 1
    public = events.public(event)
    assert public["id"] == event.event_id and public["timestamp"].endswith("Z")


def test_an_ignored_cancellation_writes_order_ignored_with_the_rule_s_reason(bc, make_order,
                                                                             worker, app):
    channel = bc.create()
    make_order(channel["id"], 251, "ON_HOLD")
    bc.order(251, status_id=5)
    bc.send(order_id=251, new_status=5)
    worker.run_until_idle()
    [event] = all_events(app)
    assert event.type == "order.ignored"
    assert event.data["order"]["status"] == "ON_HOLD"
    assert "not a valid cancellation status" in event.data["reason"]


def test_shipped_and_shipment_recorded(bc, make_order, worker, app):
    channel = bc.create(fulfill=["AWAITING_SHIPMENT"])
    make_order(channel["id"], 252)
    make_order(channel["id"], 253)
    shipment = [{"id": 12, "order_id": 252, "tracking_number": "1Z9", "shipping_provider": "ups",
                 "tracking_carrier": "ups", "tracking_link": "",
                 "items": [{"order_product_id": 7, "product_id": 77, "quantity": 1}]}]
    bc.order(252, status_id=2, items_shipped=2)
    bc.shipments(252, shipment)
    bc.order(253, status_id=3, items_shipped=1)
    bc.shipments(253, [{**shipment[0], "order_id": 253}])
    bc.send(order_id=252, new_status=2)
    bc.send(order_id=253, new_status=3)
    worker.run_until_idle()
    by_type = {e.type: e for e in all_events(app)}
    assert set(by_type) == {"order.shipped", "order.shipment_recorded"}
    assert by_type["order.shipped"].data["order"]["status"] == "SHIPPED"
    assert by_type["order.shipped"].data["order"]["shipments"][0]["tracking_number"] == "1Z9"
    recorded = by_type["order.shipment_recorded"].data["order"]
    assert recorded["status"] == "AWAITING_SHIPMENT" and len(recorded["shipments"]) == 1


def test_every_order_change_caused_by_a_delivery_has_exactly_one_event(bc, make_order, worker,
                                                                       app):
    channel = bc.create()
    for n in range(20):
        make_order(channel["id"], 300 + n, "AWAITING_SHIPMENT" if n % 2 else "ON_HOLD")
        bc.order(300 + n, status_id=5)
        bc.send(order_id=300 + n, new_status=5)
    worker.run_until_idle()
    found = all_events(app)
    with app.extensions["orderhooks.db"].Session() as session:
        changes = session.execute(select(OrderChange.order_id, OrderChange.event).where(
            OrderChange.event != "created")).all()
    assert sorted((f"order:{o}", e) for o, e in changes) == sorted(
        (ev.order_key, ev.type.split(".")[1]) for ev in found)
    assert [e.position for e in found] == list(range(1, 21))


def test_an_event_without_its_change_is_never_committed(bc, make_order, worker, app):
    """A batch that fails while recording rolls its events back with its changes."""
    channel = bc.create()
    make_order(channel["id"], 260)
    bc.order(260, status_id=5)
    bc.send(order_id=260, new_status=5)
    db = app.extensions["orderhooks.db"]
    with pytest.raises(RuntimeError):
        with db.session() as session:
            order = session.scalars(select(Order)).one()
            order.status = "CANCELLED"
            events.emit(session, "order.cancelled", {"order": events.order_view(order)},
                        channel_id=order.channel_id, order_key=events.order_key(order))
            session.flush()
            raise RuntimeError("the transaction dies before its commit")
    assert all_events(app) == []


def test_expired_hold_writes_order_ignored(bc, make_order, worker, app):
    from datetime import timedelta

    from core.clock import utcnow
    from core.models import PendingIntent
    channel = bc.create()
    make_order(channel["id"], 270, "UNPROCESSED")
    bc.order(270, status_id=5)
    bc.send(order_id=270, new_status=5)
    worker.run_until_idle()
    assert all_events(app) == []  # deferred: no change yet
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        for pending in session.scalars(select(PendingIntent)):
            pending.expires_at = utcnow() - timedelta(seconds=1)
    worker.housekeeping(force=True)
    [event] = all_events(app)
    assert event.type == "order.ignored" and event.data["reason"].startswith("gave up")


def test_uninstall_writes_channel_deactivated(shopify, worker, app):
    channel = shopify.create()
    shopify.uninstall()
    shopify.send("app/uninstalled", app_uninstalled())
    worker.run_until_idle()
    [event] = [e for e in all_events(app) if e.type == "channel.deactivated"]
    assert event.channel_id == channel["id"]
    assert event.data["channel"] == {"id": channel["id"], "type": "shopify",
                                     "name": channel["name"], "active": False}
    assert event.data["actor"] == "channel" and "uninstalled" in event.data["reason"]


def test_deactivating_through_the_admin_api_writes_channel_deactivated(bc, admin, app):
    channel = bc.create()
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    admin.patch(f"/channels/{channel['id']}", {"name": "renamed"})
    [event] = all_events(app)
    assert event.type == "channel.deactivated" and event.data["actor"] == "admin-api"


def test_subscription_failed_once_then_repaired(bc, api, app):
    channel = bc.create()
    api.replace(responses.GET, HOOKS, status=500, json={"title": "Internal Server Error"})
    check_all(app)
    check_all(app)  # still failing: no second event
    api.replace(responses.CallbackResponse(responses.GET, HOOKS, callback=bc._list_hooks))
    check_all(app)
    found = all_events(app)
    assert [e.type for e in found] == ["subscription.failed", "subscription.repaired"]
    failed = found[0].data["subscription"]
    assert failed["status"] == "failed" and "500" in failed["last_error"]
    assert failed["channel_id"] == channel["id"]
    assert found[1].data["subscription"]["status"] == "active"


def test_a_hook_the_channel_lost_is_recreated_with_subscription_repaired(bc, app):
    bc.create()
    bc.hooks.clear()
    check_all(app)
    [event] = all_events(app)
    assert event.type == "subscription.repaired"
    assert event.data["subscription"]["last_action"] == "recreated"


def test_emit_refuses_an_unknown_type(app):
    with app.extensions["orderhooks.db"].session() as session:
        with pytest.raises(ValueError, match="unknown event type"):
            events.emit(session, "order.exploded", {})


def test_docs_show_a_sample_of_every_type_written_today():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    reserved = {"order.created", "order.paid", "rma.created", "product.updated",
                "product.deleted"}
    for type in set(events.TYPES) - reserved:
        assert f'"type": "{type}"' in doc, f"docs/events.md has no sample of {type}"
        assert f"| `{type}` |" in doc, f"docs/events.md's table has no row for {type}"


def test_an_imported_order_and_its_payment_write_order_created_then_order_paid(shopify, admin,
                                                                              worker, app):
    from tests.test_orders_from_channel import new_order, shopify_channel
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    shopify.send("orders/paid", new_order(financial_status="paid",
                                          updated_at="2022-01-02T00:00:00-05:00"))
    worker.run_until_idle()
    created, paid = all_events(app)
    assert (created.type, paid.type) == ("order.created", "order.paid")
    assert created.channel_id == channel["id"] and created.order_key == paid.order_key
    order = created.data["order"]
    assert order["status"] == "AWAITING_PAYMENT" and order["currency"] == "USD"
    assert order["totals"]["total"] == "404.95" and order["order_number"] == "#9999"
    assert len(order["lines"]) == len(new_order()["line_items"]) > 0
    assert "customer" not in order and "shipping_address" not in order  # personal data
    assert paid.data["previous_status"] == "AWAITING_PAYMENT"
    assert paid.data["order"]["status"] == "UNPROCESSED"
    assert paid.data["order"]["payments"][-1]["amount"] == "404.95"


def test_a_payment_the_rule_refuses_writes_order_ignored(shopify, admin, worker, app):
    from tests.test_orders_from_channel import new_order, shopify_channel
    shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order(financial_status="paid"))  # UNPROCESSED already
    worker.run_until_idle()
    shopify.send("orders/paid", new_order(financial_status="paid",
                                          updated_at="2022-01-02T00:00:00-05:00"))
    worker.run_until_idle()
    assert [e.type for e in all_events(app)] == ["order.created", "order.ignored"]
    assert "not AWAITING_PAYMENT" in all_events(app)[-1].data["reason"]


def test_product_changes_write_product_updated_and_product_deleted(shopify, worker, app):
    from tests.test_products import PRODUCT_ID, shopify_product
    channel = shopify.create()
    shopify.send("products/create", shopify_product(updated_at="2022-01-01T00:00:00Z"))
    worker.run_until_idle()
    shopify.send("products/update", shopify_product(updated_at="2021-06-01T00:00:00Z"))
    worker.run_until_idle()  # older than what the catalog holds: no change, no event
    shopify.send("products/delete", {"id": PRODUCT_ID},
                 triggered_at="2022-02-01T00:00:00Z")
    worker.run_until_idle()
    created, deleted = all_events(app)
    assert (created.type, created.data["change"]) == ("product.updated", "created")
    assert created.channel_id == channel["id"]
    product = created.data["product"]
    assert product["channel_product_id"] == str(PRODUCT_ID)
    assert [v["price"] for v in product["variants"]] == ["19.99", "19.99"]
    assert deleted.type == "product.deleted"
    assert deleted.data["product"]["deleted"] is True
    assert deleted.data["product"]["deleted_at"].startswith("2022-02-01T00:00:00")
