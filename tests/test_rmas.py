"""Refunds become RMAs: Shopify refunds/create (POS or e-commerce by the order's source) and
BigCommerce store/order/refund/created; only for SHIPPED orders, idempotent per refund id, with
the line actions the channel's restock data implies when the channel asks for them."""
import copy

import responses

from tests.conftest import BC_STORE, load_fixture
from tests.shopify_helpers import API_VERSION, SHOP
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
from tests.test_orders_from_channel import ORDER_ID, new_order, the_order

REFUND_HOOKS = ["order_creation", "order_payment", "refund_pos", "refund_ecommerce"]
ORDER_REST = f"https://{SHOP}/admin/api/{API_VERSION}/orders/{ORDER_ID}.json"


def refund(refund_id=890088186047892319, order_id=ORDER_ID, restock=("no_restock",) * 5,
           **changes) -> dict:
    """The published refunds/create sample, its lines' restock_type set from ``restock``."""
    sample = copy.deepcopy(load_fixture("shopify", "refunds_create.json"))
    sample.update({"id": refund_id, "order_id": order_id,
                   "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}"})
    for item, kind in zip(sample["refund_line_items"], restock):
        item["restock_type"] = kind
    sample.update(changes)
    return sample


def setup_channel(shopify, admin, webhooks=REFUND_HOOKS, **settings):
    channel = shopify.create(cancel=("AWAITING_SHIPMENT",))
    shopify.channel = admin.patch(f"/channels/{channel['id']}",
                                  {"webhooks": list(webhooks), **settings})
    return shopify.channel


def shipped_order(shopify, admin, worker, channel, status="SHIPPED", **changes):
    shopify.send("orders/create", new_order(financial_status="paid", **changes))
    worker.run_until_idle()
    order = the_order(admin, channel)
    return admin.patch(f"/orders/{order['id']}", {"status": status})


def delivered(admin, response):
    return admin.get(f"/deliveries/{response.get_json()['delivery_id']}")


def test_a_refund_of_a_shipped_order_opens_an_rma_with_its_lines(shopify, admin, worker, api):
    channel = setup_channel(shopify, admin, refund_restock_actions=True)
    order = shipped_order(shopify, admin, worker, channel)
    api.add(responses.GET, ORDER_REST, json={"order": {"id": ORDER_ID, "source_name": "web",
                                                       "location_id": None}})
    sent = shopify.send("refunds/create", refund(
        restock=("return", "cancel", "no_restock", "legacy_restock", "something_new")))
    assert sent.status_code == 200
    worker.run_until_idle()
    assert delivered(admin, sent)["outcome"] == "applied"
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["history"][-1]["event"] == "rma_created"
    [rma] = detail["rmas"]
    assert rma["channel_refund_id"] == "890088186047892319"  # 64-bit, exact
    assert rma["status"] == "open" and rma["note"] == "Things were damaged"
    sample = load_fixture("shopify", "refunds_create.json")
    assert [line["channel_line_id"] for line in rma["lines"]] == [
        str(item["line_item_id"]) for item in sample["refund_line_items"]]
    assert [line["amount"] for line in rma["lines"]] == [
        "89.99", "19.99", "24.99", "159.99", "119.99"]
    assert [line["action"] for line in rma["lines"]] == [
        "Reinsert", "Reinsert", "Write Off", "Reinsert", None]
    assert rma["lines"][0]["sku"] == "SKU2006-001"


def test_restock_setting_off_leaves_actions_unset_and_a_replay_fills_them(shopify, admin,
                                                                          worker):
    channel = setup_channel(shopify, admin)
    assert channel["refund_restock_actions"] is False
    order = shipped_order(shopify, admin, worker, channel)
    sent = shopify.send("refunds/create", refund(restock=("return",) * 5))
    worker.run_until_idle()
    [rma] = admin.get(f"/orders/{order['id']}")["rmas"]
    assert {line["action"] for line in rma["lines"]} == {None}
    # a person chooses one line's action; then the merchant fixes the setting and replays
    admin.patch(f"/rmas/{rma['id']}/lines/{rma['lines'][0]['id']}", {"action": "Write Off"})
    admin.patch(f"/channels/{channel['id']}", {"refund_restock_actions": True})
    history = admin.get(f"/channels/{channel['id']}/history")
    assert any(c["field"] == "refund_restock_actions" for c in history)
    delivery_id = sent.get_json()["delivery_id"]
    admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
    worker.run_until_idle()
    again = admin.get(f"/rmas/{rma['id']}")
    assert [line["action"] for line in again["lines"]] == ["Write Off"] + ["Reinsert"] * 4
    assert len(admin.get(f"/rmas?order_id={order['id']}")) == 1  # still one RMA
    assert again["history"][-1]["event"] == "actions_set"


