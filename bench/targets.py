"""What the load generators send: one template per target, with the marker ``@N@`` replaced by a
unique string per request (run id, generator thread, counter), so every request is a distinct
delivery. wrk's Lua script and the Python generators use the same templates.

* ``bigcommerce``: the real ``store/order/statusUpdated`` payload; ``hash`` (BigCommerce's dedupe
  key) varies; auth by the ``X-Orderhooks-Secret`` header.
* ``shopify``: the real ``orders/cancelled`` payload (~15 kB) with the marker in its ``note``,
  signed per request (``X-Shopify-Hmac-Sha256`` over the rendered body): orderhooks dedupes
  Shopify deliveries on topic + body, so a body sent twice is a duplicate whatever its
  ``X-Shopify-Webhook-Id`` (which varies too). wrk's Lua cannot sign: such a template runs with
  the Python generators.
* ``m-bigcommerce`` / ``m-shopify``: the same bodies for baseline M, with its HMAC header;
  ``m-shopify`` is rendered and signed per request like ``shopify``, so the load generator does
  the same work for M as for the intake.
* ``h`` / ``h-shopify``: the same bodies to baseline H (nothing checked).

A channel's rows (H, M, intake) are all loaded by one generator (``Session.generator``), so a
ratio never compares runs loaded by different generators.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

MARK = "@N@"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SHOP_DOMAIN = "bench-shop.myshopify.com"
SHOPIFY_SECRET = "bench-shopify-client-secret"
M_SECRET = "bench-m-secret"


@dataclass
class Template:
    path: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    #: (header, secret): that header carries the HMAC-SHA256 of each rendered body, base64
    #: (Shopify's form) or with ``hex_signature`` hex (baseline M's).
    signed: tuple[str, str] | None = None
    hex_signature: bool = False

    def render(self, unique: str) -> tuple[str, dict[str, str], bytes]:
        headers = {k: v.replace(MARK, unique) for k, v in self.headers.items()}
        body = self.body.replace(MARK, unique).encode()
        if self.signed:
            name, secret = self.signed
            headers[name] = (_m_hmac(body, secret) if self.hex_signature
                             else _shopify_hmac(body, secret))
        return self.path, headers, body


def _shopify_hmac(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _m_hmac(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def bigcommerce_body(store_hash: str = "bench1", order_id: int = 250, new_status: int = 5,
                     scope: str = "store/order/statusUpdated", hash_: str = MARK,
                     created_at: int = 1561479335, previous_status: int = 11) -> dict:
    data = {"type": "order", "id": order_id}
    if scope == "store/order/statusUpdated":
        data["status"] = {"previous_status_id": previous_status, "new_status_id": new_status}
    if scope.startswith("store/shipment/"):
        data = {"type": "shipment", "id": order_id * 10, "orderId": order_id}
    if scope.startswith("store/product/"):  # ``order_id`` is then the product's id
        data = {"type": "product", "id": order_id}
    return {"scope": scope, "store_id": "1025646", "data": data, "hash": hash_,
            "created_at": created_at, "producer": f"stores/{store_hash}"}


def shopify_payload(order_id: int = 820982911946154508) -> dict:
    path = FIXTURES / "shopify" / "orders_cancelled.json"
    payload = json.loads(path.read_text())
    payload["id"] = order_id
    payload["admin_graphql_api_id"] = f"gid://shopify/Order/{order_id}"
    return payload


#: Intake bodies of ``orders/create`` (``template`` kinds, and ``m-`` + kind for baseline M):
#: the published sample (~15 kB) and the same order with 200 lines (~100 kB).
SHOPIFY_CREATE_LINES = {"shopify-create": None, "shopify-create-200": 200}


def shopify_create_payload(lines: int | None = None) -> dict:
    """The published ``orders/create`` sample; with ``lines``, its line items repeated (each
    with its own id) up to that many."""
    payload = json.loads((FIXTURES / "shopify" / "orders_create.json").read_text())
    if lines:
        items = payload["line_items"]
        payload["line_items"] = [{**items[i % len(items)], "id": 10 ** 12 + i}
                                 for i in range(lines)]
    return payload


def _shopify_kind(kind: str) -> tuple[dict, str]:
    """The payload and topic of a Shopify intake template kind."""
    if kind in SHOPIFY_CREATE_LINES:
        return shopify_create_payload(SHOPIFY_CREATE_LINES[kind]), "orders/create"
    return shopify_payload(), "orders/cancelled"


def shopify_headers(body: bytes, webhook_id: str, topic: str = "orders/cancelled",
                    secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": _shopify_hmac(body, secret), "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-API-Version": "2024-10",
            "X-Shopify-Triggered-At": "2024-01-01T00:00:00.000000Z",
            "X-Shopify-Event-Id": webhook_id}


def shopify_requests(order_ids, tag: str):
    """(headers, body) of a signed ``orders/cancelled`` delivery per order id, each with its
    own webhook id and ``note`` (``<tag>-<order id>``): Shopify deliveries are de-duplicated
    on their body, so another tag gives other deliveries for the same orders."""
    base = shopify_payload()
    for oid in order_ids:
        base["id"] = int(oid)
        base["admin_graphql_api_id"] = f"gid://shopify/Order/{oid}"
        base["note"] = f"{tag}-{oid}"
        body = json.dumps(base).encode()
        yield shopify_headers(body, f"{tag}-{oid}"), body


def _compact(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


def template(kind: str, *, channel_id: int | None = None, secret: str | None = None) -> Template:
    if kind in ("h", "h-shopify"):
        body = (_compact(bigcommerce_body(hash_="fixed")) if kind == "h"
                else _compact(shopify_payload()))
        return Template("/webhooks/h/1", body, {"Content-Type": "application/json"})
    if kind == "bigcommerce":
        return Template(f"/webhooks/bigcommerce/{channel_id}", _compact(bigcommerce_body()),
                        {"Content-Type": "application/json", "X-Orderhooks-Secret": secret})
    if kind == "shopify" or kind in SHOPIFY_CREATE_LINES:
        secret = secret or SHOPIFY_SECRET
        payload, topic = _shopify_kind(kind)
        body = _compact({**payload, "note": MARK})
        headers = shopify_headers(body.encode(), MARK, topic=topic, secret=secret)
        return Template(f"/webhooks/shopify/{channel_id}", body, headers,
                        signed=("X-Shopify-Hmac-Sha256", secret))
    if kind == "m-bigcommerce":
        body = _compact(bigcommerce_body(hash_="7ee67cd1cf2ca60bc1aa9e5fe957d2de373be4ca"))
        return Template("/webhooks/m/1", body, {"Content-Type": "application/json",
                                                "X-Bench-Signature": _m_hmac(body.encode(),
                                                                             M_SECRET)})
    if kind == "m-shopify" or kind.removeprefix("m-") in SHOPIFY_CREATE_LINES:
        payload, _ = _shopify_kind(kind.removeprefix("m-"))
        return Template("/webhooks/m/1", _compact({**payload, "note": MARK}),
                        {"Content-Type": "application/json"},
                        signed=("X-Bench-Signature", M_SECRET), hex_signature=True)
    raise ValueError(kind)
