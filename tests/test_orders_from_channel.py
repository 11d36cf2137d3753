"""Orders come from the channel: Shopify orders/create and orders/paid, BigCommerce
store/order/created and payments (statusUpdated out of Awaiting Payment), imports before a
cancellation / fulfilment / payment of an unknown order, privacy, and the edges (64-bit ids,
money as strings, hundreds of lines, unicode, 404s, out-of-order and duplicate deliveries)."""
import copy
import json

import responses

from tests.conftest import BC_STORE, load_fixture
from tests.shopify_helpers import (API_VERSION, CUSTOMER_EMAIL, CUSTOMER_ID, SHOP,
                                   customers_redact, shop_redact)
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)

ORDER_ID = 820982911946154508
ALL_ORDER_HOOKS = ["order_creation", "order_payment", "cancellation", "fulfillment"]


def new_order(order_id=ORDER_ID, financial_status="pending", **changes) -> dict:
    """The published orders/create sample as a live order: not a test, not cancelled."""
    sample = copy.deepcopy(load_fixture("shopify", "orders_create.json"))
    sample.update({"id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
                   "test": False, "cancelled_at": None, "cancel_reason": None,
                   "financial_status": financial_status})
    sample.update(changes)
    return sample


def shopify_channel(shopify, admin, webhooks=ALL_ORDER_HOOKS, cancel=("AWAITING_PAYMENT",
                                                                      "AWAITING_SHIPMENT"),
                    **settings):
    channel = shopify.create(cancel=cancel)
    shopify.channel = admin.patch(f"/channels/{channel['id']}",
                                  {"webhooks": list(webhooks), **settings})
    return shopify.channel


def the_order(admin, channel, order_id=ORDER_ID):
    found = admin.get(f"/orders?channel_id={channel['id']}&channel_order_id={order_id}")
    assert len(found) <= 1
    return admin.get(f"/orders/{found[0]['id']}") if found else None


def outcome(admin, response):
    return admin.get(f"/deliveries/{response.get_json()['delivery_id']}")


# -- Shopify --------------------------------------------------------------------------------------


