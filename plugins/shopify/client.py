"""Shopify GraphQL Admin API client: webhook subscriptions and product reads, with Shopify's
throttling respected.

``POST {api_base_url}/admin/api/{api_version}/graphql.json`` with ``X-Shopify-Access-Token``.
Two kinds of "slow down" exist and both are handled the same way:

* HTTP 429, usually with ``Retry-After`` (seconds; not always present);
* HTTP 200 with a top-level ``errors`` entry whose ``extensions.code`` is ``THROTTLED``; how long
  to wait follows from ``extensions.cost``: (requested cost − currently available) / restore rate.

Short waits (≤ ``MAX_INLINE_WAIT`` seconds) are slept in-process and the call is retried; longer
ones raise :class:`core.errors.RetryLater`. After a successful answer, the next call to the same
shop waits until the bucket holds what that call asked for (``ShopPacer``): Shopify refuses a
query whose requested cost is more than the bucket holds, so a paginated read asks again only
when its next page can run.

Any other top-level ``errors`` entry or ``userErrors`` from a mutation raises
:class:`core.errors.SubscriptionError` (a product read raises :class:`core.errors.ChannelAPIError`
instead: its delivery is retried); 5xx, timeouts and unreadable answers raise
:class:`core.errors.ChannelAPIError`. Their messages are ours (the status, the fields Shopify
named): Shopify's own text goes to the log only, never into what our API shows.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from orderhooks import APIBaseURLs, ChannelAPIError, ChannelHTTP, RetryLater, SubscriptionError

log = logging.getLogger("orderhooks.shopify")

DEFAULT_API_VERSION = "2026-07"
#: Longest we sleep in-process for a rate limit; beyond it RetryLater is raised.
MAX_INLINE_WAIT = 5.0
#: How many times one call is retried after being throttled.
MAX_THROTTLED_RETRIES = 3
#: Retry-After was absent on a 429: wait this long.
DEFAULT_RETRY_AFTER = 2.0
PAGE_SIZE = 100
#: Variants asked for per page of a product read: the most a connection gives at once. A page
#: requests about 2 + 250 points, less than any plan's bucket holds.
VARIANT_PAGE_SIZE = 250
#: Longest a product read waits in-process before its next page (the first waits at most
#: MAX_INLINE_WAIT): a read given up half-way is read again from its first page later, paying
#: for its pages twice. A full page refills in about 5 s at the slowest restore rate (50 points/s).
MAX_PAGE_WAIT = 10.0
#: A bound on a product read's pages (2,048 variants are 9), not a limit anyone reaches.
MAX_VARIANT_PAGES = 100


def sleep(seconds: float) -> None:  # indirection so tests can observe waits without waiting
    time.sleep(seconds)


def api_base_url(credentials: dict) -> str:
    return (credentials.get("api_base_url") or own_api_base_url(credentials)).rstrip("/")


def own_api_base_url(credentials: dict) -> str:
    """The shop's own Admin API: https://<shop>.myshopify.com."""
    return f"https://{str(credentials['shop_domain']).lower()}"


def api_version(credentials: dict) -> str:
    return credentials.get("api_version") or DEFAULT_API_VERSION


