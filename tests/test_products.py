"""The product catalog, through the real intake, worker, database and admin API: Shopify's
products/create|update|delete and BigCommerce's store/product/* (read from a stand-in catalog
API), built from the published sample payloads."""
import copy
import json
import time

import pytest
import responses

from tests.conftest import BC_STORE, load_fixture, log_records
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
from tests.shopify_helpers import deliveries as stored

PRODUCT_ID = 788032119674292922
SMALL, MEDIUM = "642667041472713922", "757650484644203962"


def shopify_product(product_id=PRODUCT_ID, updated_at="2021-12-31T19:00:00-05:00", **changes):
    """The published products/update sample (products/create prints the same object)."""
    sample = copy.deepcopy(load_fixture("shopify", "products_update.json"))
    sample.update({"id": product_id, "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
                   "updated_at": updated_at})
    for variant in sample["variants"]:
        variant["product_id"] = product_id
    sample.update(changes)
    return sample


def many_variants(count, price="5.00"):
    return [{"id": 10**15 + n, "product_id": PRODUCT_ID, "sku": f"SKU-{n}", "price": price,
             "title": f"Size {n}", "position": n + 1,
             "admin_graphql_api_id": f"gid://shopify/ProductVariant/{10**15 + n}"}
            for n in range(count)]


def products(admin, **query):
    return admin.get("/products", query_string=query)


def product(admin, channel_id, product_id=PRODUCT_ID):
    found = products(admin, channel_id=channel_id, channel_product_id=str(product_id))
    assert len(found) == 1, found
    return admin.get(f"/products/{found[0]['id']}")


def last_reason(admin):
    return admin.get(f"/deliveries/{stored(admin)[0]['id']}")


# -- Shopify -------------------------------------------------------------------------------------


def test_a_created_product_is_in_the_catalog_with_exact_ids_and_decimal_prices(shopify, admin,
                                                                               worker):
    channel = shopify.create()
    assert shopify.send("products/create", shopify_product()).status_code == 200
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["channel_product_id"] == str(PRODUCT_ID)  # beyond 2^53: not via a float
    assert detail["title"] == "Example T-Shirt" and detail["active"] is True
    assert detail["deleted"] is False and detail["status"] == "active"
    assert detail["channel_updated_at"] == "2022-01-01T00:00:00+00:00"
    assert [(v["channel_variant_id"], v["sku"], v["price"], v["title"])
            for v in detail["variants"]] == [(SMALL, None, "19.99", "Small"),
                                              (MEDIUM, None, "19.99", "Medium")]
    assert [h["event"] for h in detail["history"]] == ["created"]
    assert stored(admin)[0]["outcome"] == "applied"


def test_updates_apply_in_the_channels_time_order_whatever_the_arrival_order(shopify, admin,
                                                                              worker):
    channel = shopify.create()
    newer = shopify_product(title="Renamed", updated_at="2022-03-01T10:00:00Z")
    older = shopify_product(title="Stale name", updated_at="2022-02-01T10:00:00Z")
    shopify.send("products/update", newer)
    worker.run_until_idle()
    shopify.send("products/update", older)
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["title"] == "Renamed"
    assert detail["channel_updated_at"] == "2022-03-01T10:00:00+00:00"
    assert [h["event"] for h in detail["history"]] == ["created"]
    late = stored(admin)[0]
    assert late["outcome"] == "ignored" and "older than the one held" in late["reason"]
    # the same state again (here as products/create: a new body for the intake) changes nothing
    shopify.send("products/create", newer)
    worker.run_until_idle()
    assert stored(admin)[0]["outcome"] == "ignored"
    assert "no change" in stored(admin)[0]["reason"]
    # a newer edit: the change is recorded, field by field
    shopify.send("products/update", shopify_product(title="Renamed again",
                                                    updated_at="2022-04-01T00:00:00Z"))
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert [h["event"] for h in detail["history"]] == ["created", "updated"]
    assert detail["history"][1]["changes"] == {"title": ["Renamed", "Renamed again"]}