def test_shopify_orders_create_imports_the_whole_order_awaiting_payment(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    response = shopify.send("orders/create", new_order())
    assert response.status_code == 200
    worker.run_until_idle()
    order = the_order(admin, channel)
    sample = load_fixture("shopify", "orders_create.json")
    assert order["status"] == "AWAITING_PAYMENT"
    assert order["channel_order_id"] == "820982911946154508"  # 64-bit, exact
    assert order["order_number"] == "#9999" and order["currency"] == "USD"
    assert order["totals"]["total"] == "404.95" == sample["total_price"]
    assert order["placed_at"].startswith("2022-01-01T00:00:00")  # -05:00 as UTC
    assert order["customer"]["id"] == str(CUSTOMER_ID)
    assert order["customer"]["email"] == CUSTOMER_EMAIL
    assert order["shipping_address"]["address1"] == sample["shipping_address"]["address1"]
    assert order["billing_address"]["city"] == sample["billing_address"]["city"]
    assert [line["channel_line_id"] for line in order["lines"]] == [
        str(line["id"]) for line in sample["line_items"]]
    first = order["lines"][0]
    assert first["unit_price"] == sample["line_items"][0]["price"]
    assert first["quantity"] == sample["line_items"][0]["quantity"]
    assert order["history"][0]["event"] == "created"
    assert "pending" in order["history"][0]["message"]


def test_shopify_orders_paid_moves_an_order_awaiting_payment_on(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    paid = shopify.send("orders/paid", new_order(financial_status="paid",
                                                 updated_at="2022-01-02T00:00:00-05:00"))
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["status"] == "UNPROCESSED"
    assert [(p["outcome"], p["amount"], p["status"]) for p in order["payments"]] == [
        ("applied", "404.95", "paid")]
    assert outcome(admin, paid)["outcome"] == "applied"
    # the same payment again (a retry with a new body): recorded, ignored, status kept
    again = shopify.send("orders/paid", new_order(financial_status="paid",
                                                  updated_at="2022-01-03T00:00:00-05:00"))
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["status"] == "UNPROCESSED"
    assert order["payments"][-1]["outcome"] == "ignored"
    assert "not AWAITING_PAYMENT" in outcome(admin, again)["reason"]


def test_a_paid_order_starts_unprocessed(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order(financial_status="paid"))
    worker.run_until_idle()
    assert the_order(admin, channel)["status"] == "UNPROCESSED"


def test_payment_before_creation_is_held_and_applied_when_the_order_arrives(
        shopify, admin, worker, make_order):
    channel = shopify_channel(shopify, admin, webhooks=["order_payment", "cancellation"])
    paid = shopify.send("orders/paid", new_order(financial_status="paid"))
    worker.run_until_idle()
    assert outcome(admin, paid)["outcome"] == "deferred"
    assert the_order(admin, channel) is None
    created = make_order(channel["id"], ORDER_ID, status="AWAITING_PAYMENT")
    assert created["status"] == "UNPROCESSED"
    assert created["payments"][0]["outcome"] == "applied"
    assert outcome(admin, paid)["outcome"] == "applied"


def test_paid_before_create_with_order_creation_on_is_one_order(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/paid", new_order(financial_status="paid"))
    worker.run_until_idle()
    created = shopify.send("orders/create", new_order())
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["status"] == "UNPROCESSED"
    assert outcome(admin, created)["outcome"] == "ignored"
    assert "already imported" in outcome(admin, created)["reason"]


def test_duplicate_creations_and_the_admin_api_make_one_order(shopify, admin, worker,
                                                               make_order):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    shopify.send("orders/create", new_order(updated_at="2022-01-05T00:00:00-05:00"))
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert len(order["lines"]) == 5
    response = admin.request("POST", "/orders", json={
        "channel_id": channel["id"], "channel_order_id": str(ORDER_ID)})
    assert response.status_code == 409
    # the admin API first, the webhook after: still one order, its details filled in
    make_order(channel["id"], "1001", status="AWAITING_SHIPMENT")
    shopify.send("orders/create", new_order(order_id=1001))
    worker.run_until_idle()
    imported = the_order(admin, channel, 1001)
    assert imported["status"] == "AWAITING_SHIPMENT" and len(imported["lines"]) == 5
    assert imported["history"][-1]["event"] == "details_imported"
    assert len(admin.get(f"/orders?channel_id={channel['id']}")) == 2


def test_test_orders_are_imported_only_when_the_channel_says_so(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    skipped = shopify.send("orders/create", new_order(test=True))
    worker.run_until_idle()
    assert the_order(admin, channel) is None
    assert "test order" in outcome(admin, skipped)["reason"]
    admin.patch(f"/channels/{channel['id']}", {"import_test_orders": True})
    shopify.send("orders/create", new_order(test=True, updated_at="2022-02-01T00:00:00Z"))
    worker.run_until_idle()
    assert the_order(admin, channel)["status"] == "AWAITING_PAYMENT"


def test_order_creation_off_ignores_orders_create(shopify, admin, worker):
    channel = shopify_channel(shopify, admin, webhooks=["cancellation"])
    response = shopify.send("orders/create", new_order())
    worker.run_until_idle()
    assert the_order(admin, channel) is None
    assert "order creation is off" in outcome(admin, response)["reason"]


def test_a_cancellation_before_the_creation_ends_cancelled(shopify, admin, worker, api):
    """orders/cancelled first, for an order Shopify's API does not answer for (404: recorded,
    the cancel held); then orders/create: imported AWAITING_PAYMENT, a valid cancellation
    status here, so the held cancel applies."""
    channel = shopify_channel(shopify, admin)
    rest = f"https://{SHOP}/admin/api/{API_VERSION}/orders/{ORDER_ID}.json"
    api.add(responses.GET, rest, status=404, json={"errors": "Not Found"})
    cancelled = shopify.send("orders/cancelled", new_order(
        cancelled_at="2022-01-01T10:00:00Z", cancel_reason="customer"))
    worker.run_until_idle()
    held = outcome(admin, cancelled)
    assert held["outcome"] == "deferred"
    assert "404" in held["reason"]
    assert len([c for c in api.calls if c.request.url == rest]) == 1
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["status"] == "CANCELLED"
    assert outcome(admin, cancelled)["outcome"] == "applied"
    assert len([c for c in api.calls if c.request.url == rest]) == 1  # never read again


def test_a_cancellation_of_an_unknown_order_imports_it_from_the_api_first(
        shopify, admin, worker, api):
    channel = shopify_channel(shopify, admin)
    rest = f"https://{SHOP}/admin/api/{API_VERSION}/orders/{ORDER_ID}.json"
    api.add(responses.GET, rest, json={"order": new_order()})
    cancelled = shopify.send("orders/cancelled", new_order(
        cancelled_at="2022-01-01T10:00:00Z", cancel_reason="customer"))
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["status"] == "CANCELLED"
    assert [h["event"] for h in order["history"]] == ["created", "cancelled"]
    assert len(order["lines"]) == 5
    assert outcome(admin, cancelled)["outcome"] == "applied"


def test_customers_and_shop_redact_blank_imported_personal_data(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    shopify.send("orders/create", new_order(order_id=555, customer=None, email="x@example.com"))
    worker.run_until_idle()
    shopify.send("customers/redact", customers_redact())
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["customer"] is None
    assert order["shipping_address"] is None and order["billing_address"] is None
    assert order["lines"], "the lines are not personal data"
    other = the_order(admin, channel, 555)
    assert other["shipping_address"] is not None
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    shopify.uninstall()
    shopify.send("shop/redact", shop_redact())
    worker.run_until_idle()
    other = the_order(admin, channel, 555)
    assert other["customer"] is None and other["shipping_address"] is None


def test_hundreds_of_lines_unicode_and_missing_customer(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    line = load_fixture("shopify", "orders_create.json")["line_items"][0]
    lines = [{**line, "id": 9_000_000_000_000_000_000 + i, "name": f"Чайник №{i} — 茶",
              "sku": None if i % 2 else "", "product_id": None, "variant_id": None,
              "price": "0.10"} for i in range(300)]
    body = new_order(line_items=lines, customer=None, email=None, contact_email=None,
                     phone=None, shipping_address=None,
                     billing_address=None, total_price="30.00")
    assert len(json.dumps(body)) > 100_000
    response = shopify.send("orders/create", body)
    assert response.status_code == 200
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert len(order["lines"]) == 300
    assert order["lines"][7]["name"] == "Чайник №7 — 茶"
    assert order["lines"][299]["channel_line_id"] == str(9_000_000_000_000_000_299)
    assert order["customer"] is None and order["shipping_address"] is None
    assert order["totals"]["total"] == "30.00"


def test_a_float_price_is_refused_alone_without_a_5xx(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    bad = new_order(order_id=777)
    bad["line_items"][0]["price"] = 19.99
    refused = shopify.send("orders/create", bad)
    good = shopify.send("orders/create", new_order())
    assert refused.status_code == good.status_code == 200
    worker.run_until_idle()
    assert outcome(admin, refused)["outcome"] == "dead"
    assert "decimal string" in outcome(admin, refused)["reason"]
    assert the_order(admin, channel)["status"] == "AWAITING_PAYMENT"


def test_admin_api_lists_orders_by_creation_time(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    created = the_order(admin, channel)["created_at"]
    since = admin.get(f"/orders?channel_id={channel['id']}&created_since={created[:19]}Z"
                      "&status=AWAITING_PAYMENT")
    assert [o["channel_order_id"] for o in since] == [str(ORDER_ID)]
    assert admin.get(f"/orders?created_until={created[:10]}T00:00:00Z") == []
    bad = admin.request("GET", "/orders?created_since=yesterday")
    assert bad.status_code == 422 and bad.get_json()["message"]


# -- BigCommerce ----------------------------------------------------------------------------------


def bc_channel(bc, admin, webhooks=ALL_ORDER_HOOKS):
    channel = bc.create(cancel=("AWAITING_PAYMENT", "AWAITING_SHIPMENT"))
    bc.channel = admin.patch(f"/channels/{channel['id']}", {"webhooks": list(webhooks)})
    return bc.channel


def bc_order(bc, order_id=250, status_id=7, products=None, **extra):
    bc.order(order_id, status_id, currency_code="EUR", total_inc_tax="111.9800",
             subtotal_inc_tax="111.9800", total_tax="0.0000", customer_id=11,
             date_created="Tue, 20 Nov 2012 00:00:00 +0000",
             billing_address={"first_name": "Zoë", "last_name": "Ünal", "street_1": "1 Rue",
                              "city": "Paris", "country_iso2": "FR", "email": "zoe@example.com"},
             **extra)
    bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/{order_id}/products",
                  json=products if products is not None
                  else load_fixture("bigcommerce", "v2_order_products.json"))
    bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/{order_id}/shipping_addresses",
                  json=load_fixture("bigcommerce", "v2_order_shipping_addresses.json"))


def api_calls(bc, order_id=250):
    return [c for c in bc.api.calls if f"/v2/orders/{order_id}" in c.request.url]


def test_bigcommerce_order_created_imports_in_three_calls(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc)
    response = bc.send(scope="store/order/created")
    assert response.status_code == 200
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    products = load_fixture("bigcommerce", "v2_order_products.json")
    assert order["status"] == "AWAITING_PAYMENT"
    assert order["currency"] == "EUR" and order["totals"]["total"] == "111.9800"
    assert order["customer"] == {"id": "11", "name": "Zoë Ünal", "email": "zoe@example.com",
                                 "phone": None}
    assert order["shipping_address"]["address1"] == "666 Sussex St"
    assert [(line["channel_line_id"], line["unit_price"]) for line in order["lines"]] == [
        (str(p["id"]), p["base_price"]) for p in products]
    assert len(api_calls(bc)) == 3


def test_bigcommerce_payment_is_a_status_change_out_of_awaiting_payment(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc)
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    bc_order(bc, status_id=11)
    paid = bc.send(new_status=11, previous=7)
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == "UNPROCESSED"
    assert order["payments"][0]["status"] == "Awaiting Fulfillment (11)"
    assert outcome(admin, paid)["outcome"] == "applied"
    # not out of 7: no payment
    other = bc.send(new_status=11, previous=9, created_at=1561479999)
    worker.run_until_idle()
    assert len(the_order(admin, channel, 250)["payments"]) == 1
    assert outcome(admin, other)["outcome"] == "ignored"


def test_bigcommerce_incomplete_and_missing_orders_are_not_imported(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=0)
    incomplete = bc.send(scope="store/order/created")
    bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/404", status=404, json=[])
    missing = bc.send(scope="store/order/created", order_id=404)
    worker.run_until_idle()
    assert admin.get(f"/orders?channel_id={channel['id']}") == []
    assert "Incomplete (status 0)" in outcome(admin, incomplete)["reason"]
    assert outcome(admin, incomplete)["outcome"] == "ignored"
    assert len(api_calls(bc)) == 1  # no products or addresses read for it
    assert outcome(admin, missing)["outcome"] == "ignored"
    assert "does not exist" in outcome(admin, missing)["reason"]


def test_bigcommerce_cancel_of_an_unknown_order_imports_it_first(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=5)
    cancelled = bc.send(new_status=5, previous=7)
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == "CANCELLED"
    assert [h["event"] for h in order["history"]] == ["created", "cancelled"]
    assert outcome(admin, cancelled)["outcome"] == "applied"


def test_bigcommerce_unknown_order_without_order_creation_waits_as_before(bc, admin, worker):
    channel = bc_channel(bc, admin, webhooks=["cancellation"])
    bc_order(bc, status_id=5)
    cancelled = bc.send(new_status=5, previous=7)
    worker.run_until_idle()
    assert the_order(admin, channel, 250) is None
    assert outcome(admin, cancelled)["outcome"] == "deferred"
    assert len(api_calls(bc)) == 1


def test_bigcommerce_creation_and_payment_in_one_batch_share_the_read(bc, admin, worker):
    """Out of order and coalesced: the payment (7 → 11) and a duplicate creation arrive with the
    creation; one order read, its products and addresses once, one order, paid."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=11)
    paid = bc.send(new_status=11, previous=7)
    created = bc.send(scope="store/order/created")
    again = bc.send(scope="store/order/created", created_at=1561479400)
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == "UNPROCESSED"
    assert len(api_calls(bc)) == 3
    outcomes = sorted(outcome(admin, r)["outcome"] for r in (paid, created, again))
    assert outcomes == ["applied", "ignored", "ignored"]
    assert order["payments"][0]["outcome"] == "ignored"  # it was paid when it was imported


def test_bigcommerce_order_whose_products_are_gone_is_imported_without_lines(bc, admin, worker):
    channel = bc_channel(bc, admin)
    bc_order(bc)
    bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/250/products", status=404, json=[])
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == "AWAITING_PAYMENT" and order["lines"] == []


def test_a_throttled_import_read_reschedules_the_delivery(shopify, admin, worker, api):
    channel = shopify_channel(shopify, admin)
    rest = f"https://{SHOP}/admin/api/{API_VERSION}/orders/{ORDER_ID}.json"
    api.add(responses.GET, rest, status=429, headers={"Retry-After": "30"})
    cancelled = shopify.send("orders/cancelled", new_order(
        cancelled_at="2022-01-01T10:00:00Z", cancel_reason="customer"))
    other = shopify.send("orders/create", new_order(order_id=4242))
    worker.run_until_idle()
    delivery = outcome(admin, cancelled)
    assert delivery["state"] == "pending" and "throttl" in delivery["reason"]
    assert delivery["attempts"] == 0
    assert the_order(admin, channel, 4242)["status"] == "AWAITING_PAYMENT"  # not stalled


def test_the_delivery_records_the_import_without_personal_data(shopify, admin, worker):
    """The order keeps the customer and addresses, where privacy requests blank them; the
    delivery's recorded intents only summarise the import."""
    shopify_channel(shopify, admin)
    response = shopify.send("orders/create", new_order())
    worker.run_until_idle()
    [intent] = outcome(admin, response)["intents"]
    assert intent["kind"] == "CreateOrder" and intent["lines"] == 5
    assert intent["totals"]["total"] == "404.95"
    assert CUSTOMER_EMAIL not in json.dumps(intent)
    assert "shipping_address" not in intent and "customer" not in intent


def test_bigcommerce_incomplete_order_is_imported_when_it_completes_checkout(bc, admin, worker):
    """Created as Incomplete (0): not imported; its statusUpdated 0 -> 11 (the published
    fixture's change) imports it, paid."""
    channel = bc_channel(bc, admin)
    bc_order(bc, status_id=0)
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    assert the_order(admin, channel, 250) is None
    bc_order(bc, status_id=11)
    completed = bc.send(new_status=11, previous=0)
    worker.run_until_idle()
    order = the_order(admin, channel, 250)
    assert order["status"] == "UNPROCESSED" and len(order["lines"]) == 2
    assert outcome(admin, completed)["outcome"] == "applied"