def test_a_refund_of_an_order_not_shipped_is_ignored_with_the_reason(shopify, admin, worker):
    channel = setup_channel(shopify, admin)
    order = shipped_order(shopify, admin, worker, channel, status="AWAITING_SHIPMENT")
    sent = shopify.send("refunds/create", refund())
    worker.run_until_idle()
    outcome = delivered(admin, sent)
    assert outcome["outcome"] == "ignored"
    assert "not SHIPPED" in outcome["reason"]
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["rmas"] == []
    assert detail["history"][-1]["event"] == "refund_ignored"
    assert "AWAITING_SHIPMENT" in detail["history"][-1]["message"]
    # once the order shipped, replaying the refund's window opens its RMA
    admin.patch(f"/orders/{order['id']}", {"status": "SHIPPED"})
    replayed = admin.post("/deliveries/replay", {
        "channel_id": channel["id"], "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z", "outcome": ["ignored"]}, expect=202)
    assert outcome["id"] in replayed["delivery_ids"]
    worker.run_until_idle()
    assert delivered(admin, sent)["outcome"] == "applied"
    [rma] = admin.get(f"/orders/{order['id']}")["rmas"]
    assert rma["delivery_id"] == outcome["id"]


def test_idempotent_per_refund_two_refunds_two_rmas_overrefund_warned(shopify, admin, worker):
    channel = setup_channel(shopify, admin)
    order = shipped_order(shopify, admin, worker, channel)
    first = refund()
    shopify.send("refunds/create", first)
    # the same refund again under a new body (another delivery of it) creates nothing
    shopify.send("refunds/create", {**first, "note": "Things were damaged "})
    shopify.send("refunds/create", refund(refund_id=890088186047892320))
    worker.run_until_idle()
    rmas = admin.get(f"/rmas?order_id={order['id']}")
    assert [r["channel_refund_id"] for r in rmas] == ["890088186047892319",
                                                      "890088186047892320"]
    assert rmas[0]["warning"] is None
    assert "more than the 1 shipped" in rmas[1]["warning"]
    assert len(rmas[1]["lines"]) == 5  # recorded, not dropped


def test_pos_and_ecommerce_refunds_follow_their_own_checkbox(shopify, admin, worker, api):
    channel = setup_channel(shopify, admin, webhooks=["order_creation", "refund_pos"])
    shipped_order(shopify, admin, worker, channel)
    api.add(responses.GET, ORDER_REST, json={"order": {"id": ORDER_ID, "source_name": "web",
                                                       "location_id": None}})
    online = shopify.send("refunds/create", refund())
    worker.run_until_idle()
    outcome = delivered(admin, online)
    assert outcome["outcome"] == "ignored"
    assert "e-commerce refund" in outcome["reason"] and "refund_ecommerce" in outcome["reason"]
    # a transaction made at a POS says so without reading the order
    sample = refund(refund_id=890088186047892399)
    sample["transactions"][0]["source_name"] = "pos"
    pos = shopify.send("refunds/create", sample)
    worker.run_until_idle()
    assert delivered(admin, pos)["outcome"] == "applied"
    # the order read via the API: a location makes it a POS order
    api.replace(responses.GET, ORDER_REST, json={"order": {
        "id": ORDER_ID, "source_name": "shopify_draft_order", "location_id": 655441491}})
    third = shopify.send("refunds/create", refund(refund_id=890088186047892400))
    worker.run_until_idle()
    assert delivered(admin, third)["outcome"] == "applied"


def test_refund_webhooks_are_subscribed_when_ticked(shopify, admin):
    setup_channel(shopify, admin, webhooks=["refund_ecommerce"])
    assert "REFUNDS_CREATE" in shopify.topics()