def test_a_variant_edit_is_ordered_by_the_variants_time(shopify, admin, worker):
    """The product's own updated_at need not move when a variant is edited: the variants'
    times (variant_gids) order the states too, so a late older price does not win."""
    channel = shopify.create()

    def state(price, variant_time):
        body = shopify_product(updated_at="2022-01-01T00:00:00Z")
        body["variants"][0]["price"] = price
        body["variant_gids"][1]["updated_at"] = variant_time  # the "Small" variant's
        return body

    shopify.send("products/update", state("21.00", "2022-03-01T00:00:00.000Z"))
    worker.run_until_idle()
    shopify.send("products/update", state("20.00", "2022-02-01T00:00:00.000Z"))
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["variants"][0]["price"] == "21.00"
    assert detail["channel_updated_at"] == "2022-03-01T00:00:00+00:00"
    assert "older than the one held" in stored(admin)[0]["reason"]


def test_a_repeated_delivery_is_a_duplicate(shopify, admin, worker):
    shopify.create()
    body = json.dumps(shopify_product()).encode()
    first = shopify.send("products/update", body=body)
    again = shopify.send("products/update", body=body, webhook_id="another")
    assert again.get_json() == {"status": "duplicate",
                                "delivery_id": first.get_json()["delivery_id"]}


def test_a_deleted_product_stays_deleted_with_its_history_and_comes_back_when_created_again(
        shopify, admin, worker):
    channel = shopify.create()
    shopify.send("products/create", shopify_product(updated_at="2022-01-01T00:00:00Z"))
    worker.run_until_idle()
    assert shopify.send("products/delete", {"id": PRODUCT_ID},
                        triggered_at="2022-02-01T00:00:00.123456789Z").status_code == 200
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["deleted"] is True and detail["active"] is False
    assert detail["deleted_at"].startswith("2022-02-01T00:00:00.123456")
    assert len(detail["variants"]) == 2  # kept, so an order line still finds them
    assert [h["event"] for h in detail["history"]] == ["created", "deleted"]
    assert products(admin, channel_id=channel["id"], deleted="false") == []
    assert [p["id"] for p in products(admin, channel_id=channel["id"], deleted="true")] == [
        detail["id"]]
    # an update made before the deletion, arriving late, does not bring it back
    shopify.send("products/update", shopify_product(updated_at="2022-01-15T00:00:00Z"))
    worker.run_until_idle()
    assert "stays deleted" in stored(admin)[0]["reason"]
    assert product(admin, channel["id"])["deleted"] is True
    # created again afterwards: back, with its history
    shopify.send("products/create", shopify_product(title="Back", updated_at="2022-03-01T00:00Z"))
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["deleted"] is False and detail["active"] is True and detail["title"] == "Back"
    assert [h["event"] for h in detail["history"]] == ["created", "deleted", "restored"]


def test_a_deletion_arriving_before_the_creation_keeps_the_product_deleted(shopify, admin,
                                                                           worker):
    channel = shopify.create()
    shopify.send("products/delete", {"id": PRODUCT_ID},
                 triggered_at="2022-02-01T00:00:00Z")
    worker.run_until_idle()
    shopify.send("products/create", shopify_product(updated_at="2022-01-01T00:00:00Z"))
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["deleted"] is True and detail["title"] is None
    assert [h["event"] for h in detail["history"]] == ["deleted"]


def test_a_deletion_without_a_time_takes_the_time_it_was_received(shopify, admin, worker):
    channel = shopify.create()
    shopify.send("products/create", shopify_product(updated_at="2022-01-01T00:00:00Z"))
    shopify.send("products/delete", {"id": PRODUCT_ID})
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    received = stored(admin)[0]["received_at"]
    assert detail["deleted"] is True and detail["deleted_at"] == received


