"""Shopify products whose products/update lists only some of their variants (a product may have
2,048): the product is read whole from the GraphQL Admin API (the stand-in in
tests/shopify_helpers.py), page by page, and the state read is applied — through the real
intake, worker, database and admin API."""
from datetime import timedelta

import pytest

from tests.shopify_helpers import ShopifyStandin, shopify  # noqa: F401  (fixture)
from tests.shopify_helpers import deliveries as stored
from tests.test_products import PRODUCT_ID, many_variants, product, shopify_product

GID = f"gid://shopify/Product/{PRODUCT_ID}"


def api_variants(variants, updated_at="2022-03-01T00:00:00Z"):
    """The variants as GraphQL's ``ProductVariant`` nodes show them."""
    return [{"id": v["admin_graphql_api_id"], "sku": v["sku"], "title": v["title"],
             "price": v["price"], "position": v["position"], "updatedAt": updated_at}
            for v in variants]


def partial_delivery(variants, listed, updated_at="2022-02-01T00:00:00Z", **changes):
    """A products/update whose ``variant_gids`` names every variant and whose ``variants`` only
    the first ``listed``."""
    gids = [{"admin_graphql_api_id": v["admin_graphql_api_id"], "updated_at": updated_at}
            for v in variants]
    return shopify_product(variants=variants[:listed], variant_gids=gids, updated_at=updated_at,
                           **changes)


def in_shopify(standin, variants, title="Big T-Shirt", status="ACTIVE",
               updated_at="2022-03-01T00:00:00Z"):
    standin.products[str(PRODUCT_ID)] = {"title": title, "status": status,
                                         "updatedAt": updated_at,
                                         "variants": api_variants(variants)}


def partial_update(standin, count, *answers):
    """A channel, a product of ``count`` variants in Shopify, ``answers`` served first to the
    GraphQL calls, and a products/update listing 10 of its variants; returns the channel."""
    channel = standin.create()
    in_shopify(standin, many_variants(count))
    standin.queued.extend(answers)
    standin.send("products/update", partial_delivery(many_variants(count), 10))
    return channel


def due_now(app, records):
    """Move the deliveries' next attempt to now, as if their retry delay had passed."""
    from core.clock import utcnow
    from core.models import StoredDelivery
    with app.extensions["orderhooks.db"].session() as session:
        for record in records:
            session.get(StoredDelivery, record["id"]).next_attempt_at = utcnow() - timedelta(
                seconds=1)


def test_a_2048_variant_product_delivered_in_part_is_read_whole_and_the_read_state_wins(
        shopify, admin, worker):
    channel = shopify.create()
    variants = many_variants(2048)
    # the catalog holds an older state, with a variant Shopify no longer has
    gone = {"id": 999, "sku": "GONE", "price": "1.00", "title": "Gone", "position": 1,
            "admin_graphql_api_id": "gid://shopify/ProductVariant/999"}
    shopify.send("products/create", shopify_product(variants=[gone],
                                                    updated_at="2022-01-01T00:00:00Z"))
    worker.run_until_idle()
    in_shopify(shopify, variants)
    delivered = partial_delivery(variants, 100, title="Title in the payload")
    assert shopify.send("products/update", delivered).status_code == 200
    worker.run_until_idle()
    detail = product(admin, channel["id"])
    assert len(detail["variants"]) == 2048
    assert {v["sku"] for v in detail["variants"]} == {f"SKU-{n}" for n in range(2048)}
    assert detail["title"] == "Big T-Shirt" and detail["status"] == "active"
    assert detail["history"][-1]["changes"]["variants"] == {"added": 2048, "removed": 1,
                                                            "changed": 0}
    record = admin.get(f"/deliveries/{stored(admin)[0]['id']}")
    assert record["outcome"] == "applied" and record["attempts"] == 0
    assert record["intents"][0]["variants"] == 2048
    assert record["intents"][0]["variants_complete"] is True


def test_the_variants_are_read_page_by_page_with_each_cursor(shopify, admin, worker):
    shopify.create()
    variants = many_variants(600)
    in_shopify(shopify, variants)
    shopify.send("products/update", partial_delivery(variants, 250))
    worker.run_until_idle()
    assert [(r["id"], r["first"], r["after"]) for r in shopify.product_reads] == [
        (GID, 250, None), (GID, 250, "250"), (GID, 250, "500")]


def test_a_complete_delivery_reads_nothing(shopify, admin, worker):
    channel = shopify.create()
    variants = many_variants(300)
    shopify.send("products/update", partial_delivery(variants, 300))
    worker.run_until_idle()
    assert shopify.product_reads == []
    assert len(product(admin, channel["id"])["variants"]) == 300


def test_a_throttled_page_is_waited_out_and_asked_again(shopify, admin, worker):
    # Shopify refuses a 252-point page while its bucket holds 100 points, restoring 100/s
    channel = partial_update(shopify, 400, shopify.throttled(requested=252, available=100.0,
                                                             rate=100.0))
    worker.run_until_idle()
    # (the stand-in's sleep passes no time, so the next page waits out the same block again;
    # the real time between the answer and the wait shortens each wait a little)
    assert shopify.slept and all(1.3 <= w <= 1.52 + 1e-6 for w in shopify.slept)
    assert len(product(admin, channel["id"])["variants"]) == 400
    assert stored(admin)[0]["attempts"] == 0


