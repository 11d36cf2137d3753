"""Deferral: intents held for UNPROCESSED orders and orders not imported yet, released by the
status change or the import itself (no worker run needed), given up on after their window."""
import pytest

from core.models import PendingIntent


def delivery(admin, delivery_id):
    return admin.get(f"/deliveries/{delivery_id}")


def held_count(app):
    with app.extensions["orderhooks.db"].Session() as session:
        return session.query(PendingIntent).count()


def test_cancel_of_unprocessed_order_is_held_then_applied_on_status_change(bc, admin, make_order,
                                                                           worker, app):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], 250, "UNPROCESSED")
    bc.order(250, status_id=5)
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
    worker.run_until_idle()

    held = delivery(admin, delivery_id)
    assert held["outcome"] == "deferred"
    assert "UNPROCESSED" in held["reason"]
    assert held["deferred_until"] is not None
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "UNPROCESSED"
    assert [h["event"] for h in detail["history"]] == ["created", "deferred"]
    assert len(detail["held_intents"]) == 1
    assert detail["held_intents"][0]["delivery_id"] == delivery_id

    # Processing finishes in Network Manager: the cancel applies in the same request.
    patched = admin.patch(f"/orders/{order['id']}", {"status": "AWAITING_SHIPMENT"})
    assert patched["status"] == "CANCELLED"
    assert patched["held_intents"] == []
    assert [h["event"] for h in patched["history"]] == ["created", "deferred", "status_changed",
                                                        "cancelled"]
    assert patched["history"][-1]["delivery_id"] == delivery_id
    released = delivery(admin, delivery_id)
    assert released["outcome"] == "applied"
    assert "released" in released["reason"]
    assert released["deferred_until"] is None
    assert held_count(app) == 0
    # nothing left for the worker, and no API call was needed to release it
    calls = len(bc.api.calls)
    assert worker.run_until_idle() == 0
    assert len(bc.api.calls) == calls


def test_fulfil_of_unprocessed_order_is_released_with_its_shipments(bc, admin, make_order,
                                                                    worker):
    channel = bc.create(fulfill=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], 251, "UNPROCESSED")
    bc.order(251, status_id=2, items_shipped=2)
    bc.shipments(251, [{"id": 3, "tracking_number": "1Z1", "items": []}])
    delivery_id = bc.send(order_id=251, new_status=2).get_json()["delivery_id"]
    worker.run_until_idle()
    assert delivery(admin, delivery_id)["outcome"] == "deferred"
    patched = admin.patch(f"/orders/{order['id']}", {"status": "AWAITING_SHIPMENT"})
    assert patched["status"] == "SHIPPED"
    assert [s["tracking_number"] for s in patched["shipments"]] == ["1Z1"]
    assert delivery(admin, delivery_id)["outcome"] == "applied"


def test_status_change_to_unselected_status_releases_as_ignored(bc, admin, make_order, worker,
                                                                 app):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], 252, "UNPROCESSED")
    bc.order(252, status_id=5)
    delivery_id = bc.send(order_id=252).get_json()["delivery_id"]
    worker.run_until_idle()
    patched = admin.patch(f"/orders/{order['id']}", {"status": "ON_HOLD"})
    assert patched["status"] == "ON_HOLD"
    assert patched["held_intents"] == []
    assert patched["history"][-1]["event"] == "ignored"
    result = delivery(admin, delivery_id)
    assert result["outcome"] == "ignored"
    assert "order is ON_HOLD, not a valid cancellation status" in result["reason"]
    assert held_count(app) == 0
    # a later move to a selected status does not resurrect it
    assert admin.patch(f"/orders/{order['id']}", {"status": "AWAITING_SHIPMENT"})["status"] == \
        "AWAITING_SHIPMENT"


def test_patch_to_same_status_keeps_the_intent_held(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 253, "UNPROCESSED")
    bc.order(253, status_id=5)
    delivery_id = bc.send(order_id=253).get_json()["delivery_id"]
    worker.run_until_idle()
    patched = admin.patch(f"/orders/{order['id']}", {"status": "UNPROCESSED"})
    assert patched["status"] == "UNPROCESSED" and len(patched["held_intents"]) == 1
    assert delivery(admin, delivery_id)["outcome"] == "deferred"


