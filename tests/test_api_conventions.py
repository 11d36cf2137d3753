"""The admin API's HTTP conventions: deleting a channel (what becomes of its hooks, orders and
histories), Location on 201, Allow on 405, ETag / If-Match on channel settings, keyset paging
with a next link, 415 / 400 for bodies that are not JSON, and the OpenAPI document with its
browsable reference."""
import json
import re
from urllib.parse import urlsplit

import responses
from marshmallow import Schema, fields, validate
from openapi_spec_validator import validate as validate_spec

from core import hookimpl
from orderhooks import ChannelAdapter, DeliveryInfo
from core.subscriptions import check_all
from core.testing import ADMIN_TOKEN
from tests.conftest import BC_STORE
from tests.test_admin_api import assert_json_error, channel_body

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def next_link(response) -> str | None:
    """The path and query of the answer's ``Link: <...>; rel="next"``, if any."""
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
    if match is None:
        return None
    url = urlsplit(match.group(1))
    return f"{url.path}?{url.query}"


def guarded(client, method: str, path: str, etag: str, json=None):
    """An admin request sent with ``If-Match: etag``."""
    return client.open(f"/api/v1{path}", method=method, json=json,
                       headers={**AUTH, "If-Match": etag})


def walk(client, path: str) -> list[list[int]]:
    """Every page of a list, following the next links: the ids, page by page."""
    pages = []
    while path:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, response.get_json()
        pages.append([item["id"] for item in response.get_json()])
        path = next_link(response)
    return pages


# -- DELETE /channels/<id> ---------------------------------------------------------------------

