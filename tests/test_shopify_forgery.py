"""Attacks with captured Shopify deliveries, through the real intake, worker and database.

Shopify signs only the body: the topic, webhook id and shop domain are headers that whoever
holds one genuine delivery (and its X-Shopify-Hmac-Sha256) can change at will. Each test below
re-sends a genuine, correctly signed body with forged headers and shows it has no effect.
"""
import json

import pytest
import responses

from tests.conftest import load_fixture

from tests.shopify_helpers import (CUSTOMER_EMAIL, CUSTOMER_ID, ORDER_ID, app_uninstalled,
                                   cancelled_order, customers_data_request, customers_redact,
                                   fulfilled_order, fulfillment, shop_redact)
from tests.shopify_helpers import deliveries as stored, delivery, order_detail as detail
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)

OTHER_SHOP = "shop-b.myshopify.com"


@pytest.fixture
def shop(shopify, admin, make_order, worker):
    """A channel with two customers' cancelled orders, processed: John's (ORDER_ID) and Ada's (42).
    Returns (channel, john's order, ada's order, john's delivery, ada's delivery)."""
    channel = shopify.create(cancel=["AWAITING_SHIPMENT"], fulfill=["AWAITING_SHIPMENT"])
    john = make_order(channel["id"], ORDER_ID, customer={"id": CUSTOMER_ID,
                                                         "email": CUSTOMER_EMAIL})
    ada = make_order(channel["id"], 42, customer={"id": 7, "email": "ada@example.com"})
    johns = shopify.send("orders/cancelled", cancelled_order())
    adas = shopify.send("orders/cancelled", cancelled_order(
        order_id=42, email="ada@example.com", customer={"id": 7, "email": "ada@example.com"}))
    assert johns.status_code == adas.status_code == 200
    worker.run_until_idle()
    return channel, john, ada, johns, adas


def _nothing_redacted(admin, shop):
    channel, john, ada, johns, adas = shop
    assert CUSTOMER_EMAIL in delivery(admin, johns)["body"]
    assert "ada@example.com" in delivery(admin, adas)["body"]
    assert detail(admin, john)["customer"] is not None
    assert detail(admin, ada)["customer"] is not None
    assert admin.get(f"/channels/{channel['id']}")["active"] is True


# -- a captured body re-sent under a fresh webhook id ----------------------------------------------


def test_same_body_with_a_fresh_webhook_id_is_a_duplicate_and_applied_once(shopify, admin,
                                                                          make_order, worker):
    channel = shopify.create(cancel=["AWAITING_SHIPMENT"], fulfill=[])
    order = make_order(channel["id"], ORDER_ID)
    body = json.dumps(cancelled_order()).encode()
    first = shopify.send("orders/cancelled", body=body, webhook_id="genuine-1")
    worker.run_until_idle()
    assert detail(admin, order)["status"] == "CANCELLED"
    # the merchant re-opens the order in orderhooks' view; the replay must not cancel it again
    replays = [shopify.send("orders/cancelled", body=body, webhook_id=f"forged-{n}")
               for n in range(3)]
    for replay in replays:
        assert replay.status_code == 200
        assert replay.get_json() == {"status": "duplicate",
                                     "delivery_id": first.get_json()["delivery_id"]}
    worker.run_until_idle()
    assert len(stored(admin)) == 1
    assert [h["event"] for h in detail(admin, order)["history"]] == ["created", "cancelled"]


def test_same_body_under_another_topic_is_not_a_duplicate_of_it(shopify, admin):
    """The key covers the topic: a genuine orders/updated and orders/cancelled may share a body."""
    shopify.create()
    body = json.dumps(cancelled_order()).encode()
    assert shopify.send("orders/updated", body=body).get_json()["status"] == "accepted"
    assert shopify.send("orders/cancelled", body=body).get_json()["status"] == "accepted"


# -- a body re-sent under a destructive topic -------------------------------------------------------


@pytest.mark.parametrize("topic, expected", [
    ("shop/redact", "{shop_id, shop_domain}"),
    ("customers/redact", "{shop_id, shop_domain, customer, orders_to_redact}"),
    ("app/uninstalled", "a shop object"),
])
def test_an_order_re_sent_as_a_destructive_topic_is_refused(shopify, admin, worker, api, shop,
                                                            topic, expected):
    before = len(stored(admin))
    calls = len(api.calls)
    response = shopify.send(topic, cancelled_order())
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "invalid_delivery"
    assert topic in answer["message"] and expected in answer["message"], answer["message"]
    worker.run_until_idle()
    assert len(stored(admin)) == before  # nothing stored, so nothing the worker could apply
    assert len(api.calls) == calls
    _nothing_redacted(admin, shop)


