"""POST /api/v1/orders takes the order as the channel has it — number, placed-at time, currency,
totals, customer, addresses and lines — in the model the channel imports fill, so an order
registered here and one imported from the channel's creation webhook are one order. Bad values
(floats for money, ids beyond 64 bits, too many lines, unknown fields) are 422 naming the
field."""
from __future__ import annotations

import json

import pytest

from tests.conftest import load_fixture
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
from tests.test_admin_api import assert_json_error
from tests.test_orders_from_channel import (ORDER_ID, new_order, outcome, shopify_channel,
                                            the_order)

BIG = 2**63 - 1  # the largest 64-bit id


def full_order(channel_id, channel_order_id="5001", **changes) -> dict:
    body = {
        "channel_id": channel_id, "channel_order_id": channel_order_id,
        "status": "AWAITING_SHIPMENT", "order_number": "#1001",
        "placed_at": "2026-11-30T09:15:00-05:00", "currency": "EUR",
        "totals": {"total": "1234567890123456.78", "subtotal": "100.10", "tax": "0.00",
                   "shipping": 5, "discount": "-2.5"},
        "customer": {"id": str(BIG), "name": "Zoë Ŝmith 山田", "email": "zoe@example.com",
                     "phone": "+33 1 23 45 67 89"},
        "shipping_address": {"name": "Zoë Ŝmith", "address1": "1 Rue de l'Été",
                             "city": "Zürich", "zip": "8001", "country_code": "CH"},
        "billing_address": None,
        "lines": [{"channel_line_id": BIG, "product_id": str(BIG), "variant_id": 7,
                   "sku": "SKU-é-1", "name": "Thé vert 緑茶", "quantity": 3,
                   "unit_price": "19.99"},
                  {"name": "no ids", "unit_price": 0}],
    }
    body.update(changes)
    return body


def test_an_order_with_its_details_is_stored_as_the_channel_imports_store_it(bc, admin):
    channel = bc.create()
    created = admin.post("/orders", full_order(channel["id"]))
    got = admin.get(f"/orders/{created['id']}")
    assert got == created
    assert got["status"] == "AWAITING_SHIPMENT" and got["order_number"] == "#1001"
    assert got["placed_at"].startswith("2026-11-30T14:15:00")  # -05:00 as UTC
    assert got["currency"] == "EUR"
    assert got["totals"] == {"total": "1234567890123456.78", "subtotal": "100.10",
                             "tax": "0.00", "shipping": "5", "discount": "-2.5"}
    assert got["customer"]["id"] == str(BIG) and got["customer"]["name"] == "Zoë Ŝmith 山田"
    assert got["shipping_address"]["city"] == "Zürich"
    assert got["shipping_address"]["company"] is None and got["billing_address"] is None
    first, second = got["lines"]
    assert (first["channel_line_id"], first["product_id"], first["variant_id"]) == (
        str(BIG), str(BIG), "7")  # 64-bit ids digit for digit, never through a float
    assert (first["sku"], first["name"], first["quantity"], first["unit_price"]) == (
        "SKU-é-1", "Thé vert 緑茶", 3, "19.99")
    assert (second["channel_line_id"], second["quantity"], second["unit_price"]) == (
        None, 1, "0")
    assert [h["event"] for h in got["history"]] == ["created"]


def test_hundreds_of_lines_are_taken_in_order(bc, admin):
    channel = bc.create()
    lines = [{"channel_line_id": str(10**15 + n), "sku": f"S{n}", "quantity": n % 7,
              "unit_price": f"{n}.{n % 100:02d}"} for n in range(600)]
    created = admin.post("/orders", full_order(channel["id"], lines=lines))
    got = admin.get(f"/orders/{created['id']}")["lines"]
    assert [(line["channel_line_id"], line["sku"], line["quantity"], line["unit_price"])
            for line in got] == [(line["channel_line_id"], line["sku"], line["quantity"],
                                  line["unit_price"]) for line in lines]


def test_only_the_identifying_fields_are_needed(bc, admin):
    channel = bc.create()
    created = admin.post("/orders", {"channel_id": channel["id"], "channel_order_id": "1"})
    assert created["lines"] == [] and created["totals"] == {}
    assert created["order_number"] is None and created["shipping_address"] is None


