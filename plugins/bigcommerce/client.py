"""BigCommerce REST client: ``X-Auth-Token``, per-store rate limits, 429 ``X-Retry-After``."""
from __future__ import annotations

import math
import threading
import time
from decimal import Decimal

import requests

from orderhooks import APIBaseURLs, ChannelAPIError, ChannelHTTP, RetryLater, segment

DEFAULT_API_BASE_URL = "https://api.bigcommerce.com"
#: Longest we sleep in-process for a rate limit; beyond it the delivery is rescheduled (and the
#: worker serves other stores meanwhile).
MAX_INLINE_WAIT = 1.0
#: Calls kept in reserve per window: calls may be in flight when we look (the adapter reads up
#: to ``BigCommerceAdapter.concurrency`` orders at once per worker, and other workers too).
RESERVE = 6
#: Longest rate-limit window a header is believed for (a garbled one must not park a store, or
#: overflow the delivery's next attempt time).
MAX_WINDOW = 3600.0


class StorePacer:
    """Remembers, per store, what BigCommerce's rate-limit headers said, so that the next call
    waits for the window to reset instead of collecting a 429."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocked_until: dict[str, float] = {}

    def wait_time(self, store: str) -> float:
        return max(0.0, self._blocked_until.get(store, 0.0) - time.monotonic())

    def observe(self, store: str, response: requests.Response) -> None:
        left = response.headers.get("X-Rate-Limit-Requests-Left")
        reset_ms = response.headers.get("X-Rate-Limit-Time-Reset-Ms")
        retry_after = response.headers.get("X-Retry-After")
        until = None
        if response.status_code == 429:
            seconds = _number(retry_after) or (_number(reset_ms) or 0) / 1000 or 1.0
            until = time.monotonic() + seconds
        elif left is not None and _number(left) is not None and _number(left) <= RESERVE and reset_ms:
            until = time.monotonic() + (_number(reset_ms) or 0) / 1000
        if until is not None:
            until = min(until, time.monotonic() + MAX_WINDOW)
            with self._lock:
                self._blocked_until[store] = max(until, self._blocked_until.get(store, 0.0))

    def reset(self) -> None:
        """Forget every store's window (tests; a restarted worker starts the same way)."""
        with self._lock:
            self._blocked_until.clear()


PACER = StorePacer()