def test_bad_refunds_never_5xx_nor_stall(shopify, admin, worker, api):
    channel = setup_channel(shopify, admin)
    order = shipped_order(shopify, admin, worker, channel)
    no_lines = shopify.send("refunds/create", refund(refund_line_items=[]))
    foreign = refund(refund_id=890088186047892401)
    foreign["refund_line_items"][0]["line_item_id"] = 2 ** 63 + 5
    stranger = shopify.send("refunds/create", foreign)
    malformed = shopify.send("refunds/create", {"id": "x", "order_id": ORDER_ID})
    garbage = shopify.send("refunds/create", refund(refund_id=890088186047892402,
                                                    refund_line_items=[{"quantity": "many"},
                                                                       7, None]))
    # an order never imported: read to import it (order creation is on); Shopify answers 404,
    # so the refund is held for it, as a cancellation would be
    api.add(responses.GET, ORDER_REST.replace(str(ORDER_ID), str(ORDER_ID + 1)), status=404,
            json={"errors": "Not Found"})
    unknown = shopify.send("refunds/create", refund(refund_id=890088186047892403,
                                                    order_id=ORDER_ID + 1))
    for response in (no_lines, stranger, garbage, unknown):
        assert response.status_code == 200, response.get_data()
    assert 400 <= malformed.status_code < 500 and malformed.get_json()["message"]
    worker.run_until_idle()
    assert "no lines" in delivered(admin, no_lines)["reason"]
    assert delivered(admin, garbage)["outcome"] == "dead"
    held = delivered(admin, unknown)
    assert held["outcome"] == "deferred" and "waits for it" in held["reason"]
    [rma] = admin.get(f"/rmas?order_id={order['id']}")
    assert f"line {2 ** 63 + 5} is not on the order" in rma["warning"]
    for response in (no_lines, stranger, garbage, unknown):
        assert delivered(admin, response)["state"] == "done"


# -- BigCommerce ----------------------------------------------------------------------------------


def bc_refund_payload(order_id=250, refund_id=12, created_at=1561479923):
    sample = copy.deepcopy(load_fixture("bigcommerce", "store_order_refund_created.json"))
    sample["data"].update({"id": order_id, "refund": {"refund_id": refund_id}})
    sample["created_at"] = created_at
    sample["hash"] = f"refund-{order_id}-{refund_id}-{created_at}"
    return sample


def bc_refunds(bc, order_id=250, refunds=None, status=200):
    """GET /v3/orders/{id}/payment_actions/refunds: the published refund, on order 65's line."""
    if refunds is None:
        refund = copy.deepcopy(load_fixture("bigcommerce", "v3_order_refund.json"))["data"]
        refund.update({"order_id": order_id, "items": [
            {"item_type": "PRODUCT", "item_id": 65, "quantity": 1, "requested_amount": "9.99"},
            {"item_type": "SHIPPING", "item_id": 1, "quantity": None,
             "requested_amount": 5.5}]})
        refunds = [refund]
    bc.api.upsert(responses.GET, f"{BC_STORE}/v3/orders/{order_id}/payment_actions/refunds",
                  status=status, json={"data": refunds, "meta": {}})


def bc_shipped_order(bc, admin, worker, webhooks=("order_creation", "refund_ecommerce")):
    from tests.test_orders_from_channel import bc_order
    channel = bc.create(cancel=("AWAITING_PAYMENT",))
    bc.channel = admin.patch(f"/channels/{channel['id']}", {
        "webhooks": list(webhooks), "refund_restock_actions": True})
    bc_order(bc, status_id=11)
    bc.send(scope="store/order/created")
    worker.run_until_idle()
    order = the_order(admin, bc.channel, 250)
    return admin.patch(f"/orders/{order['id']}", {"status": "SHIPPED"})