def test_a_product_with_2048_variants_is_applied_and_then_diffed(shopify, admin, worker):
    channel = shopify.create()
    variants = many_variants(2048)
    gids = [{"admin_graphql_api_id": v["admin_graphql_api_id"]} for v in variants]
    big = shopify_product(variants=variants, variant_gids=gids, updated_at="2022-01-01T00:00Z")
    assert shopify.send("products/update", big).status_code == 200
    started = time.perf_counter()
    worker.run_until_idle()
    first = time.perf_counter() - started
    detail = product(admin, channel["id"])
    assert len(detail["variants"]) == 2048
    assert detail["variants"][2047]["sku"] == "SKU-2047"
    # one variant gone, one repriced
    variants = many_variants(2047)
    variants[5]["price"] = "6.50"
    shopify.send("products/update", shopify_product(variants=variants, variant_gids=gids[:2047],
                                                    updated_at="2022-02-01T00:00Z"))
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert len(detail["variants"]) == 2047
    assert detail["history"][-1]["changes"] == {"variants": {"added": 0, "removed": 1,
                                                             "changed": 1}}
    assert first < 30, first  # a bound, not a benchmark: it must not stall the worker
    # the delivery's record names the variants' count, not each variant again
    record = admin.get(f"/deliveries/{stored(admin)[0]['id']}")
    assert record["intents"][0]["variants"] == 2047


def test_a_delivery_listing_fewer_variants_than_variant_gids_removes_none(shopify, admin,
                                                                          worker):
    channel = shopify.create()
    shopify.send("products/update", shopify_product(updated_at="2022-01-01T00:00Z"))
    worker.run_until_idle()
    partial = shopify_product(updated_at="2022-02-01T00:00Z")
    partial["variants"] = partial["variants"][:1]
    shopify.send("products/update", partial)  # variant_gids still names both
    worker.run_until_idle()
    assert len(product(admin, channel["id"])["variants"]) == 2


def test_unicode_titles_missing_skus_and_malformed_variants_are_taken_as_far_as_they_go(
        shopify, admin, worker):
    channel = shopify.create()
    variants = [
        {"id": 11, "sku": None, "price": "1.00", "title": "ミディアム 🎽"},
        {"id": 12, "price": "not a price", "title": 7},  # no sku at all, a broken price
        {"id": "gid://shopify/ProductVariant/13", "sku": "  S-13 ", "price": 3},
        {"id": None, "sku": "NO-ID"},
        "not an object",
        {"id": True, "sku": "BOOL-ID"},
    ]
    response = shopify.send("products/update", shopify_product(title="Čaj 茶 — \u202etea",
                                                               variants=variants))
    assert response.status_code == 200
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert detail["title"] == "Čaj 茶 — \u202etea"
    assert [(v["channel_variant_id"], v["sku"], v["price"], v["title"])
            for v in detail["variants"]] == [("11", None, "1.00", "ミディアム 🎽"),
                                              ("12", None, None, None), ("13", "S-13", "3", None)]


@pytest.mark.parametrize("body", [
    shopify_product(variants="many"),
    shopify_product(variants=[{"id": 1, "sku": "x" * 300}]),
    shopify_product(title="nul \u0000 byte"),
])
def test_a_product_the_catalog_cannot_hold_ends_with_its_reason_and_never_stalls(
        shopify, admin, worker, body):
    channel = shopify.create()
    assert shopify.send("products/update", body).status_code == 200
    shopify.send("products/update", shopify_product(product_id=5, updated_at="2022-01-01T00:00Z"))
    worker.run_until_idle()
    outcomes = {d["topic"] + ":" + str(d["outcome"]) for d in stored(admin)}
    assert all(o.endswith((":applied", ":dead")) for o in outcomes), outcomes
    assert product(admin, channel["id"], 5)["title"] == "Example T-Shirt"  # the other one
    for record in stored(admin):
        assert record["state"] == "done"
        if record["outcome"] == "dead":
            assert "cannot be applied" in record["reason"]


