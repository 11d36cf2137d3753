"""Where channel credentials may go, and what comes back: an admin token must not be able to
steer a channel's stored secrets to another host, a channel's answer must not come back through
our API, and a subscription must not look healthy while its deliveries are refused.

``responses`` stands in for every channel API: an unregistered URL is a ConnectionError, and
``api.calls`` lists every request made, so "no request to X" is checked directly."""
import json
import logging

import pytest
import responses
from sqlalchemy import MetaData, select

from core.http import APIBaseURLs, ChannelHTTP, segment
from core.logs import JsonFormatter
from core.testing import ADMIN_TOKEN, channel_view
from tests.conftest import BC_API, BC_STORE, STORE
from tests.shopify_helpers import SHOP, ShopifyStandin

EVIL = "https://evil.test"


@pytest.fixture
def logged():
    """Every line the service logs during the test, as it would be written."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("orderhooks")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def dump_database(app) -> str:
    engine = app.extensions["orderhooks.db"].engine
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for table in meta.sorted_tables
                         for row in conn.execute(select(table)))


def allow(app, channel_type: str, allowance: str, monkeypatch) -> None:
    """As ORDERHOOKS_ALLOWED_API_BASE_URLS would (the admin API and the clients read it here)."""
    monkeypatch.setattr(app.extensions["orderhooks.channel_types"].get(channel_type),
                        "allowed_api_base_urls", APIBaseURLs(allowance))


def calls_to(api, prefix: str) -> list:
    return [c for c in api.calls if c.request.url.startswith(prefix)]


def subscriptions_report(admin, channel) -> dict:
    return admin.get(f"/channels/{channel['id']}/subscriptions")


# -- moving a channel's API takes its credentials again ------------------------------------------


@pytest.mark.parametrize("move", [{"api_base_url": EVIL}, {"store_hash": "other"},
                                  {"api_base_url": EVIL, "client_secret": "x"}])
def test_moving_a_channels_api_without_its_token_is_refused(bc, admin, api, monkeypatch, move):
    """The attack: PATCH credentials.api_base_url alone, and the stored X-Auth-Token and webhook
    secret follow it. Even with the host allowed, the token must come in the same request."""
    allow(bc.app, "bigcommerce", f"{BC_API},{EVIL}", monkeypatch)
    channel = bc.create()
    before = len(api.calls)
    response = admin.request("PATCH", f"/channels/{channel['id']}",
                             json={"credentials": move})
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "unprocessable_entity"
    assert "send credentials.access_token again" in body["message"]
    assert list(body["details"]["credentials"]) == ["access_token"]
    assert len(api.calls) == before and not calls_to(api, EVIL)
    assert channel_view(bc.app, channel["id"]).credentials["store_hash"] == STORE


def test_a_moved_api_gets_the_token_sent_with_the_move_and_a_new_webhook_secret(
        bc, admin, api, monkeypatch):
    allow(bc.app, "bigcommerce", f"{BC_API},{EVIL}", monkeypatch)
    channel = bc.create()
    old_secret = bc.secret
    seen = []

    def hooks(request):
        seen.append((request.method, request.headers.get("X-Auth-Token"), request.body))
        if request.method == "GET":
            return 200, {}, json.dumps({"data": [], "meta": {}})
        return 200, {}, json.dumps({"data": {"id": 9, **json.loads(request.body)}, "meta": {}})

    for method in (responses.GET, responses.POST):
        api.add_callback(method, f"{EVIL}/stores/{STORE}/v3/hooks", callback=hooks)
    admin.patch(f"/channels/{channel['id']}", {"credentials": {
        "api_base_url": EVIL, "access_token": "token-for-evil"}})
    assert {token for _, token, _ in seen} == {"token-for-evil"}  # never the stored one
    new_secret = bc.secret
    assert new_secret != old_secret
    posted = [json.loads(body) for method, _, body in seen if method == "POST"]
    assert posted and old_secret not in json.dumps(posted)
    history = admin.get(f"/channels/{channel['id']}/history")
    assert "webhook_secret (renewed)" in history[-1]["new_value"]["changed"]
    # the old hooks' secret no longer opens the intake
    assert bc.send(secret=old_secret).status_code == 401


def test_a_token_change_alone_keeps_the_destination_and_the_secret(bc, admin):
    channel = bc.create()
    secret = bc.secret
    admin.patch(f"/channels/{channel['id']}", {"credentials": {"access_token": "token-2",
                                                               "api_base_url": BC_API + "/"}})
    assert bc.secret == secret


# -- a base URL is https on the channel's own hosts, unless the operator allows another ---------


@pytest.mark.parametrize("url", [
    "http://api.bigcommerce.com",                # plain http to the real host
    EVIL,                                        # another host
    "https://api.bigcommerce.com.evil.test",     # a look-alike
    "https://evil.test/api.bigcommerce.com",
    "http://127.0.0.1:8001",                     # a stand-in nobody allowed
    "https://bc.test:8443",                      # the allowed host, another port
    "http://bc.test",                            # the allowed host over http
])
def test_bigcommerce_api_base_url_outside_its_hosts_is_refused(admin, api, url):
    response = admin.request("POST", "/channels", json={
        "type": "bigcommerce", "name": "x", "credentials": {
            "store_hash": STORE, "access_token": "t", "api_base_url": url},
        "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert "ORDERHOOKS_ALLOWED_API_BASE_URLS" in body["message"]
    assert "api_base_url" in body["details"]["credentials"]
    assert len(api.calls) == 0  # refused before any call
    assert admin.get("/channels") == []


def test_bigcommerce_own_api_needs_no_allowance(admin, api):
    api.add(responses.GET, f"https://api.bigcommerce.com/stores/{STORE}/v3/hooks",
            json={"data": [], "meta": {}})
    api.add(responses.POST, f"https://api.bigcommerce.com/stores/{STORE}/v3/hooks",
            json={"data": {"id": 1, "scope": "store/order/statusUpdated", "is_active": True,
                           "destination": "x"}, "meta": {}})
    admin.post("/channels", {"type": "bigcommerce", "name": "x", "credentials": {
        "store_hash": STORE, "access_token": "t"},
        "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]}, expect=201)
    assert {c.request.url.split("?")[0] for c in api.calls} == {
        f"https://api.bigcommerce.com/stores/{STORE}/v3/hooks"}


@pytest.mark.parametrize("url", ["https://other-shop.myshopify.com", f"http://{SHOP}", EVIL])
def test_shopify_api_base_url_is_the_shops_own(admin, api, url):
    response = admin.request("POST", "/channels", json={
        "type": "shopify", "name": "x", "credentials": {
            "shop_domain": SHOP, "access_token": "t", "client_secret": "s", "api_base_url": url},
        "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
    assert response.status_code == 422
    assert "ORDERHOOKS_ALLOWED_API_BASE_URLS" in response.get_json()["message"]
    assert len(api.calls) == 0


def test_shopify_moving_the_shop_takes_the_token_again(app, client, api, make_channel, admin):
    standin = ShopifyStandin(app, client, api, make_channel, admin)
    channel = standin.create()
    response = admin.request("PATCH", f"/channels/{channel['id']}",
                             json={"credentials": {"shop_domain": "other.myshopify.com"}})
    assert response.status_code == 422
    assert "credentials.shop_domain" in response.get_json()["message"]
    assert not calls_to(api, "https://other.myshopify.com")


def test_allowed_entries():
    allowed = APIBaseURLs("http://127.0.0.1:8001, sandbox.example.com/api, http://localhost:*")
    own = ("https://api.bigcommerce.com",)
    assert allowed.check("https://api.bigcommerce.com/", own) == "https://api.bigcommerce.com"
    assert allowed.check("http://127.0.0.1:8001", own)
    assert allowed.check("https://sandbox.example.com/api/v3", own)
    assert allowed.check("http://localhost:9999", own)
    for refused in ("http://127.0.0.1:8002", "https://127.0.0.1:8001",
                    "https://sandbox.example.com/apix", "http://sandbox.example.com/api",
                    "https://localhost:9999", "http://api.bigcommerce.com",
                    "https://api.bigcommerce.com/../x", "https://api.bigcommerce.com?x=1",
                    "https://api.bigcommerce.com/%2e%2e", "ftp://api.bigcommerce.com"):
        with pytest.raises(ValueError):
            allowed.check(refused, own)
    with pytest.raises(ValueError, match="ORDERHOOKS_ALLOWED_API_BASE_URLS"):
        APIBaseURLs("https://user:pw@sandbox.example.com")


def test_a_stored_base_url_the_operator_no_longer_allows_is_never_called(
        bc, admin, api, make_order, worker, monkeypatch):
    """The rule holds at the call, not only at the edit: a restored database or a narrowed
    allowance cannot send the token to the old host."""
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    allow(bc.app, "bigcommerce", "", monkeypatch)
    before = len(api.calls)
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
    worker.run_until_idle()
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "failed"
    assert "ORDERHOOKS_ALLOWED_API_BASE_URLS" in delivery["reason"]
    assert len(api.calls) == before


# -- passwords in URLs and echoed input ----------------------------------------------------------


PASSWORD = "pw-9f3c1e7d5b"


@pytest.mark.parametrize("credentials", [
    {"store_hash": STORE, "access_token": "t",
     "api_base_url": f"https://admin:{PASSWORD}@api.bigcommerce.com"},
    {"store_hash": STORE, "access_token": "t", "api_base_url": f"{BC_API}/?k={PASSWORD}"},
    {"store_hash": STORE, "access_token": PASSWORD * 60},          # too long
    {"store_hash": STORE, "access_token": [PASSWORD]},              # not a string
    {"store_hash": PASSWORD + "!", "access_token": PASSWORD},      # bad store hash
    {"store_hash": STORE, "access_token": "t", "client_secret": {"x": PASSWORD}},
    {"store_hash": STORE, "access_token": "t", "unknown": PASSWORD},
    {"store_hash": STORE, "access_token": "t", "api_base_url": f"not a url {PASSWORD}"},
])
def test_refused_credentials_are_never_echoed_stored_or_logged(bc, admin, logged, credentials):
    response = admin.request("POST", "/channels", json={
        "type": "bigcommerce", "name": "x", "credentials": credentials,
        "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
    assert response.status_code == 422
    assert PASSWORD not in response.get_data(as_text=True)
    assert PASSWORD not in dump_database(bc.app)
    assert not [line for line in logged if PASSWORD in line]


def test_a_password_in_a_patched_base_url_is_refused(bc, admin, logged):
    channel = bc.create()
    response = admin.request("PATCH", f"/channels/{channel['id']}", json={"credentials": {
        "api_base_url": f"https://u:{PASSWORD}@bc.test", "access_token": "t2"}})
    assert response.status_code == 422
    assert "user name or password" in response.get_json()["message"]
    assert PASSWORD not in response.get_data(as_text=True) + dump_database(bc.app)
    assert not [line for line in logged if PASSWORD in line]


# -- redirects and channel answers ---------------------------------------------------------------


def test_redirects_are_never_followed_with_credentials(bc, admin, api, make_order, worker):
    channel = bc.create(cancel=["AWAITING_SHIPMENT"])
    make_order(channel["id"], 250)
    api.add(responses.GET, f"{BC_STORE}/v2/orders/250", status=302,
            headers={"Location": f"{EVIL}/steal"})
    delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
    worker.run_until_idle()
    delivery = admin.get(f"/deliveries/{delivery_id}")
    assert delivery["outcome"] == "failed" and "redirect" in delivery["reason"]
    assert not calls_to(api, EVIL)
    # the subscription check too
    api.replace(responses.GET, f"{BC_STORE}/v3/hooks", status=301,
                headers={"Location": f"{EVIL}/hooks"})
    report = admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert report["subscriptions"][0]["status"] == "failed"
    assert "redirect" in report["subscriptions"][0]["last_error"]
    assert not calls_to(api, EVIL)


def test_channel_http_refuses_redirects_at_the_transport(api):
    api.add(responses.GET, "https://api.bigcommerce.com/x", status=307,
            headers={"Location": f"{EVIL}/x"})
    http = ChannelHTTP("bigcommerce", "https://api.bigcommerce.com", {"X-Auth-Token": "t"},
                       own=("https://api.bigcommerce.com",))
    with pytest.raises(Exception, match="redirect"):
        http.request("GET", "/x")
    assert not calls_to(api, EVIL)


LEAK = "FOREIGN-SERVER-TEXT-4a1b"


def test_a_channels_answer_never_comes_back_through_our_api(bc, admin, api, make_order, worker):
    """A hostile or broken API server's text (here in error bodies and unreadable JSON) must not
    reach /channels/<id>/subscriptions or a delivery's reason."""
    api.replace(responses.GET, f"{BC_STORE}/v3/hooks", status=500, body=f"<h1>{LEAK}</h1>")
    channel = bc.create(cancel=["AWAITING_SHIPMENT"], fulfill=["AWAITING_SHIPMENT"])
    report = subscriptions_report(admin, channel)
    assert report["subscriptions"][0]["status"] == "failed"
    assert "HTTP 500" in report["subscriptions"][0]["last_error"]
    api.replace(responses.GET, f"{BC_STORE}/v3/hooks",
                json={"data": [], "meta": {"pagination": {"total_pages": LEAK}}})
    admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    make_order(channel["id"], 250)
    make_order(channel["id"], 251)
    api.add(responses.GET, f"{BC_STORE}/v2/orders/250", status=422, body=LEAK)
    bc.order(251, status_id=2)
    api.add(responses.GET, f"{BC_STORE}/v2/orders/251/shipments",
            json=[{"id": 1, "items": [{"order_product_id": 1, "quantity": LEAK}]}])
    ids = [bc.send(order_id=n, new_status=s).get_json()["delivery_id"]
           for n, s in ((250, 5), (251, 2))]
    worker.run_until_idle()
    reasons = [admin.get(f"/deliveries/{i}")["reason"] for i in ids]
    assert "HTTP 422" in reasons[0] and "cannot read" in reasons[1]
    answers = json.dumps([subscriptions_report(admin, channel), admin.get("/deliveries"),
                          admin.get(f"/channels/{channel['id']}")])
    assert LEAK not in answers
    assert LEAK not in dump_database(bc.app)