def test_bigcommerce_refund_is_read_from_v3_and_its_actions_left_to_a_person(bc, admin,
                                                                              worker):
    order = bc_shipped_order(bc, admin, worker)
    assert "store/order/refund/created" in {h["scope"] for h in bc.hooks.values()}
    bc_refunds(bc)
    sent = bc.send(bc_refund_payload())
    assert sent.status_code == 200
    worker.run_until_idle()
    assert delivered(admin, sent)["outcome"] == "applied"
    [rma] = admin.get(f"/orders/{order['id']}")["rmas"]
    assert rma["channel_refund_id"] == "12" and rma["note"] == "Customer requires a refund."
    # only the PRODUCT item; its SKU from the order's line 65; no restock data: no action
    assert [(line["channel_line_id"], line["sku"], line["quantity"], line["amount"],
             line["action"]) for line in rma["lines"]] == [("65", "S-ORAN", 1, "9.99", None)]
    # an operator sets the action, then closes the RMA through received
    etag = admin.request("GET", f"/rmas/{rma['id']}", 200).headers["ETag"]
    admin.patch(f"/rmas/{rma['id']}", {"status": "closed"}, expect=422)
    line_id = rma["lines"][0]["id"]
    set_action = admin.client.patch(f"/api/v1/rmas/{rma['id']}/lines/{line_id}",
                                    json={"action": "Reinsert"},
                                    headers={**admin.headers, "If-Match": etag})
    assert set_action.status_code == 200, set_action.get_json()
    stale = admin.client.patch(f"/api/v1/rmas/{rma['id']}", json={"status": "received"},
                               headers={**admin.headers, "If-Match": etag})
    assert stale.status_code == 412
    assert "RMA changed" in stale.get_json()["message"]
    admin.patch(f"/rmas/{rma['id']}", {"status": "received"})
    closed = admin.patch(f"/rmas/{rma['id']}", {"status": "closed"})
    assert closed["status"] == "closed"
    assert [c["event"] for c in closed["history"]] == [
        "created", "action_set", "status_changed", "status_changed"]
    refused = admin.request("PATCH", f"/rmas/{rma['id']}/lines/{line_id}", 422,
                            json={"action": "Write Off"})
    assert "closed" in refused.get_json()["message"]
    assert admin.get(f"/rmas?channel_id={bc.channel['id']}&status=closed")[0]["id"] == rma["id"]
    assert admin.get("/rmas?status=open") == []


def test_bigcommerce_refund_edges(bc, admin, worker):
    bc_shipped_order(bc, admin, worker)
    bc_refunds(bc, refunds=[])
    missing = bc.send(bc_refund_payload(refund_id=2 ** 63 + 1))
    worker.run_until_idle()
    outcome = delivered(admin, missing)
    assert outcome["outcome"] == "ignored" and str(2 ** 63 + 1) in outcome["reason"]
    admin.get("/rmas/999999", expect=404)
    assert admin.request("GET", "/rmas?status=lost", 422).get_json()["message"]
    assert admin.request("PATCH", "/rmas/999999/lines/1", 404,
                         json={"action": "Reinsert"}).get_json()["message"]


def test_bigcommerce_refund_ignored_when_no_refund_webhook_is_ticked(bc, admin, worker):
    bc_shipped_order(bc, admin, worker, webhooks=("order_creation",))
    sent = bc.send(bc_refund_payload())
    worker.run_until_idle()
    outcome = delivered(admin, sent)
    assert outcome["outcome"] == "ignored" and "refund_ecommerce" in outcome["reason"]


def test_record_refund_refuses_what_no_table_can_hold():
    import pytest

    from orderhooks import InvalidIntent, RecordRefund, RefundLine
    with pytest.raises(InvalidIntent, match="65 characters"):
        RecordRefund("1", "9" * 65)
    with pytest.raises(InvalidIntent, match="no id"):
        RecordRefund("1", "")
    with pytest.raises(InvalidIntent, match="decimal string"):
        RefundLine(channel_line_id="1", amount=9.99)
    with pytest.raises(InvalidIntent, match="none of"):
        RefundLine(channel_line_id="1", action="Restock")
    refund = RecordRefund("1", str(2 ** 64 - 1), lines=({"channel_line_id": "7", "quantity": 2},))
    assert refund.channel_refund_id == "18446744073709551615"
    assert refund.lines == (RefundLine(channel_line_id="7", quantity=2),)


def test_an_rma_opened_writes_rma_created_in_the_order_s_sequence(shopify, admin, worker, api,
                                                                   app):
    from tests.test_events import all_events
    channel = setup_channel(shopify, admin, refund_restock_actions=True)
    order = shipped_order(shopify, admin, worker, channel)
    api.add(responses.GET, ORDER_REST, json={"order": {"id": ORDER_ID, "source_name": "web",
                                                       "location_id": None}})
    shopify.send("refunds/create", refund(restock=("return",) * 5))
    worker.run_until_idle()
    shopify.send("refunds/create", refund())  # the same refund again: no second RMA, no event
    worker.run_until_idle()
    [created] = [e for e in all_events(app) if e.type == "rma.created"]
    [rma] = admin.get(f"/orders/{order['id']}")["rmas"]
    assert created.data["rma"]["id"] == rma["id"] and created.channel_id == channel["id"]
    assert created.order_key == f"order:{order['id']}"  # sent after the order's earlier events
    assert created.data["rma"]["channel_refund_id"] == "890088186047892319"
    assert [line["action"] for line in created.data["rma"]["lines"]] == ["Reinsert"] * 5