def _number(value) -> float | None:
    """A header's number; None when absent, garbled, negative or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def api_base_url(credentials) -> str:
    return (credentials.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")


def is_order_id(value: str) -> bool:
    """BigCommerce order ids are integers (positive in practice; 0 is merely absent): digits
    only, so nothing else is ever put in a path."""
    return value.isascii() and value.isdigit() and len(value) <= 19


class BigCommerceClient:
    def __init__(self, credentials: dict, timeout: float = 10.0, pacer: StorePacer = PACER,
                 allowed: APIBaseURLs | None = None):
        self.store_hash = credentials["store_hash"]
        self.http = ChannelHTTP("bigcommerce", f"{api_base_url(credentials)}/stores/"
                                f"{segment(self.store_hash)}",
                                {"X-Auth-Token": credentials["access_token"],
                                 "Content-Type": "application/json"}, timeout,
                                own=(DEFAULT_API_BASE_URL,), allowed=allowed)
        self.pacer = pacer

    def call(self, method: str, path: str, *, ok=(200, 201, 204), **kwargs) -> requests.Response:
        """One API call, paced per store. Waits out short rate-limit windows; raises RetryLater
        for long ones (the delivery is rescheduled, not failed) and ChannelAPIError otherwise."""
        for _ in range(4):
            wait = self.pacer.wait_time(self.store_hash)
            if wait > MAX_INLINE_WAIT:
                raise RetryLater(f"store {self.store_hash} is rate limited", delay=wait)
            if wait:
                time.sleep(wait)
            response = self.http.request(method, path, **kwargs)
            self.pacer.observe(self.store_hash, response)
            if response.status_code == 429:
                continue
            if response.status_code in ok or response.status_code == 404:
                return response
            # The status and our reason only: the answer's body is the server's text.
            raise ChannelAPIError(f"{method} {path} answered HTTP {response.status_code}"
                                  + _REASONS.get(response.status_code, ""))
        raise RetryLater(f"store {self.store_hash} kept answering 429",
                         delay=max(self.pacer.wait_time(self.store_hash), 5.0))

    def json(self, method: str, path: str, *, decimals: bool = False, **kwargs):
        """The answer's JSON (None on 404); ``decimals``: its fractional numbers as Decimal,
        never through a float (catalog prices)."""
        response = self.call(method, path, **kwargs)
        if response.status_code == 404:
            return None
        if response.status_code == 204 or not response.content:
            return []
        try:
            return response.json(parse_float=Decimal) if decimals else response.json()
        except ValueError as exc:
            raise ChannelAPIError(f"{method} {path} answered with invalid JSON") from exc

    # -- orders -----------------------------------------------------------------------------

    def order(self, order_id: str) -> dict | None:
        return self.json("GET", f"/v2/orders/{_order_segment(order_id)}")

    def shipments(self, order_id: str) -> list[dict]:
        """The order's shipments; BigCommerce answers 204 with no body when there are none."""
        return self.json("GET", f"/v2/orders/{_order_segment(order_id)}/shipments",
                         params={"limit": 250}) or []

    def order_products(self, order_id: str) -> list[dict]:
        """The order's lines, 250 a page (one call for all but the largest orders)."""
        found, page = [], 1
        while True:
            rows = self.json("GET", f"/v2/orders/{_order_segment(order_id)}/products",
                             params={"page": page, "limit": PAGE}) or []
            if not isinstance(rows, list):
                raise ChannelAPIError(f"GET /v2/orders/{order_id}/products answered with no "
                                      "list of products")
            found.extend(rows)
            if len(rows) < PAGE:
                return found
            page += 1

    def order_shipping_addresses(self, order_id: str) -> list[dict]:
        rows = self.json("GET", f"/v2/orders/{_order_segment(order_id)}/shipping_addresses",
                         params={"limit": PAGE}) or []
        return rows if isinstance(rows, list) else []

    # -- catalog ----------------------------------------------------------------------------

    def product(self, product_id: str) -> dict | None:
        """``GET /v3/catalog/products/{id}?include=variants``: the product with its variants
        (None: 404, the product does not exist)."""
        return self.json("GET", f"/v3/catalog/products/{_order_segment(product_id, 'product')}",
                         params={"include": "variants"}, decimals=True)

    def refunds(self, order_id: str) -> list[dict] | None:
        """The order's refunds (``GET /v3/orders/{id}/payment_actions/refunds``, oldest
        first); None when BigCommerce does not know the order. Amounts are read as the JSON
        writes them (text), never through a float."""
        path = f"/v3/orders/{_order_segment(order_id)}/payment_actions/refunds"
        response = self.call("GET", path)
        if response.status_code == 404:
            return None
        try:
            data = response.json(parse_float=str) if response.content else {}
        except ValueError as exc:
            raise ChannelAPIError(f"GET {path} answered with invalid JSON") from exc
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ChannelAPIError(f"GET {path} answered with no list of refunds")
        return [row for row in rows if isinstance(row, dict)]

    # -- hooks ------------------------------------------------------------------------------

    def hooks(self) -> list[dict]:
        found, page = [], 1
        while True:
            data = self.json("GET", "/v3/hooks", params={"page": page, "limit": 250}) or {}
            rows = data.get("data", []) if isinstance(data, dict) else data
            found.extend(rows)
            pagination = (data.get("meta") or {}).get("pagination") if isinstance(data,
                                                                                  dict) else None
            if not pagination or page >= int(pagination.get("total_pages") or 1):
                return found
            page += 1

    def create_hook(self, body: dict) -> dict:
        data = self.json("POST", "/v3/hooks", json=body)
        return _unwrap(data)

    def update_hook(self, hook_id, body: dict) -> dict:
        return _unwrap(self.json("PUT", f"/v3/hooks/{segment(hook_id)}", json=body))

    def delete_hook(self, hook_id) -> None:
        self.call("DELETE", f"/v3/hooks/{segment(hook_id)}")


#: Items per page of the v2 order lists (BigCommerce's largest).
PAGE = 250

_REASONS = {401: " (the access token was refused)", 403: " (the access token lacks a scope)",
            422: " (the store refused the request)"}


def _order_segment(order_id: str, what: str = "order") -> str:
    if not is_order_id(str(order_id)):
        raise ValueError(f"a BigCommerce {what} id is a decimal integer")
    return str(order_id)


def _unwrap(data) -> dict:
    """Hooks answers are ``{data: {...}, meta}``; some docs show the bare object: accept both."""
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        return data["data"]
    if not isinstance(data, dict):
        raise ChannelAPIError("unexpected hooks answer")
    return data