@pytest.mark.parametrize("topic, body, named", [
    # a captured product re-sent as its deletion
    ("products/delete", shopify_product(), "only {id}"),
    ("products/delete", {"id": "gid://shopify/Order/5"}, "only {id}"),
    # bodies of other kinds sent as a product
    ("products/update", {"id": 820982911946154508, "order_number": 1234,
                         "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
                         "title": "x"}, "order_number"),
    ("products/update", {"id": 5, "order_id": 6, "title": "x"}, "order_id"),
    ("products/create", {"id": 5, "admin_graphql_api_id": "gid://shopify/Order/5",
                         "title": "x"}, "admin_graphql_api_id"),
    ("products/create", {"id": 5}, "no title"),
    ("products/update", {"title": "x"}, "not a Shopify product id"),
])
def test_a_body_that_is_not_its_product_topic_is_refused(shopify, admin, worker, topic, body,
                                                         named):
    shopify.create()
    response = shopify.send(topic, body)
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["message"]
    assert f"does not look like {topic}" in message and named in message, message
    assert stored(admin) == []


def test_a_product_re_sent_as_an_order_topic_is_refused(shopify, admin):
    shopify.create()
    response = shopify.send("orders/cancelled", shopify_product())
    assert response.status_code == 400
    assert "does not look like orders/cancelled" in response.get_json()["message"]


# -- BigCommerce ---------------------------------------------------------------------------------


def bc_product(product_id=174, date_modified="2018-09-05T20:42:07+00:00", **changes):
    """The published v3 catalog product with its variants (include=variants)."""
    data = copy.deepcopy(load_fixture("bigcommerce", "v3_catalog_product.json"))["data"]
    variants = copy.deepcopy(load_fixture("bigcommerce", "v3_catalog_product_variants.json"))
    for variant in variants["data"]:
        variant["product_id"] = product_id
    data.update({"id": product_id, "date_modified": date_modified,
                 "variants": variants["data"], **changes})
    return {"data": data, "meta": {}}


def bc_delivery(product_id=174, scope="store/product/updated", created_at=1561479233, tag=""):
    sample = copy.deepcopy(load_fixture("bigcommerce", "store_product_updated.json"))
    sample.update({"scope": scope, "created_at": created_at, "producer": "stores/abc123",
                   "hash": f"h-{scope}-{product_id}-{created_at}-{tag}"})
    sample["data"]["id"] = product_id
    return sample


def serve_product(api, product_id, answer=None, status=200):
    url = f"{BC_STORE}/v3/catalog/products/{product_id}"
    if answer is None:
        api.upsert(responses.GET, url, status=status, json={"status": status, "title": "x"})
    else:
        # the raw text of the answer, as BigCommerce writes it: prices are JSON numbers
        api.upsert(responses.GET, url, body=json.dumps(answer), content_type="application/json")


def reads(api, product_id):
    return sum(1 for call in api.calls
               if call.request.url.split("?")[0].endswith(f"/v3/catalog/products/{product_id}"))


def test_bigcommerce_product_is_read_from_the_catalog_api(bc, admin, worker, api):
    channel = bc.create()
    serve_product(api, 174, bc_product())
    assert bc.send(bc_delivery()).status_code == 200
    worker.run_until_idle()
    detail = product(admin, channel["id"], 174)
    assert detail["title"] == "1L Le Parfait Jar" and detail["price"] == "7.95"
    assert detail["sku"] is None  # "" in the catalog: no SKU
    assert detail["status"] == "visible" and detail["active"] is True
    assert detail["channel_updated_at"] == "2018-09-05T20:42:07+00:00"
    assert [(v["channel_variant_id"], v["sku"], v["price"], v["title"])
            for v in detail["variants"]][:2] == [("382", "SMIT", "10", "Beige"),
                                                  ("383", "SMIT-1", "25", "Grey")]
    assert api.calls[-1].request.params == {"include": "variants"}
    assert stored(admin)[0]["channel_order_id"] is None  # a product id is not an order's


