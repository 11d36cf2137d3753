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
    waits for the window to reset instead of collecting a 429; and holds calls for chains of
    reads that must not be cut by the window running out (:meth:`reserve`).

    Per store it keeps the lowest ``X-Rate-Limit-Requests-Left`` answered in the current
    window (answers of concurrent calls arrive in any order), when that window resets, and the
    calls held and not yet answered. A call outside a hold waits when the window's calls left,
    less those held, are down to ``RESERVE``; a call of a hold waits only when even the held
    calls no longer fit (another app of the store spent them): so a chain that got its hold is
    not cut by the window, and the calls of others never eat into it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocked_until: dict[str, float] = {}
        #: store -> [lowest calls left seen, when the window resets, calls held]
        self._windows: dict[str, list] = {}

    def wait_time(self, store: str, held: bool = False) -> float:
        """How long a call must wait; ``held``: the call is one of a hold's."""
        now = time.monotonic()
        with self._lock:
            wait = self._blocked_until.get(store, 0.0) - now
            window = self._windows.get(store)
            if window and window[0] is not None and now < window[1]:
                spare = window[0] - window[2]
                if spare < 0 if held else spare <= RESERVE:
                    wait = max(wait, window[1] - now)
        return max(0.0, wait)

    def reserve(self, store: str, calls: int) -> float:
        """Hold ``calls`` calls of the store's window when they fit beside the calls already
        held and ``RESERVE`` (0.0: held); otherwise hold nothing and say how long until they
        may fit."""
        now = time.monotonic()
        with self._lock:
            wait = self._blocked_until.get(store, 0.0) - now
            window = self._windows.setdefault(store, [None, 0.0, 0])
            if window[0] is not None and now < window[1] and \
                    window[0] - window[2] - calls < RESERVE:
                wait = max(wait, window[1] - now)
            if wait <= 0:
                window[2] += calls
                return 0.0
            return wait

    def release(self, store: str, calls: int) -> None:
        """Give back held calls (answered, or no longer needed)."""
        with self._lock:
            window = self._windows.get(store)
            if window:
                window[2] = max(0, window[2] - calls)

    def observe(self, store: str, response: requests.Response) -> None:
        left = _number(response.headers.get("X-Rate-Limit-Requests-Left"))
        reset_ms = _number(response.headers.get("X-Rate-Limit-Time-Reset-Ms"))
        now = time.monotonic()
        with self._lock:
            if response.status_code == 429:
                seconds = (_number(response.headers.get("X-Retry-After"))
                           or (reset_ms or 0) / 1000 or 1.0)
                until = min(now + seconds, now + MAX_WINDOW)
                self._blocked_until[store] = max(until, self._blocked_until.get(store, 0.0))
            elif left is not None and reset_ms is not None:
                window = self._windows.setdefault(store, [None, 0.0, 0])
                if window[0] is None or now >= window[1]:  # a new window
                    window[0], window[1] = left, now + min(reset_ms / 1000, MAX_WINDOW)
                else:
                    window[0] = min(window[0], left)

    def reset(self) -> None:
        """Forget every store's window (tests; a restarted worker starts the same way)."""
        with self._lock:
            self._blocked_until.clear()
            self._windows.clear()