@pytest.mark.parametrize("topic, body, named", [
    # only the body of a genuine shop/redact has no customer in it
    ("shop/redact", customers_redact(), "customer"),
    ("customers/redact", customers_data_request(), "data_request"),
])
def test_a_customers_request_re_sent_as_a_wider_one_is_refused(shopify, admin, worker, shop,
                                                               topic, body, named):
    response = shopify.send(topic, body)
    assert response.status_code == 400
    assert named in response.get_json()["message"]
    worker.run_until_idle()
    _nothing_redacted(admin, shop)


@pytest.mark.parametrize("topic, body", [
    ("orders/cancelled", fulfillment(status="success")),
    ("orders/fulfilled", fulfillment(status="success")),
    ("fulfillments/create", fulfilled_order()),
    ("orders/cancelled", app_uninstalled()),
    ("orders/cancelled", customers_redact()),
    ("fulfillments/update", shop_redact()),
    ("orders/cancelled", cancelled_order(admin_graphql_api_id="gid://shopify/DraftOrder/1")),
    # the topics that create orders, RMAs and products take only their own kind of body
    ("orders/create", fulfillment(status="success")),
    ("orders/paid", customers_redact()),
    ("refunds/create", cancelled_order()),
    ("refunds/create", fulfillment(status="success")),
    ("orders/cancelled", load_fixture("shopify", "refunds_create.json")),
    ("products/update", cancelled_order()),
])
def test_a_body_of_another_kind_is_refused_for_an_order_topic(shopify, admin, shop, topic,
                                                              body):
    before = len(stored(admin))
    response = shopify.send(topic, body)
    assert response.status_code == 400, response.get_json()
    assert f"does not look like {topic}" in response.get_json()["message"]
    assert len(stored(admin)) == before


def test_an_order_body_re_sent_as_orders_cancelled_does_not_cancel(shopify, admin, make_order,
                                                                   worker):
    """A captured orders/fulfilled (not cancelled: cancelled_at null) is an order, so it is
    stored, but it does not show a cancellation: ignored, with the reason."""
    channel = shopify.create(cancel=["AWAITING_SHIPMENT"], fulfill=[])
    order = make_order(channel["id"], ORDER_ID)
    response = shopify.send("orders/cancelled", fulfilled_order())
    assert response.status_code == 200
    worker.run_until_idle()
    assert detail(admin, order)["status"] == "AWAITING_SHIPMENT"
    got = delivery(admin, response)
    assert got["outcome"] == "ignored" and "no cancelled_at" in got["reason"]


def test_a_partially_fulfilled_order_re_sent_as_orders_fulfilled_does_not_ship(shopify, admin,
                                                                              make_order,
                                                                              worker):
    channel = shopify.create(cancel=[], fulfill=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], ORDER_ID)
    partial = fulfilled_order("partial", fulfillments=[fulfillment(status="success")])
    response = shopify.send("orders/fulfilled", partial)
    worker.run_until_idle()
    assert detail(admin, order)["status"] == "AWAITING_SHIPMENT"
    got = delivery(admin, response)
    assert got["outcome"] == "ignored" and "fulfillment_status partial" in got["reason"]


# -- app/uninstalled: confirmed with Shopify before the channel is switched off --------------------


def test_a_shop_object_sent_as_app_uninstalled_while_installed_is_ignored(shopify, admin, worker,
                                                                          shop):
    """A shop/update delivery carries the same shop object as app/uninstalled; while Shopify
    still accepts the channel's token the app is installed, so nothing is switched off."""
    channel = shop[0]
    response = shopify.send("app/uninstalled", app_uninstalled())
    assert response.status_code == 200
    worker.run_until_idle()
    got = delivery(admin, response)
    assert got["outcome"] == "ignored"
    assert "still accepts this channel's access token" in got["reason"]
    assert len(shopify.shop_calls()) == 1
    assert admin.get(f"/channels/{channel['id']}")["active"] is True
    assert shopify.send("orders/cancelled", cancelled_order(order_id=43)).status_code == 200


def test_a_genuine_uninstall_is_confirmed_and_switches_the_channel_off(shopify, admin, worker,
                                                                       shop):
    channel = shop[0]
    shopify.uninstall()
    response = shopify.send("app/uninstalled", app_uninstalled())
    worker.run_until_idle()
    got = delivery(admin, response)
    assert got["outcome"] == "applied" and "confirmed" in got["reason"]
    assert admin.get(f"/channels/{channel['id']}")["active"] is False
    call = shopify.shop_calls()[-1]
    assert call.request.headers["X-Shopify-Access-Token"] == shopify.token


@pytest.mark.parametrize("status, outcome", [(500, "failed"), (404, "failed"), (302, "failed"),
                                             (429, "throttled")])