def test_deleting_a_channel_unsubscribes_it_and_keeps_its_history_readable(
        bc, admin, client, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    assert len(bc.hooks) == 1  # subscribed at the channel
    order = make_order(channel["id"], 250, "AWAITING_SHIPMENT")
    bc.order(250, status_id=5)
    cancelled = bc.send(order_id=250, new_status=5).get_json()["delivery_id"]
    assert worker.run_until_idle() == 1
    leftover = bc.send(order_id=251, new_status=5).get_json()["delivery_id"]  # not processed yet

    deleted = admin.request("DELETE", f"/channels/{channel['id']}", expect=200).get_json()
    assert deleted["deleted_at"] and deleted["active"] is False
    assert deleted["subscriptions"] == [] and bc.hooks == {}  # the hook is gone at BigCommerce

    # Gone from the list and from editing; its webhook URL answers 404.
    assert channel["id"] not in [c["id"] for c in admin.get("/channels")]
    assert_json_error(admin.request("GET", f"/channels/{channel['id']}"), 404)
    assert_json_error(admin.request("PATCH", f"/channels/{channel['id']}",
                                    json={"active": True}), 404)
    assert_json_error(admin.request("DELETE", f"/channels/{channel['id']}"), 404)
    refused = bc.send(order_id=252, new_status=5)
    assert_json_error(refused, 404)

    # The worker takes the leftover delivery without failing: ignored, the channel is inactive.
    assert worker.run_until_idle() == 1
    left = admin.get(f"/deliveries/{leftover}")
    assert (left["state"], left["outcome"]) == ("done", "ignored"), left
    assert "inactive" in left["reason"]

    # "Why did order 250 cancel?" keeps its answer.
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "CANCELLED"
    assert detail["history"][-1]["delivery_id"] == cancelled
    assert admin.get(f"/deliveries/{cancelled}")["outcome"] == "applied"
    assert [d["id"] for d in admin.get(f"/deliveries?channel_id={channel['id']}")] == [
        leftover, cancelled]
    history = admin.get(f"/channels/{channel['id']}/history")
    assert [h["field"] for h in history][-2:] == ["active", "deleted"]
    events = admin.get(f"/channels/{channel['id']}/subscriptions")["events"]
    assert events[0]["action"] == "deleted" and "inactive" in events[0]["message"]

    # No new order nor replay window on a deleted channel.
    assert "deleted" in assert_json_error(admin.request("POST", "/orders", json={
        "channel_id": channel["id"], "channel_order_id": "253"}), 422)["message"]


def test_a_hook_that_cannot_be_removed_is_reported_and_does_not_block_the_delete(
        app, bc, admin, api):
    channel = bc.create()
    (hook_id,) = bc.hooks
    api.upsert(responses.DELETE, f"{BC_STORE}/v3/hooks/{hook_id}", status=500,
               json={"title": "down"})
    deleted = admin.request("DELETE", f"/channels/{channel['id']}", expect=200).get_json()
    assert deleted["deleted_at"]
    (left,) = deleted["subscriptions"]
    assert left["status"] == "failed"
    assert "DELETE" in left["last_error"] and "500" in left["last_error"]
    assert hook_id in bc.hooks  # still at BigCommerce
    assert channel["id"] not in [c["id"] for c in admin.get("/channels")]
    # The periodic check tries again, and removes it once BigCommerce takes the DELETE.
    api.remove(responses.DELETE, f"{BC_STORE}/v3/hooks/{hook_id}")
    api.add_callback(responses.DELETE, f"{BC_STORE}/v3/hooks/{hook_id}",
                     callback=bc._delete_hook)
    check_all(app)
    assert hook_id not in bc.hooks
    assert admin.get(f"/channels/{channel['id']}/subscriptions")["subscriptions"] == []


# -- Location, Allow ---------------------------------------------------------------------------

def test_201_answers_carry_location(bc, admin, client):
    created = admin.request("POST", "/channels", json=channel_body(), expect=201)
    location = created.headers["Location"]
    assert location.endswith(f"/api/v1/channels/{created.get_json()['id']}")
    assert client.get(location, headers=AUTH).get_json()["name"] == "My store"
    order = admin.request("POST", "/orders", json={
        "channel_id": created.get_json()["id"], "channel_order_id": "77"}, expect=201)
    assert order.headers["Location"].endswith(f"/api/v1/orders/{order.get_json()['id']}")
    assert client.get(order.headers["Location"], headers=AUTH).status_code == 200


def test_405_answers_carry_allow(admin, client):
    response = admin.request("PUT", "/channels")
    assert_json_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    response = client.open("/healthz", method="DELETE")
    assert_json_error(response, 405)
    assert "GET" in response.headers["Allow"]
    response = client.get("/webhooks/bigcommerce/1")
    assert_json_error(response, 405)
    assert response.headers["Allow"] == "POST"


# -- ETag / If-Match ---------------------------------------------------------------------------

def test_a_stale_edit_gets_412_and_changes_nothing(bc, admin, client):
    channel = bc.create()
    path = f"/channels/{channel['id']}"
    first = admin.request("GET", path, expect=200)
    etag = first.headers["ETag"]
    assert etag and admin.request("GET", path, expect=200).headers["ETag"] == etag

    # Operator A saves with the ETag they read: accepted, and the ETag moves on.
    saved = guarded(client, "PATCH", path, etag, {"name": "A"})
    assert saved.status_code == 200 and saved.headers["ETag"] != etag
    # Operator B, who read the same version, saves afterwards: 412, nothing changed.
    stale = guarded(client, "PATCH", path, etag, {"name": "B"})
    body = assert_json_error(stale, 412)
    assert "GET it again" in body["message"]
    assert admin.get(path)["name"] == "A"
    assert_json_error(guarded(client, "DELETE", path, etag), 412)
    assert admin.get(path)["deleted_at"] is None
    # With the current ETag, B's edit goes through; without If-Match, an edit is taken as is.
    assert guarded(client, "PATCH", path, saved.headers["ETag"], {"name": "B"}).status_code == 200
    admin.request("PATCH", path, json={"name": "C"}, expect=200)
    assert admin.get(path)["name"] == "C"


def test_a_credentials_change_moves_the_etag(bc, admin, client):
    channel = bc.create()
    path = f"/channels/{channel['id']}"
    etag = admin.request("GET", path, expect=200).headers["ETag"]
    admin.request("PATCH", path, json={"credentials": {"access_token": "token-2"}}, expect=200)
    assert_json_error(guarded(client, "PATCH", path, etag, {"name": "x"}), 412)


# -- paging ------------------------------------------------------------------------------------

def test_lists_page_with_a_cursor_and_a_next_link(bc, admin, client, make_order):
    channels = [bc.create()["id"]] + [
        admin.post("/channels", channel_body(name=f"store {n}", valid_cancellation_statuses=[],
                                             valid_fulfillment_statuses=[]))["id"]
        for n in range(4)]
    assert walk(client, "/api/v1/channels?limit=2") == [channels[:2], channels[2:4],
                                                        channels[4:]]
    orders = [make_order(channels[0], n)["id"] for n in range(5)]
    assert walk(client, f"/api/v1/orders?channel_id={channels[0]}&limit=2") == [
        orders[:2], orders[2:4], orders[4:]]
    deliveries = [bc.send(order_id=n).get_json()["delivery_id"] for n in range(300, 305)]
    pages = walk(client, "/api/v1/deliveries?outcome=pending&limit=3")
    assert pages == [deliveries[::-1][:3], deliveries[::-1][3:]]  # newest first
    for n in range(3):
        admin.patch(f"/channels/{channels[1]}", {"name": f"renamed {n}"})
    history = admin.get(f"/channels/{channels[1]}/history")
    assert walk(client, f"/api/v1/channels/{channels[1]}/history?limit=2") == [
        [h["id"] for h in history[:2]], [h["id"] for h in history[2:]]]
    # The next link keeps the filters; the last page has none; offset still works.
    first = client.get(f"/api/v1/orders?channel_id={channels[0]}&limit=4", headers=AUTH)
    assert f"channel_id={channels[0]}" in next_link(first)
    assert "Link" not in client.get("/api/v1/orders?limit=1000", headers=AUTH).headers
    assert [o["id"] for o in admin.get("/orders?limit=2&offset=1")] == orders[1:3]


def test_a_cursor_the_api_did_not_give_is_400(admin):
    for cursor in ("garbage!", "aWQ6eA", "eHg6MQ"):  # not base64; "id:x"; "xx:1"
        body = assert_json_error(admin.request("GET", f"/deliveries?cursor={cursor}"), 400)
        assert "cursor" in body["message"]


# -- JSON bodies -------------------------------------------------------------------------------

def test_a_body_that_is_not_json_gets_415_saying_so(bc, admin, client):
    response = client.post("/api/v1/channels", data="type=bigcommerce&name=x",
                           headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    body = assert_json_error(response, 415)
    assert "application/json" in body["message"]
    response = client.post("/api/v1/channels", data=json.dumps(channel_body()), headers=AUTH)
    assert "JSON" in assert_json_error(response, 415)["message"]


def test_malformed_json_gets_400_naming_json(admin, client):
    response = client.post("/api/v1/channels", data='{"type": "bigcommerce",',
                           headers={**AUTH, "Content-Type": "application/json"})
    body = assert_json_error(response, 400)
    assert "JSON" in body["message"]
    response = client.patch("/api/v1/channels/1", data=b"\xff\xfe",
                            headers={**AUTH, "Content-Type": "application/json"})
    assert "JSON" in assert_json_error(response, 400)["message"]


def test_a_post_without_a_body_is_not_415(bc, admin):
    channel = bc.create()
    admin.request("POST", f"/channels/{channel['id']}/subscriptions", expect=200)


# -- OpenAPI document and reference ------------------------------------------------------------

def test_the_openapi_document_is_valid_and_complete(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    validate_spec(spec)
    schemas = spec["components"]["schemas"]
    create = schemas["ChannelCreate"]
    assert create["discriminator"]["propertyName"] == "type"
    assert set(create["discriminator"]["mapping"]) == {"bigcommerce", "shopify"}
    bigcommerce = schemas["BigcommerceChannelCreate"]["properties"]["credentials"]["$ref"]
    assert set(schemas[bigcommerce.rsplit("/", 1)[1]]["required"]) == {"store_hash",
                                                                        "access_token"}
    shopify = schemas["ShopifyCredentials"]
    assert "shop_domain" in shopify["required"] and "client_secret" in shopify["properties"]
    patch = schemas["ChannelPatch"]["properties"]["credentials"]
    assert {"$ref": "#/components/schemas/ShopifyCredentialsPatch"} in patch["anyOf"]
    assert "required" not in schemas["ShopifyCredentialsPatch"]

    intake = spec["paths"]["/webhooks/{channel_type}/{channel_id}"]["post"]
    assert {"200", "400", "401", "404", "413", "503"} <= set(intake["responses"])
    assert intake["security"] == []
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "get" in spec["paths"][path]
    if_match = spec["components"]["parameters"]["IF_MATCH"]
    assert if_match["required"] is False  # an edit without If-Match is applied as it is
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    channel_ops = spec["paths"]["/api/v1/channels/{channel_id}"]
    assert "delete" in channel_ops
    assert "412" in channel_ops["patch"]["responses"] and "428" not in channel_ops["patch"][
        "responses"]
    assert "ETag" in channel_ops["get"]["responses"]["200"]["headers"]
    assert "Location" in spec["paths"]["/api/v1/channels"]["post"]["responses"]["201"]["headers"]
    assert "Link" in spec["paths"]["/api/v1/deliveries"]["get"]["responses"]["200"]["headers"]


class TollCredentials(Schema):
    api_key = fields.String(required=True)
    region = fields.String(validate=validate.OneOf(["eu", "us"]))


class TollAdapter(ChannelAdapter):
    type = "toll-shop"
    title = "Toll shop"
    credentials_schema = TollCredentials

    def authenticate(self, delivery, channel):
        return None

    def inspect(self, delivery, channel):
        return DeliveryInfo(key="k")


class TollPlugin:
    @hookimpl
    def register_channels(self, register):
        register(TollAdapter())


def test_a_plugins_credentials_appear_in_the_document(app_config):
    from core import create_app
    app = create_app({**app_config, "PLUGINS": [("toll", TollPlugin())]})
    try:
        spec = app.test_client().get("/api/v1/openapi.json").get_json()
    finally:
        app.extensions["orderhooks.db"].dispose()
    validate_spec(spec)
    schemas = spec["components"]["schemas"]
    variant = schemas["ChannelCreate"]["discriminator"]["mapping"]["toll-shop"].rsplit("/", 1)[1]
    assert schemas[variant]["properties"]["type"]["enum"] == ["toll-shop"]
    credentials = schemas[variant]["properties"]["credentials"]["$ref"].rsplit("/", 1)[1]
    assert schemas[credentials]["required"] == ["api_key"]
    assert schemas[credentials]["properties"]["region"]["enum"] == ["eu", "us"]


def test_the_reference_page_is_served_with_its_assets_from_here(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/api/v1/docs/assets/") for a in assets), assets
    for asset in assets:
        loaded = client.get(asset)
        assert loaded.status_code == 200 and len(loaded.get_data()) > 1000, asset
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "unsafe-inline" not in policy.split(
        "style-src")[0]
    assert "default-src 'none'" in policy
    # Every other answer keeps the strict policy; nothing else of the package is served.
    assert client.get("/healthz").headers["Content-Security-Policy"] == "default-src 'none'"
    assert client.get("/api/v1/docs/assets/index.html").status_code == 404
    assert client.get("/api/v1/docs/assets/..%2f__init__.py").status_code == 404
