"""Per-channel webhook choices: which webhooks a channel uses, the subscriptions that follow the
ticked set exactly (BigCommerce scopes, Shopify topics), the default for channels that never
chose, the edit history and the admin API's refusals."""
from tests.shopify_helpers import ALL_TOPICS
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)


def scopes(bc):
    return sorted(h["scope"] for h in bc.hooks.values())


def test_a_channel_that_never_chose_keeps_cancellation_and_fulfilment_from_its_statuses(
        bc, admin):
    channel = bc.create(fulfill=())
    assert channel["webhooks"] is None
    assert channel["enabled_webhooks"] == ["cancellation"]
    assert scopes(bc) == ["store/order/statusUpdated"]
    none = admin.patch(f"/channels/{channel['id']}", {"valid_cancellation_statuses": []})
    assert none["enabled_webhooks"] == [] and scopes(bc) == []


def test_bigcommerce_subscribes_exactly_the_ticked_webhooks(bc, admin):
    channel = bc.create()
    cid = channel["id"]
    ticked = admin.patch(f"/channels/{cid}", {"webhooks": ["order_creation", "order_payment"]})
    assert ticked["webhooks"] == ["order_creation", "order_payment"]
    assert ticked["enabled_webhooks"] == ["order_creation", "order_payment"]
    assert scopes(bc) == ["store/order/created", "store/order/statusUpdated"]
    # unticking order creation unsubscribes its scope, and only it
    admin.patch(f"/channels/{cid}", {"webhooks": ["cancellation"]})
    assert scopes(bc) == ["store/order/statusUpdated"]
    admin.patch(f"/channels/{cid}", {"webhooks": []})
    assert scopes(bc) == []
    # a scope that drops is put back by the check, as the others are
    admin.patch(f"/channels/{cid}", {"webhooks": ["order_creation"]})
    bc.hooks.clear()
    report = admin.post(f"/channels/{cid}/subscriptions", expect=200)
    assert scopes(bc) == ["store/order/created"]
    assert {s["topic"]: s["status"] for s in report["subscriptions"]} == {
        "store/order/created": "active"}
    # null goes back to what the statuses imply
    back = admin.patch(f"/channels/{cid}", {"webhooks": None})
    assert back["enabled_webhooks"] == ["cancellation", "fulfillment"]
    assert scopes(bc) == ["store/order/statusUpdated"]


def test_every_webhook_change_is_in_the_channels_history(bc, admin):
    channel = bc.create()
    cid = channel["id"]
    admin.patch(f"/channels/{cid}", {"webhooks": ["order_creation", "cancellation"]})
    admin.patch(f"/channels/{cid}", {"webhooks": ["cancellation"],
                                     "import_test_orders": True})
    admin.patch(f"/channels/{cid}", {"webhooks": ["cancellation"]})  # no change: not recorded
    changes = [(c["field"], c["old_value"], c["new_value"])
               for c in admin.get(f"/channels/{cid}/history")]
    assert ("webhooks", None, ["order_creation", "cancellation"]) in changes
    assert ("webhooks", ["order_creation", "cancellation"], ["cancellation"]) in changes
    assert ("import_test_orders", False, True) in changes
    assert [c[0] for c in changes].count("webhooks") == 2


def test_refund_and_product_webhooks_subscribe_their_scopes(bc, admin):
    channel = bc.create(cancel=(), fulfill=())
    answer = admin.patch(f"/channels/{channel['id']}", {
        "webhooks": ["refund_pos", "refund_ecommerce", "product_update", "product_deletion"]})
    assert answer["enabled_webhooks"] == ["refund_pos", "refund_ecommerce", "product_update",
                                          "product_deletion"]
    assert scopes(bc) == ["store/order/refund/created", "store/product/created",
                          "store/product/deleted", "store/product/updated", "store/sku/updated"]
    admin.patch(f"/channels/{channel['id']}", {"webhooks": ["product_deletion"]})
    assert scopes(bc) == ["store/product/deleted"]


def test_unknown_webhook_names_are_422_naming_them(bc, admin):
    channel = bc.create()
    response = admin.request("PATCH", f"/channels/{channel['id']}",
                             json={"webhooks": ["order_creation", "orders/create"]})
    assert response.status_code == 422
    body = response.get_json()
    assert "webhooks" in str(body["details"]) and body["message"]
    response = admin.request("PATCH", f"/channels/{channel['id']}", json={"webhooks": "all"})
    assert response.status_code == 422
    assert admin.get(f"/channels/{channel['id']}")["webhooks"] is None


def test_shopify_maps_each_webhook_to_its_topics(shopify, admin):
    channel = shopify.create()
    assert shopify.topics() == ALL_TOPICS
    cid = channel["id"]
    admin.patch(f"/channels/{cid}", {"webhooks": ["order_creation", "order_payment",
                                                  "cancellation"]})
    assert shopify.topics() == {"ORDERS_CREATE", "ORDERS_PAID", "ORDERS_CANCELLED",
                                "APP_UNINSTALLED"}
    admin.patch(f"/channels/{cid}", {"webhooks": ["order_payment"]})
    assert shopify.topics() == {"ORDERS_PAID", "APP_UNINSTALLED"}
    shopify.drop("ORDERS_PAID")
    shopify.check()
    assert shopify.topics() == {"ORDERS_PAID", "APP_UNINSTALLED"}
    admin.patch(f"/channels/{cid}", {"webhooks": []})
    assert shopify.topics() == set()


def test_a_channel_can_be_created_with_its_webhooks(bc, admin):
    channel = admin.post("/channels", {
        "type": "bigcommerce", "name": "new", "webhooks": ["order_creation", "fulfillment"],
        "import_test_orders": True,
        "credentials": {"store_hash": "abc123", "access_token": "t",
                        "api_base_url": "https://bc.test"}})
    assert channel["enabled_webhooks"] == ["order_creation", "fulfillment"]
    assert channel["import_test_orders"] is True
    assert scopes(bc) == ["store/order/created", "store/order/statusUpdated"]
    created = admin.get(f"/channels/{channel['id']}/history")[0]
    assert created["new_value"]["webhooks"] == ["order_creation", "fulfillment"]
