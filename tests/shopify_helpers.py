"""Shopify test kit: a stand-in Admin API (``responses`` callbacks: GraphQL webhook subscriptions
and products, and ``shop.json``, which answers 401 once the app is uninstalled) and signed
deliveries.

Use the ``shopify`` fixture (import it into the test module)::

    from tests.shopify_helpers import shopify  # noqa: F401  (fixture)
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re

import pytest
import responses

from tests.conftest import load_fixture

SHOP = "orderhooks-test.myshopify.com"
API_VERSION = "2026-07"
TOKEN = "shpat_test_token"
SECRET = "shopify-client-secret"
OLD_SECRET = "shopify-previous-secret"
#: The published samples' order (a 64-bit id) and its customer.
ORDER_ID = 820982911946154508
CUSTOMER_ID = 115310627314723954
CUSTOMER_EMAIL = "john@example.com"

ALL_TOPICS = {"ORDERS_CANCELLED", "FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE",
              "ORDERS_FULFILLED", "ORDERS_PARTIALLY_FULFILLED", "APP_UNINSTALLED"}
FULFILMENT_TOPICS = {"FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE", "ORDERS_FULFILLED",
                     "ORDERS_PARTIALLY_FULFILLED", "APP_UNINSTALLED"}
CANCEL_TOPICS = {"ORDERS_CANCELLED", "APP_UNINSTALLED"}


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def cancelled_order(order_id=ORDER_ID, **changes) -> dict:
    """The published orders/cancelled sample (also Shopify's sample for every orders/* topic)."""
    sample = copy.deepcopy(load_fixture("shopify", "orders_cancelled.json"))
    sample["id"] = order_id
    sample["admin_graphql_api_id"] = f"gid://shopify/Order/{order_id}"
    sample.update(changes)
    return sample


def fulfilled_order(fulfillment_status="fulfilled", order_id=ORDER_ID, **changes) -> dict:
    """The published order sample as orders/fulfilled (or, with "partial",
    orders/partially_fulfilled) carries it: not cancelled, with that fulfillment_status."""
    return cancelled_order(order_id, cancelled_at=None, cancel_reason=None,
                           fulfillment_status=fulfillment_status, **changes)


def fulfillment(order_id=ORDER_ID, status="success", fulfillment_id=123456, **changes) -> dict:
    """The published fulfillments/create sample (its status is "pending": ``status`` sets it)."""
    sample = copy.deepcopy(load_fixture("shopify", "fulfillments_create.json"))
    sample.update({"order_id": order_id, "status": status, "id": fulfillment_id,
                   "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fulfillment_id}"})
    sample.update(changes)
    return sample


def customers_redact(customer_id=CUSTOMER_ID, email=CUSTOMER_EMAIL, orders=(ORDER_ID,),
                     shop=SHOP) -> dict:
    return {"shop_id": 954889, "shop_domain": shop,
            "customer": {"id": customer_id, "email": email, "phone": "555-625-1199"},
            "orders_to_redact": list(orders)}


def customers_data_request(customer_id=CUSTOMER_ID, orders=(ORDER_ID,), shop=SHOP) -> dict:
    return {"shop_id": 954889, "shop_domain": shop, "orders_requested": list(orders),
            "customer": {"id": customer_id, "email": CUSTOMER_EMAIL, "phone": "555-625-1199"},
            "data_request": {"id": 9999}}


def shop_redact(shop=SHOP) -> dict:
    return {"shop_id": 954889, "shop_domain": shop}


def app_uninstalled(shop=SHOP) -> dict:
    return {"id": 548380009, "name": "Super Toys", "email": "super@supertoys.com",
            "domain": None, "myshopify_domain": shop, "plan_name": "basic"}


def order_detail(admin, order) -> dict:
    return admin.get(f"/orders/{order['id']}")


def delivery(admin, response) -> dict:
    """The stored delivery an intake answer names."""
    return admin.get(f"/deliveries/{response.get_json()['delivery_id']}")


def deliveries(admin) -> list:
    return admin.get("/deliveries")


class ShopifyStandin:
    """A Shopify shop as far as orderhooks is concerned: the GraphQL Admin API's webhook
    subscriptions (stored in ``subscriptions``), and signed deliveries to our intake."""

    def __init__(self, app, client, api, make_channel, admin, base=f"https://{SHOP}",
                 version=API_VERSION):
        self.app, self.client, self.api = app, client, api
        self.make_channel, self.admin = make_channel, admin
        self.subscriptions: dict[str, dict] = {}
        self.ids = itertools.count(1001)
        self.page_size = 100
        #: Answers served before the normal behaviour, one per GraphQL call:
        #: (status, headers, body-dict) tuples.
        self.queued: list[tuple[int, dict, dict]] = []
        #: topic → userErrors returned by webhookSubscriptionCreate for it.
        self.create_errors: dict[str, list[dict]] = {}
        self.operations: list[str] = []
        #: What GraphQL ``product(id:)`` answers, by product id (digits): ``{title, status,
        #: updatedAt, variants: [variant nodes]}``; a product not here answers null (deleted).
        self.products: dict[str, dict] = {}
        #: The variables of each product query, in order.
        self.product_reads: list[dict] = []
        #: ``extensions.cost`` of product answers (None: the same as every other answer's).
        self.product_cost: dict | None = None
        self.channel = None
        self.token = TOKEN
        self.endpoint = f"{base}/admin/api/{version}/graphql.json"
        api.add_callback(responses.POST, self.endpoint, callback=self._graphql)
        #: False once the merchant uninstalled the app: Shopify then refuses the token.
        self.installed = True
        self.shop_endpoint = f"{base}/admin/api/{version}/shop.json"
        api.add_callback(responses.GET, self.shop_endpoint, callback=self._shop)
        self.webhook_ids = itertools.count(1)

    # GraphQL stand-in ---------------------------------------------------------------------
    def graphql_calls(self):
        return [c for c in self.api.calls if c.request.url.endswith("/graphql.json")]

    def _refused(self, request):
        if not self.installed or request.headers.get("X-Shopify-Access-Token") != self.token:
            return 401, {}, json.dumps({"errors": "[API] Invalid API key or access token "
                                                  "(unrecognized login or wrong password)"})
        return None

    def shop_calls(self):
        return [c for c in self.api.calls if c.request.url.endswith("/shop.json")]

    def uninstall(self):
        """The merchant uninstalls the app: the token is revoked and subscriptions dropped."""
        self.installed = False
        self.subscriptions.clear()

    def _shop(self, request):
        return self._refused(request) or (200, {}, json.dumps({"shop": {
            "id": 548380009, "name": "Super Toys", "myshopify_domain": SHOP}}))

    def _graphql(self, request):
        refused = self._refused(request)
        if refused:
            return refused
        body = json.loads(request.body)
        query, variables = body["query"], body.get("variables") or {}
        operation = re.search(r"(webhookSubscriptionCreate|webhookSubscriptionDelete|"
                              r"webhookSubscriptions|product)\(", query).group(1)
        self.operations.append(operation)
        if self.queued:
            status, headers, answer = self.queued.pop(0)
            return status, headers, json.dumps(answer)
        data = getattr(self, "_" + operation)(variables)
        cost = {"requestedQueryCost": 10, "actualQueryCost": 10, "throttleStatus": {
            "maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}
        if operation == "product" and self.product_cost is not None:
            cost = self.product_cost
        return 200, {}, json.dumps({"data": data, "extensions": {"cost": cost}})

    def _webhookSubscriptions(self, variables):
        nodes = list(self.subscriptions.values())
        start = int(variables.get("after") or 0)
        size = min(int(variables["first"]), self.page_size)
        page = nodes[start:start + size]
        more = start + size < len(nodes)
        return {"webhookSubscriptions": {"nodes": page, "pageInfo": {
            "hasNextPage": more, "endCursor": str(start + size) if more else None}}}

    def _product(self, variables):
        """``product(id:) { id title status updatedAt variants(first:, after:) {...} }``, the
        cursor being the index of the page's first variant."""
        self.product_reads.append(dict(variables))
        product = self.products.get(variables["id"].rsplit("/", 1)[-1])
        if product is None:
            return {"product": None}
        start, size = int(variables.get("after") or 0), min(int(variables["first"]), 250)
        variants = product["variants"]
        more = start + size < len(variants)
        return {"product": {
            "id": variables["id"], "title": product["title"], "status": product["status"],
            "updatedAt": product["updatedAt"],
            "variants": {"nodes": variants[start:start + size], "pageInfo": {
                "hasNextPage": more, "endCursor": str(start + size) if more else None}}}}

    def _webhookSubscriptionCreate(self, variables):
        topic, uri = variables["topic"], variables["webhookSubscription"]["uri"]
        if topic in self.create_errors:
            return {"webhookSubscriptionCreate": {"webhookSubscription": None,
                                                  "userErrors": self.create_errors[topic]}}
        node = self.add_subscription(topic, uri)
        return {"webhookSubscriptionCreate": {"webhookSubscription": node, "userErrors": []}}

    def _webhookSubscriptionDelete(self, variables):
        if self.subscriptions.pop(variables["id"], None) is None:
            return {"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": None,
                                                  "userErrors": [{
                                                      "field": ["id"],
                                                      "message": "Webhook subscription does "
                                                                 "not exist"}]}}
        return {"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": variables["id"],
                                              "userErrors": []}}

    def add_subscription(self, topic, uri) -> dict:
        node_id = f"gid://shopify/WebhookSubscription/{next(self.ids)}"
        node = {"id": node_id, "topic": topic, "uri": uri}
        self.subscriptions[node_id] = node
        return node

    def drop(self, topic):
        """Shopify deletes a subscription (e.g. after 8 failed deliveries)."""
        for node_id, node in list(self.subscriptions.items()):
            if node["topic"] == topic:
                del self.subscriptions[node_id]

    def topics(self, uri=None) -> set[str]:
        return {n["topic"] for n in self.subscriptions.values() if uri is None or n["uri"] == uri}

    def throttled(self, requested=10, available=0.0, rate=50.0) -> tuple[int, dict, dict]:
        return 200, {}, {"errors": [{"message": "Throttled", "extensions": {
            "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                    "throttleStatus": {"maximumAvailable": 1000.0,
                                                       "currentlyAvailable": available,
                                                       "restoreRate": rate}}}}

    # channel ------------------------------------------------------------------------------
    def create(self, cancel=("AWAITING_SHIPMENT",), fulfill=("AWAITING_SHIPMENT",), expect=201,
               **creds):
        credentials = {"shop_domain": SHOP, "access_token": TOKEN, "client_secret": SECRET,
                       **creds}
        self.channel = self.make_channel("shopify", credentials, cancel=cancel, fulfill=fulfill,
                                         expect=expect)
        return self.channel

    @property
    def url(self):
        return f"/webhooks/shopify/{self.channel['id']}"

    @property
    def webhook_url(self):
        return self.channel["webhook_url"]

    def check(self):
        """POST /channels/<id>/subscriptions: check and repair now."""
        return self.admin.post(f"/channels/{self.channel['id']}/subscriptions", expect=200)

    # deliveries ---------------------------------------------------------------------------
    def headers(self, topic, body: bytes, *, secret=SECRET, webhook_id=None, triggered_at=None,
                prefix="X-", shop=SHOP, event_id=None):
        headers = {"Content-Type": "application/json",
                   f"{prefix}Shopify-Topic": topic,
                   f"{prefix}Shopify-Hmac-Sha256": sign(body, secret),
                   f"{prefix}Shopify-Shop-Domain": shop,
                   f"{prefix}Shopify-API-Version": API_VERSION,
                   f"{prefix}Shopify-Webhook-Id": webhook_id or f"wh-{next(self.webhook_ids)}",
                   f"{prefix}Shopify-Event-Id": event_id or "ev-1"}
        if triggered_at:
            headers[f"{prefix}Shopify-Triggered-At"] = triggered_at
        return {k: v for k, v in headers.items() if v is not None}

    def send(self, topic, payload=None, *, body=None, headers=None, channel_id=None,
             drop=(), **header_kw):
        """Deliver ``payload`` (or raw ``body``) signed like Shopify; ``drop`` removes headers,
        ``headers`` adds or replaces some."""
        if body is None:
            body = json.dumps(payload).encode()
        hdrs = self.headers(topic, body, **header_kw)
        hdrs.update(headers or {})
        for name in drop:
            hdrs = {k: v for k, v in hdrs.items() if k.lower() != name.lower()}
        target = f"/webhooks/shopify/{channel_id}" if channel_id else self.url
        return self.client.post(target, data=body, headers=hdrs)


@pytest.fixture
def shopify(app, client, api, make_channel, admin, monkeypatch):
    """A Shopify shop stand-in; throttling waits are recorded in ``shopify.slept``, not slept."""
    from plugins.shopify import client as shopify_client
    standin = ShopifyStandin(app, client, api, make_channel, admin)
    standin.slept = []
    monkeypatch.setattr(shopify_client, "sleep", standin.slept.append)
    return standin