def test_order_not_imported_yet_is_deferred_then_released_on_import(bc, admin, make_order,
                                                                    worker, app):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    bc.order(260, status_id=5)
    delivery_id = bc.send(order_id=260).get_json()["delivery_id"]
    worker.run_until_idle()
    held = delivery(admin, delivery_id)
    assert held["outcome"] == "deferred"
    assert "not imported" in held["reason"]
    assert held["deferred_until"] is not None
    assert admin.get("/orders", query_string={"channel_order_id": "260"}) == []

    order = make_order(channel["id"], 260, "AWAITING_SHIPMENT")
    assert order["status"] == "CANCELLED"
    assert [h["event"] for h in order["history"]] == ["created", "cancelled"]
    assert order["history"][-1]["delivery_id"] == delivery_id
    assert delivery(admin, delivery_id)["outcome"] == "applied"
    assert held_count(app) == 0


def test_late_import_as_unprocessed_keeps_holding_until_processed(bc, admin, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    bc.order(261, status_id=5)
    delivery_id = bc.send(order_id=261).get_json()["delivery_id"]
    worker.run_until_idle()
    order = make_order(channel["id"], 261, "UNPROCESSED")
    assert order["status"] == "UNPROCESSED" and len(order["held_intents"]) == 1
    still = delivery(admin, delivery_id)
    assert still["outcome"] == "deferred" and "UNPROCESSED" in still["reason"]
    patched = admin.patch(f"/orders/{order['id']}", {"status": "AWAITING_SHIPMENT"})
    assert patched["status"] == "CANCELLED"
    assert delivery(admin, delivery_id)["outcome"] == "applied"


def test_late_import_in_unselected_status_is_ignored(bc, admin, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    bc.order(262, status_id=5)
    delivery_id = bc.send(order_id=262).get_json()["delivery_id"]
    worker.run_until_idle()
    order = make_order(channel["id"], 262, "ON_HOLD")
    assert order["status"] == "ON_HOLD" and order["held_intents"] == []
    result = delivery(admin, delivery_id)
    assert result["outcome"] == "ignored" and "ON_HOLD" in result["reason"]


class TestUnknownOrderWindow:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "UNKNOWN_ORDER_WINDOW_SECONDS": 0}

    def test_expired_window_gives_up(self, bc, admin, make_order, worker, app):
        channel = bc.create()
        bc.order(270, status_id=5)
        delivery_id = bc.send(order_id=270).get_json()["delivery_id"]
        worker.run_until_idle()
        assert delivery(admin, delivery_id)["outcome"] == "deferred"
        worker.housekeeping(force=True)
        result = delivery(admin, delivery_id)
        assert result["outcome"] == "ignored"
        assert result["reason"].startswith("gave up")
        assert "270" in result["reason"] and "never imported" in result["reason"]
        assert held_count(app) == 0
        # importing it now changes nothing
        order = make_order(channel["id"], 270, "AWAITING_SHIPMENT")
        assert order["status"] == "AWAITING_SHIPMENT"
        assert [h["event"] for h in order["history"]] == ["created"]


class TestUnprocessedWindow:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "UNPROCESSED_WINDOW_SECONDS": 0}

    def test_expired_window_gives_up_and_says_so_in_order_history(self, bc, admin, make_order,
                                                                  worker, app):
        channel = bc.create()
        order = make_order(channel["id"], 271, "UNPROCESSED")
        bc.order(271, status_id=5)
        delivery_id = bc.send(order_id=271).get_json()["delivery_id"]
        worker.run_until_idle()
        worker.housekeeping(force=True)
        result = delivery(admin, delivery_id)
        assert result["outcome"] == "ignored"
        assert result["reason"].startswith("gave up: order stayed UNPROCESSED")
        detail = admin.get(f"/orders/{order['id']}")
        assert detail["history"][-1]["event"] == "ignored"
        assert detail["history"][-1]["delivery_id"] == delivery_id
        assert admin.patch(f"/orders/{order['id']}",
                           {"status": "AWAITING_SHIPMENT"})["status"] == "AWAITING_SHIPMENT"


def test_housekeeping_keeps_intents_within_their_window(bc, admin, worker, app):
    bc.create()
    bc.order(272, status_id=5)
    delivery_id = bc.send(order_id=272).get_json()["delivery_id"]
    worker.run_until_idle()
    worker.housekeeping(force=True)
    assert delivery(admin, delivery_id)["outcome"] == "deferred"
    assert held_count(app) == 1


def test_replaying_a_deferred_delivery_does_not_hold_it_twice(bc, admin, make_order, worker, app):
    channel = bc.create()
    bc.order(273, status_id=5)
    delivery_id = bc.send(order_id=273).get_json()["delivery_id"]
    worker.run_until_idle()
    admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
    worker.run_until_idle()
    assert held_count(app) == 1
    order = make_order(channel["id"], 273)
    assert [h["event"] for h in order["history"]] == ["created", "cancelled"]
