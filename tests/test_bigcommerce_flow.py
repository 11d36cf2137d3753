"""BigCommerce end to end: intake → worker → order, through the app and a real database."""
import json

import responses

from tests.conftest import BC_STORE, load_fixture


def get_order(admin, order_id):
    return admin.get(f"/orders/{order_id}")


def test_cancel_end_to_end(bc, admin, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], 250, "AWAITING_SHIPMENT")
    bc.order(250, status_id=5)
    response = bc.send(order_id=250, new_status=5)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert worker.run_until_idle() == 1
    detail = get_order(admin, order["id"])
    assert detail["status"] == "CANCELLED"
    assert [h["event"] for h in detail["history"]] == ["created", "cancelled"]
    delivery_id = response.get_json()["delivery_id"]
    assert detail["history"][-1]["delivery_id"] == delivery_id
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "applied"
    assert "cancelled" in delivery["reason"]


def test_fulfil_end_to_end_with_shipments(bc, admin, make_order, worker):
    channel = bc.create(fulfill=["AWAITING_SHIPMENT", "PENDING_FULFILLMENT"])
    order = make_order(channel["id"], 251, "PENDING_FULFILLMENT")
    bc.order(251, status_id=2, items_shipped=2)
    bc.shipments(251, [{"id": 12, "order_id": 251, "tracking_number": "1Z999",
                        "shipping_provider": "ups", "tracking_carrier": "ups",
                        "tracking_link": "https://ups.example/1Z999",
                        "items": [{"order_product_id": 7, "product_id": 77, "quantity": 2}]}])
    assert bc.send(order_id=251, new_status=2).status_code == 200
    worker.run_until_idle()
    detail = get_order(admin, order["id"])
    assert detail["status"] == "SHIPPED"
    assert detail["shipments"] == [{"shipment_id": "12", "tracking_number": "1Z999",
                                    "carrier": "ups", "tracking_url": "https://ups.example/1Z999",
                                    "items": [{"sku": "77", "line_id": "7", "quantity": 2}]}]


def test_shipped_with_no_shipments_answers_204(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 252)
    bc.order(252, status_id=10)
    bc.shipments(252, [])
    bc.send(order_id=252, new_status=10)
    worker.run_until_idle()
    detail = get_order(admin, order["id"])
    assert detail["status"] == "SHIPPED" and detail["shipments"] == []


def test_partially_shipped_records_shipments_and_keeps_status(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 253)
    bc.order(253, status_id=3, items_total=3, items_shipped=1)
    bc.shipments(253, [{"id": 1, "tracking_number": "A1", "items": []}])
    bc.send(order_id=253, new_status=3)
    worker.run_until_idle()
    detail = get_order(admin, order["id"])
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert [s["tracking_number"] for s in detail["shipments"]] == ["A1"]
    assert detail["history"][-1]["event"] == "shipments_recorded"


def test_partially_shipped_with_every_item_shipped_counts_as_fulfilled(bc, admin, make_order,
                                                                        worker):
    channel = bc.create()
    order = make_order(channel["id"], 254)
    bc.order(254, status_id=3, items_total=2, items_shipped=2)
    bc.shipments(254, [{"id": 1, "tracking_number": "A1"}, {"id": 2, "tracking_number": "A2"}])
    bc.send(order_id=254, new_status=3)
    worker.run_until_idle()
    assert get_order(admin, order["id"])["status"] == "SHIPPED"


def test_current_state_wins_over_stale_payload(bc, admin, make_order, worker):
    """A late retry says 'cancelled', but the order is Awaiting Fulfillment now: no cancel."""
    channel = bc.create()
    order = make_order(channel["id"], 255)
    bc.order(255, status_id=11)
    bc.send(order_id=255, new_status=5)
    worker.run_until_idle()
    assert get_order(admin, order["id"])["status"] == "AWAITING_SHIPMENT"
    delivery = admin.get("/deliveries")[0]
    assert delivery["outcome"] == "ignored"
    assert "Awaiting Fulfillment" in delivery["reason"]


def test_out_of_order_deliveries_end_in_current_state(bc, admin, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"], fulfill=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], 256)
    bc.order(256, status_id=5)  # it was shipped, then cancelled: cancelled is current
    bc.send(order_id=256, new_status=5, created_at=200)
    bc.send(order_id=256, new_status=2, created_at=100)  # older event arrives last
    worker.run_until_idle()
    assert get_order(admin, order["id"])["status"] == "CANCELLED"


def test_duplicate_delivery_is_stored_once_and_applied_once(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 257)
    bc.order(257, status_id=5)
    payload = bc.payload(order_id=257, new_status=5)
    first = bc.send(payload)
    second = bc.send(payload)
    assert first.status_code == second.status_code == 200
    assert second.get_json() == {"status": "duplicate",
                                 "delivery_id": first.get_json()["delivery_id"]}
    worker.run_until_idle()
    assert len(admin.get("/deliveries")) == 1
    history = get_order(admin, order["id"])["history"]
    assert [h["event"] for h in history].count("cancelled") == 1


def test_reapplying_an_applied_intent_changes_nothing(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 258)
    bc.order(258, status_id=5)
    delivery_id = bc.send(order_id=258).get_json()["delivery_id"]
    worker.run_until_idle()
    admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
    worker.run_until_idle()
    detail = get_order(admin, order["id"])
    assert detail["status"] == "CANCELLED"
    assert [h["event"] for h in detail["history"]] == ["created", "cancelled", "ignored"]
    assert "already CANCELLED" in detail["history"][-1]["message"]


def test_sample_with_escaped_slashes_is_parsed_from_raw_bytes(bc, admin, make_order, worker):
    channel = bc.create()
    make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    raw = json.dumps(load_fixture("bigcommerce", "store_order_statusUpdated.json"))
    raw = raw.replace("stores/", "stores\\/")
    assert bc.send(body=raw).status_code == 200
    worker.run_until_idle()
    assert admin.get("/deliveries")[0]["outcome"] == "applied"


def test_shipment_created_scope_reads_the_order(bc, admin, make_order, worker):
    channel = bc.create()
    order = make_order(channel["id"], 251)
    bc.order(251, status_id=2)
    bc.shipments(251, [{"id": 12, "tracking_number": "T"}])
    sample = load_fixture("bigcommerce", "store_shipment_created.json")
    assert bc.send(sample).status_code == 200
    worker.run_until_idle()
    assert get_order(admin, order["id"])["status"] == "SHIPPED"


def test_deleted_order_in_channel_is_ignored(bc, admin, make_order, worker, api):
    channel = bc.create()
    make_order(channel["id"], 259)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/259", status=404, json={"status": 404})
    bc.send(order_id=259)
    worker.run_until_idle()
    delivery = admin.get("/deliveries")[0]
    assert delivery["outcome"] == "ignored" and "does not exist" in delivery["reason"]
