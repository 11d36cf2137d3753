"""Shopify end to end: signed deliveries → intake → worker → order, through the app and a real
database, with ``responses`` standing in for the GraphQL Admin API (see tests/shopify_helpers.py).
"""
import json

import pytest

from tests.shopify_helpers import (API_VERSION, CUSTOMER_EMAIL, CUSTOMER_ID, OLD_SECRET,
                                   ORDER_ID, SECRET, SHOP, TOKEN, app_uninstalled, cancelled_order,
                                   customers_data_request, customers_redact, fulfilled_order,
                                   fulfillment, shop_redact, sign)
from tests.shopify_helpers import deliveries, delivery, order_detail
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)

T1 = "2026-03-01T10:00:00.000000000Z"
T2 = "2026-03-01T11:00:00.123456789Z"


# -- authentication ---------------------------------------------------------------------------


def test_right_secret_is_accepted(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order())
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"


def test_previous_secret_is_accepted_during_a_rotation(shopify, admin):
    shopify.create(previous_client_secret=OLD_SECRET)
    assert shopify.send("orders/cancelled", cancelled_order(),
                        secret=OLD_SECRET).status_code == 200


def test_previous_secret_set_later_through_the_admin_api(shopify, admin):
    shopify.create()
    assert shopify.send("orders/cancelled", cancelled_order(), secret=OLD_SECRET).status_code == 401
    admin.patch(f"/channels/{shopify.channel['id']}", {"credentials": {
        "client_secret": "the-new-secret", "previous_client_secret": SECRET}})
    assert shopify.send("orders/cancelled", cancelled_order(), secret=SECRET).status_code == 200
    assert shopify.send("orders/cancelled", cancelled_order(),
                        secret="the-new-secret").status_code == 200
    admin.patch(f"/channels/{shopify.channel['id']}",
                {"credentials": {"previous_client_secret": None}})
    assert shopify.send("orders/cancelled", cancelled_order(), secret=SECRET).status_code == 401


def test_wrong_secret_is_refused_and_nothing_stored(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order(), secret="not-the-secret")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthenticated"
    assert deliveries(admin) == []


def test_missing_signature_is_refused(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order(),
                            drop=["X-Shopify-Hmac-Sha256"])
    assert response.status_code == 401
    assert deliveries(admin) == []


@pytest.mark.parametrize("value", ["", "   ", "not base64 at all", "é"])
def test_garbage_signature_is_refused(shopify, value):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order(),
                            headers={"X-Shopify-Hmac-Sha256": value})
    assert response.status_code == 401


def test_reserialised_body_is_refused(shopify, admin):
    """The signature covers the raw bytes: the same JSON re-serialised no longer matches."""
    shopify.create()
    raw = json.dumps(cancelled_order(), indent=2).encode()
    reserialised = json.dumps(json.loads(raw)).encode()
    assert reserialised != raw
    response = shopify.send("orders/cancelled", body=reserialised,
                            headers={"X-Shopify-Hmac-Sha256": sign(raw)})
    assert response.status_code == 401
    assert shopify.send("orders/cancelled", body=raw).status_code == 200