def test_an_uninstall_shopify_does_not_confirm_leaves_the_channel_on(shopify, admin, worker, api,
                                                                    shop, status, outcome):
    """Only 401 (the token refused) confirms: any other answer is retried, never applied."""
    channel = shop[0]
    api.replace(responses.GET, shopify.shop_endpoint, status=status,
                headers={"Location": "https://elsewhere.example/"} if status == 302 else {},
                json={"errors": "no"})
    response = shopify.send("app/uninstalled", app_uninstalled())
    worker.run_once()
    got = delivery(admin, response)
    assert got["state"] == "pending" and got["outcome"] != "applied", got
    assert (f"{status}" if outcome == "failed" else "throttl") in got["reason"]
    assert admin.get(f"/channels/{channel['id']}")["active"] is True


def test_an_uninstall_naming_another_shop_is_refused(shopify, admin, worker, shop):
    channel = shop[0]
    shopify.uninstall()
    response = shopify.send("app/uninstalled", app_uninstalled(shop=OTHER_SHOP))
    assert response.status_code == 400
    assert OTHER_SHOP in response.get_json()["message"]
    worker.run_until_idle()
    assert admin.get(f"/channels/{channel['id']}")["active"] is True


# -- the shop domain ---------------------------------------------------------------------------------


def test_a_delivery_without_the_shop_domain_header_is_refused(shopify, admin, worker, shop):
    """Shop A's uninstall (same app, same secret) with the header removed, sent to this
    channel: refused before anything is stored."""
    channel = shop[0]
    shopify.uninstall()
    before = len(stored(admin))
    for prefix in ("X-", ""):
        response = shopify.send("app/uninstalled", app_uninstalled(shop=OTHER_SHOP),
                                prefix=prefix, shop=None)
        assert response.status_code == 401
        answer = response.get_json()
        assert answer["error"] == "unauthenticated" and "Shop-Domain" in answer["message"]
    response = shopify.send("orders/cancelled", cancelled_order(order_id=43), shop="")
    assert response.status_code == 401
    worker.run_until_idle()
    assert len(stored(admin)) == before
    assert admin.get(f"/channels/{channel['id']}")["active"] is True


def test_a_header_set_to_this_shop_on_another_shops_body_is_refused(shopify, admin, worker, shop):
    """The header names this channel's shop, but the signed body names shop B: the body wins."""
    for topic, body in (("shop/redact", shop_redact(shop=OTHER_SHOP)),
                        ("customers/redact", customers_redact(shop=OTHER_SHOP)),
                        ("app/uninstalled", app_uninstalled(shop=OTHER_SHOP))):
        response = shopify.send(topic, body)
        assert response.status_code == 400, topic
        assert OTHER_SHOP in response.get_json()["message"]
    worker.run_until_idle()
    _nothing_redacted(admin, shop)


# -- shop/redact ----------------------------------------------------------------------------------


def test_shop_redact_while_the_app_is_installed_redacts_nothing(shopify, admin, worker, shop):
    """A genuine shop/redact comes 48 hours after an uninstall: on an active channel whose token
    Shopify still accepts, it is stored and ignored with the reason."""
    response = shopify.send("shop/redact", shop_redact())
    assert response.status_code == 200
    worker.run_until_idle()
    got = delivery(admin, response)
    assert got["outcome"] == "ignored" and "still accepts" in got["reason"]
    _nothing_redacted(admin, shop)


# -- customers/redact redacts that customer only -----------------------------------------------------


def test_customers_redact_leaves_other_customers_requests_alone(shopify, admin, worker, shop):
    """Deliveries about no order are blanked only when they name the customer exactly: another
    customer whose id contains John's digits, or whose email ends with John's, keeps hers."""
    near_id = customers_data_request(customer_id=int(f"9{CUSTOMER_ID}"))
    near_id["customer"]["email"] = "someone@example.com"
    near_email = customers_data_request(customer_id=5)
    near_email["customer"]["email"] = f"big{CUSTOMER_EMAIL}"
    johns_request = customers_data_request()
    kept = [shopify.send("customers/data_request", near_id),
            shopify.send("customers/data_request", near_email)]
    gone = shopify.send("customers/data_request", johns_request)
    worker.run_until_idle()
    redact = shopify.send("customers/redact", customers_redact(orders=()))
    worker.run_until_idle()
    assert delivery(admin, redact)["outcome"] == "applied"
    assert delivery(admin, gone)["body"] is None
    for response in kept:
        assert delivery(admin, response)["body"] is not None
    # and of the orders, only John's
    channel, john, ada, johns, adas = shop
    assert detail(admin, john)["customer"] is None
    assert detail(admin, ada)["customer"] == {"id": 7, "email": "ada@example.com"}
    assert "ada@example.com" in delivery(admin, adas)["body"]