# -- a subscription whose deliveries would be refused is not healthy -------------------------------


def test_a_hook_with_a_stale_secret_header_is_repaired(bc, admin):
    """Seen after a database restore: the hook is active, at the right URL, with another
    channel secret; every delivery got 401 while the check said ok."""
    channel = bc.create()
    hook = next(iter(bc.hooks.values()))
    hook["headers"] = {"X-Orderhooks-Secret": "the secret before the restore"}
    report = admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert report["events"][0]["action"] == "repaired"
    assert "not the channel's current secret" in report["events"][0]["message"]
    assert "the secret before the restore" not in json.dumps(report)
    assert hook["headers"] == {"X-Orderhooks-Secret": bc.secret}
    assert report["subscriptions"][0]["status"] == "active"
    assert bc.send(secret=hook["headers"]["X-Orderhooks-Secret"]).status_code == 200
    # healthy now: the next check finds it ok and records nothing new
    report = admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert [e["action"] for e in report["events"]] == ["repaired", "created"]
    assert report["subscriptions"][0]["last_action"] == "ok"


def test_a_hook_without_its_secret_header_is_repaired_by_the_periodic_check(bc, admin, worker):
    channel = bc.create()
    hook = next(iter(bc.hooks.values()))
    hook.pop("headers")
    worker.housekeeping(force=True)
    assert hook["headers"] == {"X-Orderhooks-Secret": bc.secret}
    assert subscriptions_report(admin, channel)["events"][0]["action"] == "repaired"