def test_raw_body_with_escaped_slashes_is_verified_and_parsed(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    raw = json.dumps(cancelled_order()).replace("/", "\\/").encode()
    assert shopify.send("orders/cancelled", body=raw).status_code == 200
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "CANCELLED"


def test_headers_without_the_x_prefix_are_accepted(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/cancelled", cancelled_order(), prefix="",
                            webhook_id="no-prefix-1", triggered_at=T1)
    assert response.status_code == 200, response.get_json()
    stored = delivery(admin, response)
    assert stored["topic"] == "orders/cancelled"
    assert stored["headers"]["shopify-webhook-id"] == "no-prefix-1"
    assert stored["headers"]["shopify-topic"] == "orders/cancelled"
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "CANCELLED"


def test_header_names_are_case_insensitive(shopify, admin):
    shopify.create()
    body = json.dumps(cancelled_order()).encode()
    response = shopify.client.post(shopify.url, data=body, headers={
        "content-type": "application/json", "x-SHOPIFY-topic": "orders/cancelled",
        "X-SHOPIFY-HMAC-SHA256": sign(body), "x-shopify-webhook-id": "mixed-1",
        "X-Shopify-SHOP-DOMAIN": SHOP.upper()})
    assert response.status_code == 200, response.get_json()
    assert delivery(admin, response)["topic"] == "orders/cancelled"


def test_delivery_for_another_shop_is_refused(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order(),
                            shop="someone-else.myshopify.com")
    assert response.status_code == 401
    assert "someone-else" in response.get_json()["message"]


def test_authentic_but_unreadable_delivery_is_400(shopify, admin):
    shopify.create()
    assert shopify.send("orders/cancelled", body=b"{not json").status_code == 400
    assert shopify.send("orders/cancelled", body=b"[1, 2]").status_code == 400
    assert shopify.send("orders/cancelled", cancelled_order(),
                        drop=["X-Shopify-Topic"]).status_code == 400
    assert deliveries(admin) == []


def test_unknown_channel_is_404(shopify):
    shopify.create()
    assert shopify.send("orders/cancelled", cancelled_order(), channel_id=999).status_code == 404


# -- topics, end to end with the published samples ------------------------------------------


def test_orders_cancelled_sample_cancels_the_order(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/cancelled", cancelled_order(), triggered_at=T2)
    stored = delivery(admin, response)
    assert stored["channel_order_id"] == "820982911946154508"  # 64-bit id, exact
    assert stored["occurred_at"].startswith("2026-03-01T11:00:00.123456")
    assert {"x-shopify-topic", "x-shopify-shop-domain", "x-shopify-api-version",
            "x-shopify-webhook-id", "x-shopify-event-id",
            "x-shopify-triggered-at"} <= set(stored["headers"])
    assert "x-shopify-hmac-sha256" not in stored["headers"]
    assert worker.run_until_idle() == 1
    detail = order_detail(admin, order)
    assert detail["status"] == "CANCELLED"
    assert [h["event"] for h in detail["history"]] == ["created", "cancelled"]
    assert detail["history"][-1]["delivery_id"] == stored["id"]
    assert detail["last_event_at"].startswith("2026-03-01T11:00:00")
    stored = delivery(admin, response)
    assert stored["outcome"] == "applied"
    assert stored["intents"][0]["kind"] == "Cancel"
    assert stored["intents"][0]["reason"] == "customer"
    assert stored["intents"][0]["channel_order_id"] == "820982911946154508"


def test_cancel_of_an_order_in_an_unselected_status_is_ignored(shopify, admin, make_order,
                                                               worker):
    channel = shopify.create(cancel=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], ORDER_ID, "ON_HOLD")
    response = shopify.send("orders/cancelled", cancelled_order())
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "ON_HOLD"
    stored = delivery(admin, response)
    assert stored["outcome"] == "ignored" and "not a valid cancellation status" in stored["reason"]


def test_cancel_for_an_order_not_imported_yet_is_held(shopify, admin, make_order, worker):
    channel = shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order())
    worker.run_until_idle()
    assert delivery(admin, response)["outcome"] == "deferred"
    order = make_order(channel["id"], ORDER_ID)
    assert order["status"] == "CANCELLED"


def test_fulfillments_create_sample_is_pending_so_not_shipped(shopify, admin, make_order, worker):
    """The published sample, as published: status "pending" has not shipped yet."""
    from tests.conftest import load_fixture
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    sample = load_fixture("shopify", "fulfillments_create.json")
    assert sample["status"] == "pending"
    response = shopify.send("fulfillments/create", sample)
    assert delivery(admin, response)["channel_order_id"] == str(ORDER_ID)
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "ignored"
    assert "pending, not shipped yet" in stored["reason"]
    detail = order_detail(admin, order)
    assert detail["status"] == "AWAITING_SHIPMENT" and detail["shipments"] == []