def test_a_burst_of_edits_to_one_product_is_one_read_per_batch(bc, admin, worker, api, app):
    channel = bc.create()
    serve_product(api, 174, bc_product())
    serve_product(api, 175, bc_product(175, name="Other"))
    for n in range(20):
        bc.send(bc_delivery(created_at=1561479233 + n))
    bc.send(bc_delivery(scope="store/product/created"))
    bc.send(bc_delivery(175))
    sku = bc_delivery(scope="store/sku/updated")
    sku["data"] = {"type": "sku", "id": 348, "sku": {"product_id": 174, "variant_id": 382}}
    bc.send(sku)
    app.config["WORKER_BATCH"] = 50
    assert worker.run_until_idle() == 23
    assert reads(api, 174) == 1 and reads(api, 175) == 1
    outcomes = sorted(d["outcome"] for d in stored(admin))
    assert outcomes.count("applied") == 2 and outcomes.count("ignored") == 21
    assert product(admin, channel["id"], 175)["title"] == "Other"


def test_inventory_scopes_are_ignored_with_the_reason_and_read_nothing(bc, admin, worker, api):
    bc.create()
    sample = load_fixture("bigcommerce", "store_product_inventory_updated.json")
    assert bc.send(sample).status_code == 200
    worker.run_until_idle()
    record = stored(admin)[0]
    assert record["outcome"] == "ignored" and "keeps no inventory" in record["reason"]
    assert not any("/v3/catalog/" in call.request.url for call in api.calls)


def test_a_product_gone_on_read_is_recorded_deleted_not_retried(bc, admin, worker, api):
    channel = bc.create()
    serve_product(api, 174, bc_product())
    bc.send(bc_delivery())
    worker.run_until_idle()
    serve_product(api, 174, status=404)
    bc.send(bc_delivery(created_at=1561479300))
    worker.run_until_idle()
    record = stored(admin)[0]
    assert record["outcome"] == "applied" and record["attempts"] == 0
    assert "deleted" in record["reason"]
    detail = product(admin, channel["id"], 174)
    assert detail["deleted"] is True
    assert [h["event"] for h in detail["history"]] == ["created", "deleted"]
    # never seen and already gone: recorded as a deleted entry
    serve_product(api, 999, status=404)
    bc.send(bc_delivery(999))
    worker.run_until_idle()
    assert product(admin, channel["id"], 999)["deleted"] is True
    assert reads(api, 999) == 1


def test_bigcommerce_deleted_twice_and_an_older_state_read_late(bc, admin, worker, api):
    channel = bc.create()
    serve_product(api, 174, bc_product(date_modified="2019-06-25T16:00:00+00:00"))
    bc.send(bc_delivery())
    worker.run_until_idle()
    calls = reads(api, 174)
    for tag in ("a", "b"):
        bc.send(bc_delivery(scope="store/product/deleted", created_at=1561479333, tag=tag))
        worker.run_until_idle()
    assert reads(api, 174) == calls  # a deletion needs no read
    assert stored(admin)[0]["outcome"] == "ignored"
    assert "already deleted" in stored(admin)[0]["reason"]
    detail = product(admin, channel["id"], 174)
    assert detail["deleted_at"] == "2019-06-25T16:15:33+00:00"
    assert [h["event"] for h in detail["history"]] == ["created", "deleted"]
    # a cache somewhere serves the state before the deletion: older, so ignored
    bc.send(bc_delivery(created_at=1561479400))
    worker.run_until_idle()
    assert product(admin, channel["id"], 174)["deleted"] is True


@pytest.mark.parametrize("answer", [
    {"data": "nope"},
    {"data": {"id": 174, "name": "x", "price": "NaN", "variants": "no"}},
    [],
])
def test_an_unreadable_catalog_answer_fails_the_delivery_with_a_reason(bc, admin, worker, api,
                                                                       answer):
    bc.create()
    serve_product(api, 174, answer)
    bc.send(bc_delivery())
    assert bc.send(bc_delivery(product_id="12a")).status_code == 200
    worker.run_until_idle()
    by_reason = {d["outcome"]: d["reason"] for d in stored(admin)}
    assert "no valid product id" in by_reason["ignored"]
    if "failed" in by_reason:
        assert "/v3/catalog/products/174" in by_reason["failed"]
    else:  # a product without variants or price is still a product
        assert "applied" in by_reason


