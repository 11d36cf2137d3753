"""The admin API: auth, OpenAPI document, channels (credentials write-only, edit history),
orders, deliveries, statuses, health, and JSON errors everywhere."""
import base64
import json
import logging

import pytest

from core.logs import JsonFormatter
from core.testing import ADMIN_TOKEN, standard_webhooks_headers
from tests.conftest import BC_API, STORE

ACCESS_TOKEN = "super-secret-access-token-3f9a"
CLIENT_SECRET = "super-secret-client-secret-77c1"
NEW_TOKEN = "rotated-access-token-b21d"


def creds(**extra):
    return {"store_hash": STORE, "access_token": ACCESS_TOKEN, "api_base_url": BC_API, **extra}


def channel_body(**extra):
    return {"type": "bigcommerce", "name": "My store", "credentials": creds(),
            "valid_cancellation_statuses": ["AWAITING_SHIPMENT"],
            "valid_fulfillment_statuses": ["AWAITING_SHIPMENT", "PENDING_FULFILLMENT"],
            **extra}


def assert_json_error(response, status):
    assert response.status_code == status, (response.status_code, response.get_data())
    assert response.is_json, response.get_data()
    body = response.get_json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert isinstance(body.get("message"), str) and body["message"]
    return body


@pytest.fixture
def logged(app):
    """Every log line the service writes during the test, formatted as in production."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(JsonFormatter().format(record))

    logger = logging.getLogger("orderhooks")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": ADMIN_TOKEN}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": "Bearer "}, {"X-Admin-Token": ADMIN_TOKEN},
])
@pytest.mark.parametrize("method,path", [("GET", "/api/v1/channels"),
                                         ("POST", "/api/v1/channels"),
                                         ("GET", "/api/v1/orders/1"),
                                         ("GET", "/api/v1/statuses"),
                                         ("GET", "/api/v1/nothing-here")])
def test_401_without_the_right_bearer_token(client, headers, method, path):
    response = client.open(path, method=method, headers=headers, json={})
    body = assert_json_error(response, 401)
    assert body["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


class TestNoAdminToken:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "ADMIN_TOKEN": ""}

    def test_unset_token_refuses_everything(self, client):
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            body = assert_json_error(client.get("/api/v1/channels", headers=headers), 401)
            assert "ORDERHOOKS_ADMIN_TOKEN" in body["message"]


def test_openapi_document_is_public_json_listing_every_path(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.get_data())
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"]
    paths = set(doc["paths"])
    for path in ["/api/v1/channels", "/api/v1/channels/{channel_id}",
                 "/api/v1/channels/{channel_id}/history",
                 "/api/v1/channels/{channel_id}/subscriptions", "/api/v1/orders",
                 "/api/v1/orders/{order_id}", "/api/v1/deliveries",
                 "/api/v1/deliveries/{delivery_id}", "/api/v1/deliveries/{delivery_id}/replay",
                 "/api/v1/deliveries/replay", "/api/v1/statuses", "/api/v1/plugins"]:
        assert path in paths, path
    assert set(doc["paths"]["/api/v1/channels"]) >= {"get", "post"}
    assert set(doc["paths"]["/api/v1/orders/{order_id}"]) >= {"get", "patch"}
    assert "bearerAuth" in doc["components"]["securitySchemes"]
    # credentials are write-only in the schema too
    schemas = doc["components"]["schemas"]
    channel_schema = next(v for k, v in schemas.items() if k.startswith("Channel")
                          and "webhook_url" in v.get("properties", {}))
    assert "credentials" not in channel_schema["properties"]


# -- channels -------------------------------------------------------------------------------

def test_channel_create_get_patch_list(bc, admin, api):
    created = admin.post("/channels", channel_body())
    assert isinstance(created["id"], int)
    assert created["webhook_url"] == \
        f"https://orderhooks.example.com/webhooks/bigcommerce/{created['id']}"
    assert created["type"] == "bigcommerce" and created["active"] is True
    assert created["valid_fulfillment_statuses"] == ["AWAITING_SHIPMENT", "PENDING_FULFILLMENT"]
    assert created["subscriptions"][0]["status"] == "active"

    got = admin.get(f"/channels/{created['id']}")
    assert {k: got[k] for k in ("id", "name", "type", "valid_cancellation_statuses")} == \
        {k: created[k] for k in ("id", "name", "type", "valid_cancellation_statuses")}

    patched = admin.patch(f"/channels/{created['id']}", {
        "name": "Renamed", "valid_cancellation_statuses": ["ON_HOLD", "AWAITING_SHIPMENT"]})
    assert patched["name"] == "Renamed"
    assert patched["valid_cancellation_statuses"] == ["AWAITING_SHIPMENT", "ON_HOLD"]
    assert patched["valid_fulfillment_statuses"] == created["valid_fulfillment_statuses"]

    second = admin.post("/channels", channel_body(name="Second", active=False))
    assert second["active"] is False and second["subscriptions"] == []
    listed = admin.get("/channels")
    assert [c["id"] for c in listed] == [created["id"], second["id"]]
    assert listed[0]["name"] == "Renamed"


@pytest.mark.parametrize("path", ["/channels/999", "/channels/999/history",
                                  "/channels/99999999999999999999", "/orders/999",
                                  "/orders/99999999999999999999", "/deliveries/999",
                                  "/deliveries/99999999999999999999"])
def test_unknown_ids_are_json_404(admin, path):
    assert_json_error(admin.request("GET", path), 404)


def test_credentials_are_never_returned_or_logged(bc, admin, client, make_order, worker, api,
                                                  logged):
    bodies = []
    original = admin.request

    def recording(method, path, expect=None, **kwargs):
        response = original(method, path, expect, **kwargs)
        bodies.append(response.get_data(as_text=True))
        return response

    admin.request = recording
    channel = admin.post("/channels", channel_body(credentials=creds(
        client_secret=CLIENT_SECRET)))
    cid = channel["id"]
    admin.get(f"/channels/{cid}")
    admin.get("/channels")
    admin.patch(f"/channels/{cid}", {"credentials": {"access_token": NEW_TOKEN}})
    admin.patch(f"/channels/{cid}", {"credentials": {"access_token": "x"},
                                     "valid_cancellation_statuses": ["FOO"]}, expect=422)
    admin.get(f"/channels/{cid}/history")
    admin.get(f"/channels/{cid}/subscriptions")
    admin.post(f"/channels/{cid}/subscriptions", expect=200)
    admin.request("POST", "/channels", 422, json=channel_body(credentials=creds(
        store_hash="not a hash!", client_secret=CLIENT_SECRET)))
    order = make_order(cid, 250)
    bc.channel = channel
    bc.order(250, status_id=5)
    # The channel has the client secret, so its deliveries are signed (Standard Webhooks).
    body = json.dumps(bc.payload(order_id=250))
    signature = standard_webhooks_headers(base64.b64encode(CLIENT_SECRET.encode()).decode(), body)
    delivery_id = bc.send(body=body, headers=signature).get_json()["delivery_id"]
    worker.run_until_idle()
    admin.get(f"/orders/{order['id']}")
    admin.get("/deliveries")
    admin.get(f"/deliveries/{delivery_id}")
    admin.get("/plugins")
    assert len(bodies) >= 12
    secret = bc.secret
    for body in bodies:
        for value in (ACCESS_TOKEN, NEW_TOKEN, CLIENT_SECRET, secret):
            assert value not in body
        assert "credentials_sealed" not in body and "webhook_secret" not in body
    # the API was called with the rotated token, so it really was stored
    assert api.calls[-1].request.headers["X-Auth-Token"] == NEW_TOKEN
    assert logged, "expected some log lines"
    for line in logged:
        for value in (ACCESS_TOKEN, NEW_TOKEN, CLIENT_SECRET, secret):
            assert value not in line


def test_edit_history_records_old_and_new_values(bc, admin):
    channel = admin.post("/channels", channel_body())
    cid = channel["id"]
    admin.patch(f"/channels/{cid}", {"name": "Renamed"})
    admin.patch(f"/channels/{cid}", {"valid_cancellation_statuses": ["ON_HOLD"],
                                     "valid_fulfillment_statuses": []})
    admin.patch(f"/channels/{cid}", {"active": False})
    admin.patch(f"/channels/{cid}", {"credentials": {"access_token": NEW_TOKEN,
                                                     "client_secret": CLIENT_SECRET}})
    admin.patch(f"/channels/{cid}", {"name": "Renamed", "active": False,
                                     "credentials": {"access_token": NEW_TOKEN}})  # no change
    history = admin.get(f"/channels/{cid}/history")
    assert [h["field"] for h in history] == [
        "created", "name", "valid_cancellation_statuses", "valid_fulfillment_statuses",
        "active", "credentials"]
    assert all(h["at"] and h["actor"] for h in history)
    created = history[0]
    assert created["old_value"] is None
    assert created["new_value"]["name"] == "My store"
    assert created["new_value"]["valid_cancellation_statuses"] == ["AWAITING_SHIPMENT"]
    assert "credentials" not in created["new_value"]
    by_field = {h["field"]: h for h in history}
    assert (by_field["name"]["old_value"], by_field["name"]["new_value"]) == ("My store",
                                                                              "Renamed")
    assert by_field["valid_cancellation_statuses"]["old_value"] == ["AWAITING_SHIPMENT"]
    assert by_field["valid_cancellation_statuses"]["new_value"] == ["ON_HOLD"]
    assert by_field["valid_fulfillment_statuses"]["old_value"] == ["AWAITING_SHIPMENT",
                                                                   "PENDING_FULFILLMENT"]
    assert by_field["valid_fulfillment_statuses"]["new_value"] == []
    assert (by_field["active"]["old_value"], by_field["active"]["new_value"]) == (True, False)
    credentials = by_field["credentials"]
    assert credentials["old_value"] is None
    assert credentials["new_value"] == {"changed": ["access_token", "client_secret"]}
    text = json.dumps(history)
    assert NEW_TOKEN not in text and CLIENT_SECRET not in text and ACCESS_TOKEN not in text


def test_history_of_unknown_channel_is_404(admin):
    assert_json_error(admin.request("GET", "/channels/5/history"), 404)


@pytest.mark.parametrize("field", ["valid_cancellation_statuses", "valid_fulfillment_statuses"])
@pytest.mark.parametrize("bad", ["UNPROCESSED", "CANCELLED", "FOO"])
def test_bad_statuses_are_422_naming_the_value(bc, admin, field, bad):
    response = admin.request("POST", "/channels", json=channel_body(**{field: ["ON_HOLD", bad]}))
    body = assert_json_error(response, 422)
    assert bad in body["message"]
    assert admin.get("/channels") == []
    channel = admin.post("/channels", channel_body())
    response = admin.request("PATCH", f"/channels/{channel['id']}", json={field: [bad]})
    body = assert_json_error(response, 422)
    assert bad in body["message"]
    assert admin.get(f"/channels/{channel['id']}")[field] == channel[field]
    assert [h["field"] for h in admin.get(f"/channels/{channel['id']}/history")] == ["created"]


@pytest.mark.parametrize("bad_value", ["AWAITING_SHIPMENT", [1], [None], {"a": 1}])
def test_status_lists_of_the_wrong_shape_are_422(bc, admin, bad_value):
    response = admin.request("POST", "/channels", json=channel_body(
        valid_cancellation_statuses=bad_value))
    assert_json_error(response, 422)


def test_unknown_channel_type_is_422(admin):
    body = assert_json_error(admin.request("POST", "/channels",
                                           json=channel_body(type="ebay")), 422)
    assert "ebay" in body["message"] and "bigcommerce" in body["message"]


@pytest.mark.parametrize("credentials,word", [
    ({"access_token": "t"}, "store_hash"),
    ({"store_hash": STORE}, "access_token"),
    ({"store_hash": "has spaces", "access_token": "t"}, "store_hash"),
    ({"store_hash": STORE, "access_token": "t", "api_base_url": "not a url"}, "api_base_url"),
    ({"store_hash": STORE, "access_token": "t", "password": "x"}, "password"),
    ({"store_hash": STORE, "access_token": ""}, "access_token"),
])
def test_bad_credentials_are_422(bc, admin, credentials, word):
    body = assert_json_error(admin.request("POST", "/channels",
                                           json=channel_body(credentials=credentials)), 422)
    assert word in body["message"]
    assert admin.get("/channels") == []


def test_bad_credentials_on_patch_are_422_and_change_nothing(bc, admin, api):
    channel = admin.post("/channels", channel_body())
    body = assert_json_error(admin.request("PATCH", f"/channels/{channel['id']}", json={
        "credentials": {"store_hash": "bad hash"}}), 422)
    assert "store_hash" in body["message"]
    admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert f"/stores/{STORE}/" in api.calls[-1].request.url


@pytest.mark.parametrize("body", [
    {"name": "x"},                                      # type and credentials missing
    {**channel_body(), "colour": "red"},                # unknown field
    {**channel_body(), "name": ""},
    {**channel_body(), "credentials": "token"},
])
def test_malformed_channel_bodies_are_422(bc, admin, body):
    assert_json_error(admin.request("POST", "/channels", json=body), 422)


def test_non_json_body_is_a_4xx_json_error(admin):
    response = admin.request("POST", "/channels", data="{not json",
                             content_type="application/json")
    assert 400 <= response.status_code < 500
    assert_json_error(response, response.status_code)


# -- orders ---------------------------------------------------------------------------------

def test_orders_create_get_patch_list(bc, admin):
    channel = admin.post("/channels", channel_body())
    cid = channel["id"]
    first = admin.post("/orders", {"channel_id": cid, "channel_order_id": "250",
                                   "status": "AWAITING_SHIPMENT",
                                   "customer": {"email": "a@example.com"}})
    assert first["status"] == "AWAITING_SHIPMENT" and first["shipments"] == []
    assert first["customer"] == {"email": "a@example.com"}
    assert [h["event"] for h in first["history"]] == ["created"]
    second = admin.post("/orders", {"channel_id": cid, "channel_order_id": "251"})
    assert second["status"] == "UNPROCESSED"  # the default
    other = admin.post("/channels", channel_body(name="Other"))
    third = admin.post("/orders", {"channel_id": other["id"], "channel_order_id": "250",
                                   "status": "ON_HOLD"})

    got = admin.get(f"/orders/{first['id']}")
    assert got["channel_order_id"] == "250" and got["held_intents"] == []

    patched = admin.patch(f"/orders/{second['id']}", {"status": "ON_HOLD"})
    assert patched["status"] == "ON_HOLD"
    assert [(h["event"], h["old_status"], h["new_status"]) for h in patched["history"]] == [
        ("created", None, "UNPROCESSED"), ("status_changed", "UNPROCESSED", "ON_HOLD")]

    def ids(**query):
        return [o["id"] for o in admin.get("/orders", query_string=query)]

    assert ids() == [first["id"], second["id"], third["id"]]
    assert ids(channel_id=cid) == [first["id"], second["id"]]
    assert ids(channel_order_id="250") == [first["id"], third["id"]]
    assert ids(channel_id=cid, channel_order_id="250") == [first["id"]]
    assert ids(status="ON_HOLD") == [second["id"], third["id"]]
    assert ids(status="CANCELLED") == []
    assert ids(limit=1, offset=1) == [second["id"]]
    assert_json_error(admin.request("GET", "/orders", query_string={"status": "FOO"}), 422)
    assert_json_error(admin.request("GET", "/orders", query_string={"limit": 0}), 422)


def test_duplicate_order_is_409(bc, admin):
    channel = admin.post("/channels", channel_body())
    admin.post("/orders", {"channel_id": channel["id"], "channel_order_id": "250"})
    body = assert_json_error(admin.request("POST", "/orders", json={
        "channel_id": channel["id"], "channel_order_id": "250", "status": "ON_HOLD"}), 409)
    assert "250" in body["message"]
    assert len(admin.get("/orders")) == 1


@pytest.mark.parametrize("body,word", [
    ({"channel_id": 999, "channel_order_id": "1"}, "999"),
    ({"channel_id": "1", "channel_order_id": "1"}, "channel_id"),
    ({"channel_id": 1, "channel_order_id": "1", "status": "FOO"}, "status"),
    ({"channel_id": 1, "channel_order_id": ""}, "channel_order_id"),
    ({"channel_id": 1, "channel_order_id": "1", "extra": True}, "extra"),
    ({"channel_order_id": "1"}, "channel_id"),
])
def test_bad_orders_are_422(bc, admin, body, word):
    admin.post("/channels", channel_body())
    error = assert_json_error(admin.request("POST", "/orders", json=body), 422)
    assert word in json.dumps(error)


def test_bad_order_patch_is_422(bc, admin):
    channel = admin.post("/channels", channel_body())
    order = admin.post("/orders", {"channel_id": channel["id"], "channel_order_id": "1"})
    for body in ({"status": "FOO"}, {}, {"status": "ON_HOLD", "channel_id": 2}):
        assert_json_error(admin.request("PATCH", f"/orders/{order['id']}", json=body), 422)
    assert admin.get(f"/orders/{order['id']}")["status"] == "UNPROCESSED"


# -- deliveries -----------------------------------------------------------------------------

def test_deliveries_list_filters(bc, admin, make_order, worker, make_channel):
    channel = bc.create()
    make_order(channel["id"], 250)
    make_order(channel["id"], 251, "ON_HOLD")
    bc.order(250, status_id=5)
    bc.order(251, status_id=5)
    applied = bc.send(order_id=250).get_json()["delivery_id"]
    ignored = bc.send(order_id=251).get_json()["delivery_id"]
    worker.run_until_idle()
    pending = bc.send(order_id=252).get_json()["delivery_id"]
    other = make_channel("bigcommerce", {"store_hash": "zzz9", "access_token": "t",
                                         "api_base_url": BC_API}, cancel=(), fulfill=())

    def ids(**query):
        return [d["id"] for d in admin.get("/deliveries", query_string=query)]

    assert ids() == [pending, ignored, applied]  # newest first
    assert ids(channel_id=channel["id"]) == [pending, ignored, applied]
    assert ids(channel_id=other["id"]) == []
    assert ids(outcome="applied") == [applied]
    assert ids(outcome="ignored") == [ignored]
    assert ids(outcome="pending") == [pending]
    assert ids(outcome="dead") == []
    assert ids(channel_order_id="251") == [ignored]
    assert ids(limit=1) == [pending]
    assert_json_error(admin.request("GET", "/deliveries", query_string={"outcome": "bogus"}),
                      422)
    detail = admin.get(f"/deliveries/{ignored}")
    assert detail["outcome"] == "ignored" and "ON_HOLD" in detail["reason"]
    assert detail["intents"][0]["kind"] == "Cancel"
    assert json.loads(detail["body"])["data"]["id"] == 251


# -- statuses, plugins, health, errors ------------------------------------------------------

def test_statuses(admin):
    statuses = admin.get("/statuses")
    assert [s["value"] for s in statuses] == [
        "UNPROCESSED", "UNRESOLVED", "AWAITING_PAYMENT", "PENDING_SHIPMENT_PLAN",
        "AWAITING_SHIPMENT", "AWAITING_DROPSHIP", "AWAITING_3PL_EXPORT", "PENDING_FULFILLMENT",
        "SHIPPED", "ON_HOLD", "CANCELLED"]
    selectable = {s["value"] for s in statuses if s["selectable"]}
    assert "UNPROCESSED" not in selectable and "CANCELLED" not in selectable
    assert len(selectable) == 9
    assert all(s["label"] for s in statuses)


def test_plugins_lists_bigcommerce(admin):
    plugins = {p["name"]: p for p in admin.get("/plugins")}
    assert plugins["bigcommerce"]["status"] == "loaded"
    assert plugins["bigcommerce"]["channel_types"] == ["bigcommerce"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["database"] == "ok"


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v1/channels/x"])
def test_unknown_route_is_json_404(admin, client, path):
    assert_json_error(client.get(path, headers=admin.headers), 404)


@pytest.mark.parametrize("method,path", [("DELETE", "/api/v1/channels"),
                                         ("PUT", "/api/v1/channels/1"),
                                         ("DELETE", "/api/v1/orders/1"),
                                         ("POST", "/api/v1/statuses"),
                                         ("POST", "/healthz")])
def test_wrong_method_is_json_405(admin, client, method, path):
    body = assert_json_error(client.open(path, method=method, headers=admin.headers), 405)
    assert body["error"] == "method_not_allowed"