class ShopPacer:
    """Per shop, when the cost bucket will have refilled enough for the next call."""

    #: Points we like to have available before calling (our calls cost ~10–20 points).
    WANTED = 50.0

    def __init__(self):
        self._lock = threading.Lock()
        self._blocked_until: dict[str, float] = {}

    def wait_time(self, shop: str) -> float:
        return max(0.0, self._blocked_until.get(shop, 0.0) - time.monotonic())

    def block(self, shop: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + max(0.0, seconds)
            self._blocked_until[shop] = max(until, self._blocked_until.get(shop, 0.0))

    def observe_cost(self, shop: str, cost: dict | None) -> None:
        """After an answer: the next call waits until the bucket holds what this one requested
        (a next page costs as much), and at least :attr:`WANTED` points."""
        cost = cost or {}
        status = cost.get("throttleStatus") or {}
        available, rate = _number(status.get("currentlyAvailable")), _number(
            status.get("restoreRate"))
        wanted = max(self.WANTED, _number(cost.get("requestedQueryCost")) or 0.0)
        if available is not None and rate and available < wanted:
            self.block(shop, (wanted - available) / rate)


PACER = ShopPacer()

LIST_QUERY = """
query OrderhooksWebhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    nodes { id topic uri format includeFields filter }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CREATE_MUTATION = """
mutation OrderhooksWebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!,
                                             $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""

DELETE_MUTATION = """
mutation OrderhooksWebhookSubscriptionDelete($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors { field message }
  }
}
"""


PRODUCT_QUERY = """
query OrderhooksProductVariants($id: ID!, $first: Int!, $after: String) {
  product(id: $id) {
    id title status updatedAt
    variants(first: $first, after: $after) {
      nodes { id sku title price position updatedAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


class ShopifyClient:
    def __init__(self, credentials: dict, timeout: float = 10.0, pacer: ShopPacer = PACER,
                 allowed: APIBaseURLs | None = None):
        self.shop = str(credentials["shop_domain"]).lower()
        self.version = api_version(credentials)
        self.path = f"/admin/api/{self.version}/graphql.json"
        self.http = ChannelHTTP("shopify", api_base_url(credentials),
                                {"X-Shopify-Access-Token": credentials["access_token"],
                                 "Content-Type": "application/json"}, timeout,
                                own=(own_api_base_url(credentials),), allowed=allowed)
        self.pacer = pacer

    # -- transport --------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, *,
                refused: type[Exception] = SubscriptionError,
                max_wait: float = MAX_INLINE_WAIT) -> dict:
        """Run one query; returns its ``data``. Throttling is waited out (up to ``max_wait``
        seconds at a time) or raises RetryLater; ``refused`` is raised when Shopify refuses the
        token or answers errors."""
        for attempt in range(MAX_THROTTLED_RETRIES + 1):
            wait = self.pacer.wait_time(self.shop)
            if wait > max_wait:
                raise RetryLater(f"Shopify shop {self.shop} is throttled", delay=wait)
            if wait:
                sleep(wait)
            response = self.http.request("POST", self.path,
                                         json={"query": query, "variables": variables or {}})
            if response.status_code == 429:
                self.pacer.block(self.shop, _retry_after(response))
                continue
            body = self._body(response, refused)
            extensions = body.get("extensions") or {}
            errors = body.get("errors") or []
            if not isinstance(errors, list):
                errors = [errors]
            if any(_is_throttled(e) for e in errors):
                self.pacer.block(self.shop, _cost_wait(extensions.get("cost")))
                continue
            self.pacer.observe_cost(self.shop, extensions.get("cost"))
            if errors:
                log.warning("shopify.graphql_errors", extra={"shop": self.shop,
                                                             "detail": _messages(errors)})
                raise refused("Shopify answered GraphQL errors (their text is in the "
                              "log: shopify.graphql_errors)")
            data = body.get("data")
            if not isinstance(data, dict):
                raise ChannelAPIError("Shopify GraphQL answered without data")
            return data
        raise RetryLater(f"Shopify shop {self.shop} kept throttling us",
                         delay=max(self.pacer.wait_time(self.shop), DEFAULT_RETRY_AFTER))

    def _body(self, response: requests.Response, refused: type[Exception]) -> dict:
        status = response.status_code
        if status in (401, 403):
            raise refused(f"Shopify refused the access token (HTTP {status})")
        if status == 404:
            raise refused(f"no Shopify Admin API at {self.path} (HTTP 404): "
                          "check shop_domain, api_base_url and api_version")
        if status >= 400:
            raise ChannelAPIError(f"Shopify GraphQL answered HTTP {status}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ChannelAPIError("Shopify GraphQL answered with invalid JSON") from exc
        if not isinstance(body, dict):
            raise ChannelAPIError("Shopify GraphQL answered with an unexpected document")
        return body

    # -- products ---------------------------------------------------------------------------

    def product(self, product_id: str) -> dict | None:
        """The product as Shopify holds it now: ``{id, title, status, updatedAt, variants}``
        with every variant (``{id, sku, title, price, position, updatedAt}``, read page by page),
        or None when Shopify has no such product (``product`` is null: deleted). Any failure
        raises ChannelAPIError (the delivery is retried), throttling RetryLater."""
        gid = f"gid://shopify/Product/{product_id}"
        variants: list[dict] = []
        after = None
        for page in range(MAX_VARIANT_PAGES):
            data = self.graphql(PRODUCT_QUERY, {"id": gid, "first": VARIANT_PAGE_SIZE,
                                                "after": after},
                                refused=ChannelAPIError,
                                max_wait=MAX_INLINE_WAIT if page == 0 else MAX_PAGE_WAIT)
            node = data.get("product")
            if node is None:
                return None
            if not isinstance(node, dict) or node.get("id") != gid:
                raise ChannelAPIError(f"Shopify answered product {product_id} with another "
                                      "object")
            connection = node.get("variants")
            if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
                raise ChannelAPIError(f"Shopify answered product {product_id} without its "
                                      "variants")
            # The product's own fields as the last page shows them: the newest read.
            found = {key: node.get(key) for key in ("id", "title", "status", "updatedAt")}
            variants.extend(v for v in connection["nodes"] if isinstance(v, dict))
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return {**found, "variants": variants}
            if not info.get("endCursor") or info.get("endCursor") == after:
                raise ChannelAPIError(f"Shopify's variants of product {product_id} have a next "
                                      "page but no new cursor")
            after = info["endCursor"]
        raise ChannelAPIError(f"Shopify kept paginating the variants of product {product_id}")

    # -- webhook subscriptions --------------------------------------------------------------

    def webhook_subscriptions(self) -> list[dict]:
        found: list[dict] = []
        after = None
        for _ in range(1000):  # a bound, not a limit anyone reaches
            data = self.graphql(LIST_QUERY, {"first": PAGE_SIZE, "after": after})
            connection = data.get("webhookSubscriptions") or {}
            nodes = connection.get("nodes")
            if nodes is None:  # edges form, should a version answer with it
                nodes = [e.get("node") for e in connection.get("edges") or ()]
            found.extend(n for n in nodes if isinstance(n, dict))
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return found
            after = page["endCursor"]
        raise ChannelAPIError("Shopify kept paginating webhook subscriptions")

    def create_webhook_subscription(self, topic: str, uri: str) -> dict:
        data = self.graphql(CREATE_MUTATION, {
            "topic": topic, "webhookSubscription": {"uri": uri, "format": "JSON"}})
        result = data.get("webhookSubscriptionCreate") or {}
        _check_user_errors(result, f"cannot subscribe to {topic}")
        created = result.get("webhookSubscription")
        if not isinstance(created, dict) or not created.get("id"):
            raise SubscriptionError(f"Shopify did not return the {topic} subscription it created")
        return created

    def delete_webhook_subscription(self, subscription_id: str) -> None:
        data = self.graphql(DELETE_MUTATION, {"id": subscription_id})
        result = data.get("webhookSubscriptionDelete") or {}
        errors = result.get("userErrors") or []
        if errors and all(_is_gone(e) for e in errors):
            return  # already gone: deleting is idempotent
        _check_user_errors(result, f"cannot delete subscription {subscription_id}")


def _check_user_errors(result: dict, what: str) -> None:
    errors = result.get("userErrors") or []
    if errors:
        log.warning("shopify.user_errors", extra={"detail": f"{what}: {_messages(errors)}"})
        raise SubscriptionError(f"{what}: Shopify refused it (its userErrors are in the log: "
                                "shopify.user_errors)")


def _messages(errors: list) -> str:
    parts = []
    for error in errors:
        if isinstance(error, dict):
            field = error.get("field")
            message = str(error.get("message") or error)
            parts.append(f"{'.'.join(map(str, field))}: {message}" if field else message)
        else:
            parts.append(str(error))
    return "; ".join(parts)[:1000]


def _is_throttled(error) -> bool:
    if not isinstance(error, dict):
        return False
    code = ((error.get("extensions") or {}).get("code") or "")
    return str(code).upper() == "THROTTLED" or str(error.get("message", "")).lower() == "throttled"


def _is_gone(error) -> bool:
    message = str(error.get("message", "") if isinstance(error, dict) else error).lower()
    return "not exist" in message or "not found" in message


def _cost_wait(cost: dict | None) -> float:
    """Seconds until the bucket holds the requested cost again (≥ 1 s when unknown)."""
    cost = cost or {}
    status = cost.get("throttleStatus") or {}
    requested = _number(cost.get("requestedQueryCost"))
    available = _number(status.get("currentlyAvailable"))
    rate = _number(status.get("restoreRate"))
    if requested is None or available is None or not rate:
        return 1.0
    return max(0.5, (requested - available) / rate)


def _retry_after(response: requests.Response) -> float:
    """A 429's wait: ``Retry-After`` seconds, else the GraphQL cost in its body, else a default."""
    value = _number(response.headers.get("Retry-After"))
    if value is not None and value >= 0:
        return value
    try:
        cost = (response.json().get("extensions") or {}).get("cost")
    except (ValueError, AttributeError):
        cost = None
    return _cost_wait(cost) if cost else DEFAULT_RETRY_AFTER


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