class Hold:
    """Calls held in one store's window for one chain of reads (:meth:`BigCommerceClient.
    reserve`): each answered call of the chain gives one back, ``release`` the rest."""

    def __init__(self, pacer: StorePacer, store: str, calls: int):
        self.pacer, self.store, self.calls = pacer, store, calls

    def spend(self) -> None:
        if self.calls > 0:
            self.calls -= 1
            self.pacer.release(self.store, 1)

    def release(self) -> None:
        calls, self.calls = self.calls, 0
        if calls:
            self.pacer.release(self.store, calls)

    def handed_on(self) -> "Hold":
        """The calls still held, as a hold of their own (this one keeps none): for a chain that
        goes on later (the worker's import of an order read while translating)."""
        rest, self.calls = Hold(self.pacer, self.store, self.calls), 0
        return rest

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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

    def reserve(self, calls: int) -> Hold:
        """Hold ``calls`` calls of the store's window for a chain of reads, before its first
        call: the chain then runs whole in the window, never paying a read again because the
        window ran out halfway. Waits out a short wait; raises RetryLater (no call made) for a
        long one."""
        for _ in range(3):
            wait = self.pacer.reserve(self.store_hash, calls)
            if not wait:
                return Hold(self.pacer, self.store_hash, calls)
            if wait > MAX_INLINE_WAIT:
                break
            time.sleep(wait)
        raise RetryLater(f"store {self.store_hash} has no room for {calls} calls in its "
                         "rate-limit window", delay=max(wait, 0.1))

    def call(self, method: str, path: str, *, ok=(200, 201, 204), hold: Hold | None = None,
             **kwargs) -> requests.Response:
        """One API call, paced per store (``hold``: one of the calls held for a chain). Waits
        out short rate-limit windows; raises RetryLater for long ones (the delivery is
        rescheduled, not failed) and ChannelAPIError otherwise."""
        held = hold is not None and hold.calls > 0
        for _ in range(4):
            wait = self.pacer.wait_time(self.store_hash, held=held)
            if wait > MAX_INLINE_WAIT:
                raise RetryLater(f"store {self.store_hash} is rate limited", delay=wait)
            if wait:
                time.sleep(wait)
            response = self.http.request(method, path, **kwargs)
            self.pacer.observe(self.store_hash, response)
            if held and response.status_code != 429:
                hold.spend()
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

    def order(self, order_id: str, hold: Hold | None = None) -> dict | None:
        return self.json("GET", f"/v2/orders/{_order_segment(order_id)}", hold=hold)

    def shipments(self, order_id: str) -> list[dict]:
        """The order's shipments; BigCommerce answers 204 with no body when there are none."""
        return self.json("GET", f"/v2/orders/{_order_segment(order_id)}/shipments",
                         params={"limit": 250}) or []

    def order_products(self, order_id: str, hold: Hold | None = None) -> list[dict]:
        """The order's lines, 250 a page (one call for all but the largest orders)."""
        found, page = [], 1
        while True:
            rows = self.json("GET", f"/v2/orders/{_order_segment(order_id)}/products",
                             params={"page": page, "limit": PAGE}, hold=hold) or []
            if not isinstance(rows, list):
                raise ChannelAPIError(f"GET /v2/orders/{order_id}/products answered with no "
                                      "list of products")
            found.extend(rows)
            if len(rows) < PAGE:
                return found
            page += 1

    def order_shipping_addresses(self, order_id: str, hold: Hold | None = None) -> list[dict]:
        rows = self.json("GET", f"/v2/orders/{_order_segment(order_id)}/shipping_addresses",
                         params={"limit": PAGE}, hold=hold) or []
        return rows if isinstance(rows, list) else []

    # -- catalog ----------------------------------------------------------------------------

    def product(self, product_id: str, hold: Hold | None = None) -> dict | None:
        """``GET /v3/catalog/products/{id}?include=variants``: the product with its variants
        (None: 404, the product does not exist)."""
        return self.json("GET", f"/v3/catalog/products/{_order_segment(product_id, 'product')}",
                         params={"include": "variants"}, decimals=True, hold=hold)

    def refunds(self, order_id: str, hold: Hold | None = None) -> list[dict] | None:
        """The order's refunds (``GET /v3/orders/{id}/payment_actions/refunds``, oldest
        first); None when BigCommerce does not know the order. Amounts are read as the JSON
        writes them (text), never through a float."""
        path = f"/v3/orders/{_order_segment(order_id)}/payment_actions/refunds"
        response = self.call("GET", path, hold=hold)
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