def test_a_repair_that_does_not_hold_is_a_failure(bc, admin, api):
    channel = bc.create()
    hook_id, hook = next(iter(bc.hooks.items()))
    hook["headers"] = {"X-Orderhooks-Secret": "stale"}
    api.replace(responses.PUT, f"{BC_STORE}/v3/hooks/{hook_id}",
                json={"data": dict(hook), "meta": {}})  # answers with the stale header kept
    report = admin.post(f"/channels/{channel['id']}/subscriptions", expect=200)
    assert report["subscriptions"][0]["status"] == "failed"
    assert "did not hold" in report["subscriptions"][0]["last_error"]
    assert "stale" not in report["subscriptions"][0]["last_error"]


def test_a_shopify_subscription_that_delivers_xml_is_recreated(
        app, client, api, make_channel, admin):
    standin = ShopifyStandin(app, client, api, make_channel, admin)
    channel = standin.create()
    node = next(n for n in standin.subscriptions.values() if n["topic"] == "ORDERS_CANCELLED")
    node["format"] = "XML"
    report = standin.check()
    repaired = [e for e in report["events"] if e["action"] == "repaired"]
    assert [e["topic"] for e in repaired] == ["ORDERS_CANCELLED"]
    assert "not JSON" in repaired[0]["message"]
    assert [n.get("format") for n in standin.subscriptions.values()
            if n["topic"] == "ORDERS_CANCELLED"] == [None]  # re-created as we create them
    assert channel["webhook_url"] in {n["uri"] for n in standin.subscriptions.values()}