# -- the admin API and the look-up for order lines -----------------------------------------------


def test_products_are_listed_by_channel_sku_and_deleted_with_paging(bc, admin, worker, api):
    channel = bc.create()
    for product_id in range(1, 6):
        serve_product(api, product_id, bc_product(product_id, sku=f"P-{product_id}"))
        bc.send(bc_delivery(product_id))
    worker.run_until_idle()
    found = products(admin, sku="SMIT-1")  # a variant's SKU
    assert len(found) == 5
    assert [p["channel_product_id"] for p in products(admin, sku="P-3")] == ["3"]
    response = admin.client.get("/api/v1/products?limit=2&channel_id=%d" % channel["id"],
                                headers=admin.headers)
    assert len(response.get_json()) == 2 and 'rel="next"' in response.headers["Link"]
    following = response.headers["Link"].split(">")[0].lstrip("<")
    assert [p["channel_product_id"] for p in admin.client.get(
        following, headers=admin.headers).get_json()] == ["3", "4"]
    missing = admin.client.get("/api/v1/products/424242", headers=admin.headers)
    assert missing.status_code == 404 and missing.get_json()["message"] == "no product 424242"
    bad = admin.client.get("/api/v1/products?deleted=perhaps", headers=admin.headers)
    assert bad.status_code == 422 and "deleted" in bad.get_json()["message"]
    spec = admin.client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/products/{product_id}" in spec["paths"]


def test_find_product_links_by_variant_id_then_product_id_then_sku(bc, admin, worker, api, app):
    from core.products import find_product
    channel = bc.create()
    serve_product(api, 174, bc_product(sku="JAR"))
    bc.send(bc_delivery())
    worker.run_until_idle()
    with app.extensions["orderhooks.db"].Session() as session:
        by_variant = find_product(session, channel["id"], variant_id=383)
        assert by_variant.product.channel_product_id == "174"
        assert by_variant.variant.sku == "SMIT-1"
        by_product = find_product(session, channel["id"], product_id="174", sku="SMIT-2")
        assert by_product.variant.channel_variant_id == "384"
        assert find_product(session, channel["id"], sku="SMIT").variant.channel_variant_id == "382"
        assert find_product(session, channel["id"], sku="JAR").variant is None
        assert find_product(session, channel["id"], product_id=5, sku="nope") is None
        assert find_product(session, channel["id"] + 1, variant_id=383) is None


def test_two_workers_meeting_on_one_new_product_both_succeed(shopify, admin, app):
    """Two workers apply deliveries of the same, not yet known product at the same moment: one
    waits for the other (on PostgreSQL a lock on the product's key), neither fails on the
    unique key, and the newer state wins."""
    import threading

    from core.worker import Worker
    channel = shopify.create()
    shopify.send("products/create", shopify_product(title="Old", updated_at="2022-01-01T00:00Z"))
    shopify.send("products/update", shopify_product(title="New", updated_at="2022-02-01T00:00Z"))
    first, second = Worker(app, name="w1"), Worker(app, name="w2")
    claims = [first.claim(limit=1), second.claim(limit=1)]
    assert all(len(c) == 1 for c in claims)
    barrier, errors = threading.Barrier(2), []

    def run(worker, ids):
        try:
            barrier.wait()
            worker.process_batch(ids)
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, c)) for w, c in zip((first, second),
                                                                          claims)]
    with log_records("orderhooks.worker") as logged:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    # not even rescued by recording the batch again delivery by delivery
    assert [r.msg for r in logged if "failed" in r.msg] == []
    records = stored(admin)
    assert {r["outcome"] for r in records} <= {"applied", "ignored"}, records
    assert all(r["attempts"] == 0 for r in records), records
    assert product(admin, channel["id"])["title"] == "New"