EXPECTED_SHIPMENT = {
    "shipment_id": "123456", "tracking_number": "1z827wk74630", "carrier": "UPS",
    "tracking_url": "https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1z827wk74630",
    "items": [{"sku": "SKU2006-001", "line_id": "487817672276298554", "quantity": 1},
              {"sku": "LENS-PROTECT-2YR", "line_id": "789012345678901234", "quantity": 1},
              {"sku": "CASE-LEATHER-PREM", "line_id": "890123456789012345", "quantity": 1},
              {"sku": "SKU2006-020", "line_id": "976318377106520349", "quantity": 1},
              {"sku": "SKU2006-035", "line_id": "315789986012684393", "quantity": 1}]}


@pytest.mark.parametrize("topic", ["fulfillments/create", "fulfillments/update"])
def test_shipped_fulfillment_records_its_parcel_and_keeps_the_status(shopify, admin, make_order,
                                                                     worker, topic):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send(topic, fulfillment(status="success"), triggered_at=T1)
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert detail["shipments"] == [EXPECTED_SHIPMENT]
    assert detail["history"][-1]["event"] == "shipments_recorded"
    assert delivery(admin, response)["outcome"] == "applied"


def test_fulfillment_then_orders_fulfilled_ships_the_order_once(shopify, admin, make_order,
                                                                worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shipped = fulfillment(status="success")
    shopify.send("fulfillments/create", shipped, triggered_at=T1, event_id="ev-9")
    shopify.send("orders/fulfilled", fulfilled_order(fulfillments=[shipped]),
                 triggered_at=T1, event_id="ev-9")
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "SHIPPED"
    assert detail["shipments"] == [EXPECTED_SHIPMENT]
    assert [h["event"] for h in detail["history"]] == ["created", "shipments_recorded",
                                                       "shipped"]


@pytest.mark.parametrize("status, words", [("pending", "not shipped yet"),
                                           ("open", "not shipped yet"),
                                           ("cancelled", "did not ship"),
                                           ("failure", "did not ship"),
                                           ("error", "did not ship"),
                                           ("weird", "not a shipped one"),
                                           (None, "without a status")])
def test_fulfillment_statuses_that_did_not_ship_are_ignored(shopify, admin, make_order, worker,
                                                            status, words):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("fulfillments/update", fulfillment(status=status))
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "ignored" and words in stored["reason"], stored["reason"]
    assert order_detail(admin, order)["shipments"] == []


def test_fulfillment_status_is_case_insensitive(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("fulfillments/create", fulfillment(status="SUCCESS"))
    worker.run_until_idle()
    assert len(order_detail(admin, order)["shipments"]) == 1


def test_orders_fulfilled_sample_is_not_a_fulfilled_order_so_ignored(shopify, admin, make_order,
                                                                   worker):
    """The published orders/* sample, as published, has fulfillment_status null: the body does
    not show a fulfilled order, so orders/fulfilled with it does nothing."""
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/fulfilled", cancelled_order())
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "ignored"
    assert "fulfillment_status null, not fulfilled" in stored["reason"]
    assert order_detail(admin, order)["status"] == "AWAITING_SHIPMENT"


def test_orders_fulfilled_without_fulfillments_ships_the_order(shopify, admin, make_order,
                                                               worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/fulfilled", fulfilled_order())
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "SHIPPED" and detail["shipments"] == []
    assert delivery(admin, response)["intents"][0]["complete"] is True


def test_orders_fulfilled_records_only_shipped_fulfillments(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    payload = fulfilled_order(fulfillments=[
        fulfillment(status="success", fulfillment_id=1, tracking_number="T1",
                    tracking_numbers=["T1"]),
        fulfillment(status="cancelled", fulfillment_id=2, tracking_number="T2",
                    tracking_numbers=["T2"])])
    shopify.send("orders/fulfilled", payload)
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "SHIPPED"
    assert [(s["shipment_id"], s["tracking_number"]) for s in detail["shipments"]] == [("1", "T1")]


def test_orders_fulfilled_for_an_order_in_an_unselected_status_is_ignored(shopify, admin,
                                                                          make_order, worker):
    channel = shopify.create(fulfill=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], ORDER_ID, "PENDING_FULFILLMENT")
    shopify.send("orders/fulfilled", fulfilled_order())
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "PENDING_FULFILLMENT"
    assert "not a valid fulfillment status" in deliveries(admin)[0]["reason"]


def test_orders_partially_fulfilled_records_shipments_and_keeps_status(shopify, admin,
                                                                       make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/partially_fulfilled", fulfilled_order(
        "partial", fulfillments=[fulfillment(status="success")]))
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert detail["shipments"] == [EXPECTED_SHIPMENT]
    assert delivery(admin, response)["intents"][0]["complete"] is False


def test_orders_partially_fulfilled_sample_without_shipped_fulfillment_is_ignored(
        shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/partially_fulfilled", fulfilled_order("partial"))
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "ignored" and "no shipped fulfillment" in stored["reason"]
    assert order_detail(admin, order)["history"][-1]["event"] == "created"


def test_partial_then_complete_fulfilment(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    first = fulfillment(status="success", fulfillment_id=1, tracking_number="A",
                        tracking_numbers=["A"])
    second = fulfillment(status="success", fulfillment_id=2, tracking_number="B",
                         tracking_numbers=["B"])
    shopify.send("orders/partially_fulfilled", fulfilled_order("partial", fulfillments=[first]),
                 triggered_at="2026-03-01T10:00:00Z")
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "AWAITING_SHIPMENT"
    shopify.send("orders/fulfilled", fulfilled_order(fulfillments=[first, second]),
                 triggered_at="2026-03-02T10:00:00Z")
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "SHIPPED"
    assert [s["tracking_number"] for s in detail["shipments"]] == ["A", "B"]


@pytest.mark.parametrize("topic", ["orders/updated", "orders/create", "orders/paid",
                                   "inventory_levels/update"])
def test_other_topics_are_stored_acknowledged_and_ignored(shopify, admin, make_order, worker,
                                                          topic):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send(topic, cancelled_order())
    assert response.status_code == 200
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["topic"] == topic
    assert stored["outcome"] == "ignored" and topic in stored["reason"]
    assert order_detail(admin, order)["status"] == "AWAITING_SHIPMENT"


def test_translate_makes_no_api_call(shopify, api, make_order, worker):
    channel = shopify.create()
    make_order(channel["id"], ORDER_ID)
    calls = len(api.calls)
    shopify.send("orders/cancelled", cancelled_order())
    shopify.send("fulfillments/create", fulfillment())
    shopify.send("orders/fulfilled", fulfilled_order())
    worker.run_until_idle()
    assert len(api.calls) == calls


# -- de-duplication and staleness -------------------------------------------------------------


def test_duplicate_webhook_id_is_stored_once_and_applied_once(shopify, admin, make_order,
                                                              worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    first = shopify.send("orders/cancelled", cancelled_order(), webhook_id="wh-dup")
    second = shopify.send("orders/cancelled", cancelled_order(), webhook_id="wh-dup")
    assert first.status_code == second.status_code == 200
    assert second.get_json() == {"status": "duplicate",
                                 "delivery_id": first.get_json()["delivery_id"]}
    worker.run_until_idle()
    # ...and a retry after the first was processed is a duplicate too
    third = shopify.send("orders/cancelled", cancelled_order(), webhook_id="wh-dup")
    assert third.get_json()["status"] == "duplicate"
    worker.run_until_idle()
    assert len(deliveries(admin)) == 1
    events = [h["event"] for h in order_detail(admin, order)["history"]]
    assert events == ["created", "cancelled"]


def test_without_webhook_id_the_body_hash_dedupes(shopify, admin):
    from plugins.shopify.plugin import dedupe_key
    shopify.create()
    body = json.dumps(cancelled_order()).encode()
    first = shopify.send("orders/cancelled", body=body, drop=["X-Shopify-Webhook-Id"])
    second = shopify.send("orders/cancelled", body=body, drop=["X-Shopify-Webhook-Id"])
    assert second.get_json()["status"] == "duplicate"
    assert delivery(admin, first)["dedupe_key"] == dedupe_key("orders/cancelled", body)
    # the same body under another topic is another event
    other = shopify.send("orders/updated", body=body, drop=["X-Shopify-Webhook-Id"])
    assert other.get_json()["status"] == "accepted"


def test_same_event_id_different_webhook_ids_are_both_kept(shopify, admin):
    """X-Shopify-Event-Id is shared by the deliveries of one merchant action (several topics):
    it is kept, not deduped on."""
    shopify.create()
    a = shopify.send("orders/fulfilled", fulfilled_order(), event_id="ev-7")
    b = shopify.send("fulfillments/create", fulfillment(), event_id="ev-7")
    assert a.get_json()["status"] == b.get_json()["status"] == "accepted"


def test_older_fulfilment_after_newer_cancel_is_stale(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/cancelled", cancelled_order(), triggered_at=T2)
    worker.run_until_idle()
    late = shopify.send("fulfillments/create", fulfillment(status="success"), triggered_at=T1)
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "CANCELLED" and detail["shipments"] == []
    stored = delivery(admin, late)
    assert stored["outcome"] == "ignored" and "stale" in stored["reason"]


def test_older_cancel_after_newer_fulfilment_is_stale(shopify, admin, make_order, worker):
    channel = shopify.create(cancel=["AWAITING_SHIPMENT", "SHIPPED"])
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/fulfilled", fulfilled_order(), triggered_at=T2)
    worker.run_until_idle()
    late = shopify.send("orders/cancelled", cancelled_order(), triggered_at=T1)
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "SHIPPED"
    assert "stale" in delivery(admin, late)["reason"]


def test_older_partial_after_newer_cancel_is_stale(shopify, admin, make_order, worker):
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/cancelled", cancelled_order(), triggered_at=T2)
    worker.run_until_idle()
    late = shopify.send("orders/partially_fulfilled",
                        fulfilled_order("partial", fulfillments=[fulfillment()]),
                        triggered_at=T1)
    worker.run_until_idle()
    assert order_detail(admin, order)["shipments"] == []
    assert "stale" in delivery(admin, late)["reason"]


def test_staleness_falls_back_to_payload_updated_at(shopify, admin, make_order, worker):
    """No X-Shopify-Triggered-At: the payload's updated_at (with its offset) orders events."""
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/cancelled", cancelled_order(updated_at="2026-03-01T12:00:00-05:00"))
    late = shopify.send("fulfillments/create", fulfillment(
        status="success", updated_at="2026-03-01T16:59:59Z"))  # 1 s earlier, in UTC
    assert delivery(admin, late)["occurred_at"].startswith("2026-03-01T16:59:59")
    worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "CANCELLED"
    assert "stale" in delivery(admin, late)["reason"]


def test_unreadable_triggered_at_falls_back_to_updated_at(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", cancelled_order(
        updated_at="2026-01-02T03:04:05Z"), triggered_at="yesterday-ish")
    assert response.status_code == 200
    assert delivery(admin, response)["occurred_at"].startswith("2026-01-02T03:04:05")


def test_out_of_order_deliveries_end_in_the_newest_state(shopify, admin, make_order, worker):
    """Both arrive before the worker runs, newest first: the older one never overrides it."""
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/cancelled", cancelled_order(), triggered_at=T2)
    shopify.send("orders/fulfilled", fulfilled_order(fulfillments=[fulfillment()]),
                 triggered_at=T1)
    worker.run_until_idle()
    detail = order_detail(admin, order)
    assert detail["status"] == "CANCELLED" and detail["shipments"] == []


def test_retry_with_stale_payload_after_newer_event(shopify, admin, make_order, worker):
    """Shopify retries carry the original payload and Triggered-At: a retry of an old
    fulfilment (new webhook id as a different delivery) still cannot override the cancel."""
    channel = shopify.create()
    order = make_order(channel["id"], ORDER_ID)
    shopify.send("orders/cancelled", cancelled_order(), triggered_at=T2, webhook_id="c1")
    worker.run_until_idle()
    for attempt in range(2):
        shopify.send("orders/fulfilled", fulfilled_order(), triggered_at=T1, webhook_id="f1")
        worker.run_until_idle()
    assert order_detail(admin, order)["status"] == "CANCELLED"
    assert len(deliveries(admin)) == 2


# -- lifecycle: app/uninstalled ---------------------------------------------------------------


def test_app_uninstalled_deactivates_the_channel_once_shopify_confirms(shopify, admin, api,
                                                                        worker):
    channel = shopify.create()
    assert len(shopify.subscriptions) == 6
    shopify.uninstall()
    calls = len(api.calls)
    response = shopify.send("app/uninstalled", app_uninstalled())
    assert response.status_code == 200
    worker.run_until_idle()
    worker.housekeeping(force=True)  # the periodic subscription check must not call
    # one call only: the confirmation that Shopify refuses the token
    assert [c.request.url for c in api.calls[calls:]] == [shopify.shop_endpoint]
    detail = admin.get(f"/channels/{channel['id']}")
    assert detail["active"] is False
    assert detail["subscriptions"] == []
    stored = delivery(admin, response)
    assert stored["outcome"] == "applied" and "uninstalled" in stored["reason"]
    history = admin.get(f"/channels/{channel['id']}/history")
    assert history[-1]["field"] == "active" and history[-1]["actor"] == "channel"
    # an inactive channel takes no more order deliveries
    assert shopify.send("orders/cancelled", cancelled_order()).status_code == 404


def test_reinstall_reactivates_and_resubscribes(shopify, admin, worker):
    channel = shopify.create()
    shopify.uninstall()
    shopify.send("app/uninstalled", app_uninstalled())
    worker.run_until_idle()
    shopify.installed, shopify.token = True, "shpat_new_token"
    detail = admin.patch(f"/channels/{channel['id']}", {
        "active": True, "credentials": {"access_token": "shpat_new_token"}})
    assert detail["active"] is True
    assert shopify.topics(channel["webhook_url"]) == {
        "ORDERS_CANCELLED", "FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE", "ORDERS_FULFILLED",
        "ORDERS_PARTIALLY_FULFILLED", "APP_UNINSTALLED"}


# -- privacy ----------------------------------------------------------------------------------


def _two_customers(shopify, make_order, worker):
    """Order ORDER_ID belongs to John (the samples' customer); order 42 to someone else."""
    channel = shopify.create()
    john = make_order(channel["id"], ORDER_ID, customer={
        "id": CUSTOMER_ID, "email": CUSTOMER_EMAIL, "name": "John Smith"})
    other = make_order(channel["id"], 42, customer={"id": 7, "email": "ada@example.com"})
    johns = shopify.send("orders/cancelled", cancelled_order())
    others = shopify.send("orders/cancelled", cancelled_order(
        order_id=42, email="ada@example.com", customer={"id": 7, "email": "ada@example.com"}))
    worker.run_until_idle()
    return channel, john, other, johns, others


def test_customers_data_request_is_recorded_and_ignored(shopify, admin, worker):
    shopify.create()
    response = shopify.send("customers/data_request", customers_data_request())
    assert response.status_code == 200
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["topic"] == "customers/data_request"
    assert stored["outcome"] == "ignored" and "recorded" in stored["reason"]
    assert stored["body"] is not None


def test_customers_redact_removes_that_customers_data(shopify, admin, make_order, worker):
    channel, john, other, johns, others = _two_customers(shopify, make_order, worker)
    assert CUSTOMER_EMAIL in delivery(admin, johns)["body"]
    response = shopify.send("customers/redact", customers_redact())
    assert response.status_code == 200
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "applied"
    assert "1 order(s), 1 stored delivery body(ies)" in stored["reason"]
    assert delivery(admin, johns)["body"] is None
    assert delivery(admin, johns)["body_purged_at"] is not None
    detail = order_detail(admin, john)
    assert detail["customer"] is None
    assert detail["status"] == "CANCELLED"  # the order itself stays
    assert detail["history"][-1]["event"] == "redacted"
    assert "personal data removed" in detail["history"][-1]["message"]
    # the other customer is untouched
    assert "ada@example.com" in delivery(admin, others)["body"]
    assert order_detail(admin, other)["customer"]["email"] == "ada@example.com"


def test_customers_redact_finds_orders_by_customer_id_too(shopify, admin, make_order, worker):
    channel, john, other, johns, others = _two_customers(shopify, make_order, worker)
    shopify.send("customers/redact", customers_redact(orders=()))
    worker.run_until_idle()
    assert order_detail(admin, john)["customer"] is None
    assert delivery(admin, johns)["body"] is None
    assert order_detail(admin, other)["customer"] is not None


def test_customers_redact_for_another_shop_redacts_nothing(shopify, admin, make_order, worker):
    channel, john, *_ = _two_customers(shopify, make_order, worker)
    before = len(deliveries(admin))
    response = shopify.send("customers/redact",
                            customers_redact(shop="someone-else.myshopify.com"))
    assert response.status_code == 400
    assert "someone-else.myshopify.com" in response.get_json()["message"]
    worker.run_until_idle()
    assert len(deliveries(admin)) == before
    assert order_detail(admin, john)["customer"] is not None


def test_shop_redact_removes_everything(shopify, admin, make_order, worker):
    channel, john, other, johns, others = _two_customers(shopify, make_order, worker)
    shopify.uninstall()  # the channel is still active: Shopify confirms the token is revoked
    response = shopify.send("shop/redact", shop_redact())
    worker.run_until_idle()
    stored = delivery(admin, response)
    assert stored["outcome"] == "applied" and "all of the shop's" in stored["reason"]
    for d in (johns, others):
        assert delivery(admin, d)["body"] is None
    for o in (john, other):
        detail = order_detail(admin, o)
        assert detail["customer"] is None and detail["history"][-1]["event"] == "redacted"


def test_shop_redact_48h_after_uninstall_is_still_accepted(shopify, admin, make_order, worker,
                                                          api):
    """shop/redact arrives after app/uninstalled deactivated the channel: still verified, 200,
    and carried out; order topics to the inactive channel stay 404."""
    channel, john, other, johns, others = _two_customers(shopify, make_order, worker)
    shopify.uninstall()
    shopify.send("app/uninstalled", app_uninstalled())
    worker.run_until_idle()
    assert admin.get(f"/channels/{channel['id']}")["active"] is False
    calls = len(api.calls)
    assert shopify.send("shop/redact", shop_redact(), secret="forged").status_code == 404
    assert shopify.send("orders/cancelled", cancelled_order()).status_code == 404
    response = shopify.send("shop/redact", shop_redact())
    assert response.status_code == 200, response.get_json()
    redact = shopify.send("customers/redact", customers_redact())
    assert redact.status_code == 200
    worker.run_until_idle()
    assert delivery(admin, response)["outcome"] == "applied"
    assert delivery(admin, johns)["body"] is None and delivery(admin, others)["body"] is None
    assert order_detail(admin, john)["customer"] is None
    assert len(api.calls) == calls


@pytest.mark.parametrize("value, expected", [
    ("2026-03-01T11:00:00.123456789Z", "2026-03-01T11:00:00.123456+00:00"),
    ("2026-03-01T11:00:00Z", "2026-03-01T11:00:00+00:00"),
    ("2021-12-31T19:00:00-05:00", "2021-12-31T19:00:00-05:00"),
    ("2026-03-01T11:00:00", "2026-03-01T11:00:00+00:00"),  # naive: UTC
    ("2026-03-01 11:00:00.5+02:00", "2026-03-01T11:00:00.500000+02:00"),
    ("soon", None), ("", None), (None, None), (1700000000, None)])
def test_parse_time(value, expected):
    from plugins.shopify.plugin import parse_time
    parsed = parse_time(value)
    assert (parsed.isoformat() if parsed else None) == expected


@pytest.mark.parametrize("topic", ["orders/cancelled", "fulfillments/create",
                                   "fulfillments/update", "orders/fulfilled",
                                   "orders/partially_fulfilled", "app/uninstalled",
                                   "customers/data_request", "customers/redact", "shop/redact"])
def test_translate_survives_odd_payloads(topic, api):
    """Authentic but odd payloads (a value of the wrong type anywhere) give intents or
    InvalidDelivery — never another exception that would retry the delivery until it is dead."""
    import random
    import responses
    api.add(responses.GET, f"https://{SHOP}/admin/api/{API_VERSION}/shop.json", status=401)
    from core.adapters import Channel, Delivery, DeliveryInfo, Headers
    from core.errors import InvalidDelivery
    from core.intents import (Cancel, DeactivateChannel, Fulfill, Ignore, RedactPersonalData,
                              to_dict)
    from plugins.shopify.plugin import ShopifyAdapter
    INTENTS = (Cancel, Fulfill, DeactivateChannel, RedactPersonalData, Ignore)
    adapter = ShopifyAdapter()
    channel = Channel(id=1, type="shopify", name="s", active=True,
                      credentials={"shop_domain": SHOP, "client_secret": SECRET,
                                   "access_token": TOKEN},
                      webhook_secret="x", webhook_url="https://o.example/webhooks/shopify/1")
    base = {"orders/cancelled": cancelled_order(), "orders/fulfilled": cancelled_order(
                fulfillments=[fulfillment()]),
            "orders/partially_fulfilled": cancelled_order(fulfillments=[fulfillment()]),
            "app/uninstalled": app_uninstalled(), "customers/data_request":
                customers_data_request(), "customers/redact": customers_redact(),
            "shop/redact": shop_redact()}.get(topic) or fulfillment()
    odd = [None, True, 0, -1, 2**70, 1.5e308, float("inf"), "", "x", [], {}, [None], {"a": 1},
           ["x"], [{}]]
    rng = random.Random(topic)

    def mutate(node, depth=0):
        if isinstance(node, dict) and node and depth < 5:
            key = rng.choice(sorted(node))
            copy_ = dict(node)
            copy_[key] = (mutate(node[key], depth + 1) if isinstance(node[key], (dict, list))
                          and rng.random() < 0.5 else rng.choice(odd))
            return copy_
        if isinstance(node, list) and node and depth < 5:
            copy_ = list(node)
            i = rng.randrange(len(node))
            copy_[i] = mutate(node[i], depth + 1) if rng.random() < 0.5 else rng.choice(odd)
            return copy_
        return rng.choice(odd)

    translated = refused = 0
    for _ in range(150):
        payload = mutate(base)
        body = json.dumps(payload).encode()
        delivery = Delivery(body=body, headers=Headers({"X-Shopify-Topic": topic,
                                                        "X-Shopify-Triggered-At": T1}))
        try:
            info = adapter.inspect(delivery, channel)
            intents = list(adapter.translate(delivery, channel))
        except InvalidDelivery:
            refused += 1
            continue
        translated += 1
        assert isinstance(info, DeliveryInfo) and isinstance(info.key, str) and info.key
        assert all(isinstance(i, INTENTS) for i in intents), intents
        for intent in intents:
            if hasattr(intent, "channel_order_id"):
                assert isinstance(intent.channel_order_id, str) and intent.channel_order_id
            if isinstance(intent, (Cancel, Fulfill)):  # stored as JSON when deferred
                assert json.loads(json.dumps(to_dict(intent)))["kind"] == type(intent).__name__
    if topic == "shop/redact":  # exactly {shop_id, shop_domain}: an odd value in either is refused
        assert (translated, refused) == (0, 150)
    else:  # the odd payloads reached translate, not only inspect's refusals
        assert translated > 0, (translated, refused)


def test_customers_redact_also_blanks_an_earlier_data_request_naming_the_customer(shopify, admin,
                                                                                   worker):
    shopify.create()
    request = shopify.send("customers/data_request", customers_data_request())
    worker.run_until_idle()
    assert CUSTOMER_EMAIL in delivery(admin, request)["body"]
    redact = shopify.send("customers/redact", customers_redact(orders=()))
    worker.run_until_idle()
    assert delivery(admin, request)["body"] is None
    assert delivery(admin, redact)["body"] is None  # the request itself names the customer
    assert delivery(admin, redact)["outcome"] == "applied"