def test_between_pages_the_read_waits_until_the_bucket_holds_a_page(shopify, admin, worker):
    """Each page requests 252 points; after one, the bucket holds 150 and refills at 50/s: the
    next page is asked for only once it can run (2.04 s later), so Shopify never throttles."""
    shopify.product_cost = {"requestedQueryCost": 252, "actualQueryCost": 252,
                            "throttleStatus": {"maximumAvailable": 1000.0,
                                               "currentlyAvailable": 150.0, "restoreRate": 50.0}}
    channel = partial_update(shopify, 600)
    worker.run_until_idle()
    assert len(shopify.product_reads) == 3
    assert len(shopify.slept) == 2  # before pages 2 and 3
    assert all(1.8 <= w <= 2.04 + 1e-6 for w in shopify.slept)
    assert len(product(admin, channel["id"])["variants"]) == 600


def test_a_long_throttle_reschedules_the_delivery_without_counting_an_attempt(
        shopify, admin, worker, app):
    from core.worker import Worker
    channel = partial_update(shopify, 400, shopify.throttled(requested=252, available=0.0,
                                                             rate=10.0))
    worker.run_until_idle()
    record = stored(admin)[0]
    assert (record["state"], record["attempts"]) == ("pending", 0)
    assert "throttled" in record["reason"]
    assert shopify.slept == []  # 25 s is too long to wait in the worker
    assert products_of(admin, channel) == []
    reset_pacer(app)  # the bucket has refilled meanwhile
    due_now(app, [record])
    Worker(app, name="later").run_until_idle()  # this worker has not been told to wait
    assert len(product(admin, channel["id"])["variants"]) == 400


def test_a_product_deleted_meanwhile_is_applied_as_delivered_with_the_reason(shopify, admin,
                                                                            worker):
    channel = shopify.create()
    variants = many_variants(5)
    shopify.send("products/create", shopify_product(variants=variants[:3],
                                                    updated_at="2022-01-01T00:00:00Z"))
    worker.run_until_idle()
    # Shopify has no such product any more: product(id:) answers null
    shopify.send("products/update", partial_delivery(variants, 2, title="Renamed"))
    worker.run_until_idle()
    record = stored(admin)[0]
    assert record["outcome"] == "applied"
    assert "Shopify has no such product any more" in record["reason"]
    assert "the variants not listed are kept" in record["reason"]
    detail = product(admin, channel["id"])
    assert detail["title"] == "Renamed"
    assert len(detail["variants"]) == 3  # the third, not listed, is kept
    assert len(shopify.product_reads) == 1


def test_an_api_that_is_down_fails_the_delivery_which_is_retried_and_then_applied(
        shopify, admin, worker, app):
    channel = partial_update(shopify, 300, (503, {}, {"errors": "Service Unavailable"}))
    worker.run_until_idle()
    record = stored(admin)[0]
    assert (record["state"], record["outcome"], record["attempts"]) == ("pending", "failed", 1)
    assert "503" in record["reason"]
    assert products_of(admin, channel) == []  # nothing applied from half an answer
    due_now(app, [record])
    worker.run_until_idle()
    assert stored(admin)[0]["outcome"] == "applied"
    assert len(product(admin, channel["id"])["variants"]) == 300


def test_a_refused_token_fails_the_delivery_with_the_reason(shopify, admin, worker):
    partial_update(shopify, 300, (401, {}, {"errors": "[API] Invalid API key or access token"}))
    worker.run_until_idle()
    record = stored(admin)[0]
    assert (record["outcome"], record["attempts"]) == ("failed", 1)
    assert "refused the access token (HTTP 401)" in record["reason"]


def test_a_burst_of_partial_deliveries_of_one_product_is_one_read_per_batch(shopify, admin,
                                                                            worker):
    channel = shopify.create()
    variants = many_variants(300)
    in_shopify(shopify, variants)
    for minute in range(3):
        shopify.send("products/update", partial_delivery(
            variants, 10, updated_at=f"2022-02-01T00:0{minute}:00Z"))
    worker.run_until_idle()
    assert len(shopify.product_reads) == 2  # one read of two pages, for the three deliveries
    assert {r["outcome"] for r in stored(admin)} <= {"applied", "ignored"}
    assert len(product(admin, channel["id"])["variants"]) == 300


def test_the_read_goes_to_the_configured_api_base_url(app, client, api, make_channel, admin,
                                                      worker, monkeypatch):
    from core.http import APIBaseURLs
    from plugins.shopify import client as shopify_client
    monkeypatch.setattr(app.extensions["orderhooks.channel_types"].get("shopify"),
                        "allowed_api_base_urls", APIBaseURLs("http://127.0.0.1:8001"))
    monkeypatch.setattr(shopify_client, "sleep", lambda seconds: None)
    standin = ShopifyStandin(app, client, api, make_channel, admin,
                             base="http://127.0.0.1:8001", version="2025-10")
    channel = standin.create(api_base_url="http://127.0.0.1:8001/", api_version="2025-10")
    variants = many_variants(300)
    in_shopify(standin, variants)
    standin.send("products/update", partial_delivery(variants, 10))
    worker.run_until_idle()
    assert len(standin.product_reads) == 2
    assert {c.request.url for c in standin.graphql_calls()} == {
        "http://127.0.0.1:8001/admin/api/2025-10/graphql.json"}
    assert len(product(admin, channel["id"])["variants"]) == 300


def products_of(admin, channel):
    return admin.get("/products", query_string={"channel_id": channel["id"]})


def reset_pacer(app):
    """Forget the shop's throttling: the wait it asked for is over."""
    from plugins.shopify.client import ShopPacer
    app.extensions["orderhooks.channel_types"].get("shopify").pacer = ShopPacer()