@pytest.mark.parametrize("change, field, words", [
    ({"totals": {"total": 19.99}}, "totals.total", "decimal strings"),
    ({"totals": {"total": "12,50"}}, "totals.total", "not a decimal amount"),
    ({"totals": {"total": "NaN"}}, "totals.total", "decimal amount"),
    ({"totals": {"total": "1" * 40}}, "totals.total", "at most 32"),
    ({"totals": {"grand": "1"}}, "totals.grand", "Unknown field"),
    ({"lines": [{"unit_price": 0.1}]}, "lines.0.unit_price", "decimal strings"),
    ({"lines": [{"quantity": -1}]}, "lines.0.quantity", "greater than or equal to 0"),
    ({"lines": [{"quantity": "2"}]}, "lines.0.quantity", "integer"),
    ({"lines": [{"quantity": 2**31}]}, "lines.0.quantity", "less than or equal"),
    ({"lines": [{"product_id": ""}]}, "lines.0.product_id", "Length"),
    ({"lines": [{"sku": "x" * 256}]}, "lines.0.sku", "255"),
    ({"lines": [{"colour": "red"}]}, "lines.0.colour", "Unknown field"),
    ({"lines": [{}] * 5001}, "lines", "5000"),
    ({"lines": {"sku": "x"}}, "lines", "list"),
    ({"shipping_address": {"street": "x"}}, "shipping_address.street", "Unknown field"),
    ({"shipping_address": {"city": "x" * 256}}, "shipping_address.city", "255"),
    ({"placed_at": "yesterday"}, "placed_at", "datetime"),
    ({"currency": "EURO-DOLLAR"}, "currency", "Length"),
    ({"order_number": ""}, "order_number", "Length"),
])
def test_bad_details_are_422_naming_the_field(bc, admin, change, field, words):
    channel = bc.create()
    body = assert_json_error(admin.request("POST", "/orders",
                                           json=full_order(channel["id"], **change)), 422)
    assert field in body["message"], body
    assert words.lower() in json.dumps(body).lower(), body
    assert admin.get(f"/orders?channel_id={channel['id']}") == []


def test_a_line_id_beyond_64_bits_is_422_naming_it(bc, admin):
    channel = bc.create()
    raw = json.dumps(full_order(channel["id"], lines=[{"product_id": "HUGE"}]))
    raw = raw.replace('"HUGE"', str(2**64))
    response = admin.request("POST", "/orders", data=raw.encode(),
                             content_type="application/json")
    body = assert_json_error(response, 422)
    assert "lines.0.product_id" in body["message"]


def test_the_webhook_then_the_admin_api_is_one_order(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    imported = the_order(admin, channel)
    response = admin.request("POST", "/orders", json=full_order(
        channel["id"], channel_order_id=str(ORDER_ID)))
    body = assert_json_error(response, 409)
    assert f"order {imported['id']}" in body["message"]
    assert "nothing was changed" in body["message"]
    assert the_order(admin, channel) == imported


def test_the_admin_api_then_the_webhook_is_one_order(shopify, admin, worker):
    channel = shopify_channel(shopify, admin)
    registered = admin.post("/orders", full_order(channel["id"], channel_order_id=str(ORDER_ID)))
    created = shopify.send("orders/create", new_order())
    worker.run_until_idle()
    order = the_order(admin, channel)
    assert order["id"] == registered["id"]
    # the routing system's details stand; the creation is recorded and changes nothing
    assert order["status"] == "AWAITING_SHIPMENT" and order["order_number"] == "#1001"
    assert len(order["lines"]) == 2
    assert outcome(admin, created)["outcome"] == "ignored"
    assert "already imported" in outcome(admin, created)["reason"]
    assert len(admin.get(f"/orders?channel_id={channel['id']}")) == 1


def test_the_admin_api_takes_what_a_shopify_order_carries(shopify, admin, worker):
    """The published sample's order, sent through the admin API, reads like its import."""
    channel = shopify_channel(shopify, admin)
    sample = load_fixture("shopify", "orders_create.json")
    shopify.send("orders/create", new_order())
    worker.run_until_idle()
    imported = the_order(admin, channel)
    body = {"channel_id": channel["id"], "channel_order_id": "77",
            "status": imported["status"], "order_number": imported["order_number"],
            "placed_at": imported["placed_at"], "currency": imported["currency"],
            "totals": imported["totals"], "customer": imported["customer"],
            "shipping_address": imported["shipping_address"],
            "billing_address": imported["billing_address"],
            "lines": [{k: line[k] for k in ("channel_line_id", "product_id", "variant_id",
                                            "sku", "name", "quantity", "unit_price")}
                      for line in imported["lines"]]}
    registered = admin.post("/orders", body)
    same = ("status", "order_number", "placed_at", "currency", "totals", "customer",
            "shipping_address", "billing_address")
    assert {k: registered[k] for k in same} == {k: imported[k] for k in same}
    assert [line["sku"] for line in registered["lines"]] == [
        line["sku"] for line in imported["lines"]]
    assert len(registered["lines"]) == len(sample["line_items"])