def test_product_reads_are_paced_per_store_and_a_long_wait_reschedules(bc, admin, app, api,
                                                                      monkeypatch):
    """The catalog is read through the store's pacer: a 429 asking for 30 s reschedules the
    product's deliveries (no attempt counted, no sleep, no further call), and they apply once
    the window is over — still one read for the product's burst."""
    from datetime import timedelta

    from core.clock import utcnow
    from core.models import StoredDelivery
    from core.worker import Worker
    from plugins.bigcommerce import client as bc_client
    from tests.test_ratelimit import FakeClock
    clock = FakeClock()
    monkeypatch.setattr(bc_client, "time", clock)
    bc_client.PACER.reset()
    channel = bc.create()
    url = f"{BC_STORE}/v3/catalog/products/174"
    api.add(responses.GET, url, status=429, headers={"X-Retry-After": "30"})
    for n in range(3):
        bc.send(bc_delivery(created_at=1561479233 + n))
    Worker(app, name="first").run_until_idle()
    assert reads(api, 174) == 1 and clock.sleeps == []
    records = stored(admin)
    assert {(r["state"], r["attempts"]) for r in records} == {("pending", 0)}
    assert all("throttled" in r["reason"] for r in records)
    clock.advance(31)
    api.replace(responses.GET, url, body=json.dumps(bc_product()),
                content_type="application/json")
    with app.extensions["orderhooks.db"].session() as session:
        for record in records:
            session.get(StoredDelivery, record["id"]).next_attempt_at = utcnow() - timedelta(
                seconds=1)
    assert Worker(app, name="later").run_until_idle() == 3
    assert reads(api, 174) == 2
    assert product(admin, channel["id"], 174)["title"] == "1L Le Parfait Jar"
    bc_client.PACER.reset()


def test_order_lines_link_to_the_catalog_by_variant_then_product_then_sku(shopify, admin,
                                                                          worker):
    from tests.test_orders_from_channel import new_order, shopify_channel
    channel = shopify_channel(shopify, admin)
    variants = [{"id": 642667041472713922, "product_id": PRODUCT_ID, "sku": "SKU2006-001",
                 "price": "19.99", "title": "Small", "position": 1},
                {"id": 757650484644203962, "product_id": PRODUCT_ID, "sku": "SKU2006-020",
                 "price": "19.99", "title": "Medium", "position": 2}]
    shopify.send("products/create", shopify_product(variants=variants))
    shopify.send("products/create", shopify_product(product_id=11, title="Lens cover",
                                                    sku="LENS-PROTECT-2YR", variants=[{
                                                        "id": 12, "product_id": 11,
                                                        "sku": "LENS-PROTECT-2YR",
                                                        "price": "5.00", "title": "Default"}]))
    order = new_order()
    order["line_items"][0]["variant_id"] = 757650484644203962  # the variant decides, not the SKU
    shopify.send("orders/create", order)
    worker.run_until_idle()
    found = admin.get(f"/orders?channel_id={channel['id']}")
    lines = admin.get(f"/orders/{found[0]['id']}")["lines"]
    shirt = product(admin, channel["id"])
    lens = product(admin, channel["id"], 11)
    by_sku = {line["sku"]: line["catalog"] for line in lines}
    assert by_sku["SKU2006-001"]["product_id"] == shirt["id"]
    assert by_sku["SKU2006-001"]["channel_variant_id"] == "757650484644203962"
    assert by_sku["LENS-PROTECT-2YR"]["product_id"] == lens["id"]  # by SKU: no ids on the line
    assert by_sku["CASE-LEATHER-PREM"] is None  # not in the catalog
    assert by_sku["SKU2006-035"]["product_id"] == shirt["id"]  # by product id
    assert by_sku["SKU2006-035"]["channel_variant_id"] is None  # none of its variants has that SKU