# -- no public URL, no subscriptions -------------------------------------------------------------


@pytest.fixture
def no_public_url(app, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "")


def test_subscriptions_check_refuses_to_run_without_a_public_url(bc, admin, api, no_public_url):
    from core.cli import main as cli
    from core.models import Subscription
    channel_id = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(bc.app.config, "PUBLIC_BASE_URL", "https://orderhooks.example.com")
        channel_id = bc.create()["id"]
    before = len(api.calls)
    result = bc.app.test_cli_runner().invoke(cli, ["subscriptions", "check"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "ORDERHOOKS_PUBLIC_BASE_URL is not set" in lines[0]
    assert len(api.calls) == before
    with bc.app.extensions["orderhooks.db"].Session() as session:
        destinations = {s.destination for s in session.scalars(select(Subscription))}
    assert destinations == {f"https://orderhooks.example.com/webhooks/bigcommerce/{channel_id}"}
    # the admin API says the same, and the periodic check skips
    response = admin.request("POST", f"/channels/{channel_id}/subscriptions")
    assert response.status_code == 422
    assert "ORDERHOOKS_PUBLIC_BASE_URL is not set" in response.get_json()["message"]
    from core.subscriptions import check_all
    assert check_all(bc.app) == {}
    assert len(api.calls) == before


def test_a_channel_needing_subscriptions_is_refused_without_a_public_url(bc, admin, api,
                                                                       no_public_url):
    response = admin.request("POST", "/channels", json={
        "type": "bigcommerce", "name": "x", "credentials": {
            "store_hash": STORE, "access_token": "t", "api_base_url": BC_API},
        "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]})
    assert response.status_code == 422
    assert "ORDERHOOKS_PUBLIC_BASE_URL is not set" in response.get_json()["message"]
    assert len(api.calls) == 0 and admin.get("/channels") == []
    # one that needs none is fine
    admin.post("/channels", {"type": "bigcommerce", "name": "quiet", "credentials": {
        "store_hash": STORE, "access_token": "t", "api_base_url": BC_API}}, expect=201)
    assert len(api.calls) == 0


def test_the_public_url_has_no_default():
    from core.config import from_env
    assert from_env({})["PUBLIC_BASE_URL"] == ""
    assert from_env({"ORDERHOOKS_ADMIN_TOKEN": ADMIN_TOKEN})["ALLOWED_API_BASE_URLS"] == ""


# -- channel order ids in API paths -------------------------------------------------------------


@pytest.mark.parametrize("order_id", ["../../v3/hooks?x=", "250/../../../v3/hooks", "-1",
                                      "1e3", "２５０", " 250", True, 1.5, "9" * 30])
def test_an_order_id_that_is_not_an_id_never_reaches_an_api_path(bc, admin, api, worker,
                                                                 order_id):
    bc.create()
    before = len(api.calls)
    response = bc.send(order_id=order_id)
    if response.status_code != 200:  # refused at the door: nothing stored, nothing called
        assert response.status_code == 400
    else:
        worker.run_until_idle()
        delivery = admin.get(f"/deliveries/{response.get_json()['delivery_id']}")
        assert delivery["outcome"] == "ignored"
        assert "no valid order id" in delivery["reason"]
    assert len(api.calls) == before


def test_path_segments_are_encoded():
    assert segment("../../v3/hooks?x=") == "..%2F..%2Fv3%2Fhooks%3Fx%3D"
    from plugins.bigcommerce.client import BigCommerceClient
    client = BigCommerceClient({"store_hash": STORE, "access_token": "t"})
    with pytest.raises(ValueError):
        client.order("../../v3/hooks")


def test_a_hook_id_from_the_channel_stays_one_path_segment(bc, api):
    from plugins.bigcommerce.client import BigCommerceClient
    api.add(responses.DELETE, f"{BC_STORE}/v3/hooks/..%2F..%2Fv2%2Forders%2F1", status=204)
    client = BigCommerceClient({"store_hash": STORE, "access_token": "t", "api_base_url": BC_API},
                               allowed=APIBaseURLs(BC_API))
    client.delete_hook("../../v2/orders/1")
    assert api.calls[-1].request.url == f"{BC_STORE}/v3/hooks/..%2F..%2Fv2%2Forders%2F1"
