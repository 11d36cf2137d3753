"""Shopify: full-payload deliveries signed with the app's client secret.

Every delivery carries the whole object, so most translations make no API call. The Admin API
(:mod:`plugins.shopify.client`) is read only where the body cannot say: a refund's order (POS or
e-commerce), the app's uninstall (the token refused), an order imported on demand, and a product
whose ``variants`` are only some of those ``variant_gids`` names (read whole with GraphQL). The
webhook subscriptions are managed with GraphQL too.

Topic rule (documented in docs/shopify.md):

* ``orders/create`` → CreateOrder from the full payload (:func:`import_intents`), when the
  channel's webhooks include order creation; a test order only when the channel imports them;
  a cancelled order is imported and then cancelled.
* ``orders/paid`` → RecordPayment for a paid ``financial_status``, after a CreateOrder from the
  same payload when the channel imports orders (Shopify may send it before ``orders/create``).
* ``orders/cancelled`` → Cancel, with Shopify's ``cancel_reason``.
* ``fulfillments/create`` and ``fulfillments/update`` → the fulfillment's parcel is recorded on the
  order (Fulfill ``complete=False``: the status is kept) — only when the fulfillment actually
  shipped, i.e. its ``status`` is ``success``. ``pending`` and ``open`` have not shipped yet,
  ``cancelled``, ``error`` and ``failure`` never will: those are ignored with the status named. A
  single fulfillment cannot say whether the whole order has shipped (its payload lists only its
  own lines), so the order moves to SHIPPED on ``orders/fulfilled``, which is always subscribed
  together with the fulfillment topics.
* ``orders/fulfilled`` → Fulfill (``complete=True``: SHIPPED) with the order's shipped
  fulfillments.
* ``orders/partially_fulfilled`` → Fulfill ``complete=False``: the shipped fulfillments are
  recorded and the order keeps its status (ignored when no fulfillment in it has shipped).
* ``app/uninstalled`` → DeactivateChannel, once Shopify confirms it: the channel's access token
  must be refused (``GET /admin/api/<version>/shop.json`` answers 401). A token that still works
  means the app is installed: ignored, with the reason.
* ``customers/data_request`` → ignored (the request is stored and visible in the inbox);
  ``customers/redact`` → RedactPersonalData for that customer and ``orders_to_redact``;
  ``shop/redact`` → RedactPersonalData of everything, on an inactive channel or once Shopify
  refuses the access token (a genuine one comes 48 h after an uninstall). These three and
  ``app/uninstalled`` are accepted even once the channel is inactive.
* ``products/create`` and ``products/update`` → UpsertProduct: the body is the product (its
  ``updated_at`` decides against what the catalog holds). When its ``variants`` are fewer than
  its ``variant_gids`` (a product may have 2,048 variants), the product is read with GraphQL,
  every page of its variants, and the current state read is applied (once per product per
  batch); a product Shopify no longer has is applied as delivered (its missing variants kept),
  with the reason recorded; ``products/delete`` → DeleteProduct (the
  body is only the id; the time is ``X-Shopify-Triggered-At``, else when it was received).
* Any other topic → ignored, with the topic named.

Only the body is signed: a body must look like its topic and name the channel's shop wherever it
names one (:mod:`plugins.shopify.payloads`), or the intake refuses it (400); the worker checks
again and ignores what does not fit. The de-duplication key is the SHA-256 of topic and raw body,
not the (unsigned) webhook id: a captured body re-sent under a new webhook id is a duplicate.

Every Cancel and Fulfill carries ``occurred_at`` (``X-Shopify-Triggered-At``, else the payload's
``updated_at``): the core keeps a per-order high-water mark, so a late retry of an older event
never overrides a newer one.

This module is the adapter: the intake's checks, the topic dispatch, the Admin API reads a
translation needs, and the webhook subscriptions. The flow is topics → values → payloads (shapes)
→ orders / products / privacy (bodies as intents) → plugin.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlparse

import xxhash
from marshmallow import Schema, fields, post_load, validate

from orderhooks import (AuthenticationError, Channel, ChannelAdapter, ChannelAPIError,
                        DeactivateChannel, DeleteProduct, Delivery, DeliveryInfo, Ignore,
                        InvalidDelivery, RemoteSubscription, RetryLater, SubscriptionSpec,
                        hookimpl, segment)

from . import client as api
from .client import ShopifyClient, ShopPacer
from .orders import (_fulfillment_intent, _order_fulfillment_intent, _payment_intents,
                     cancel_intent, import_intents, refund_intent)
from .payloads import (SHAPE_FIELDS, WHOLE_BODY_TOPICS, _order_id, _order_problem,
                       shape_problem)
from .privacy import _privacy_intent
from .products import product_from_api, product_intent
from .topics import (API_VERSION_HEADER, APP_UNINSTALLED, EVENT_ID_HEADER, FULFILLMENT_TOPICS,
                     HMAC_HEADER, LIFECYCLE_TOPICS, ORDERS_CANCELLED, ORDERS_CREATE,
                     ORDERS_FULFILLED, ORDERS_PAID, ORDERS_PARTIALLY_FULFILLED, PRIVACY_TOPICS,
                     PRODUCT_TOPICS, PRODUCTS_DELETE, REFUNDS_CREATE, SHOP_HEADER, SHOP_REDACT,
                     TOPIC_HEADER, TRIGGERED_AT_HEADER, WEBHOOK_ID_HEADER)
from .values import _id, _list, _shopify_id, parse_time

#: GraphQL ``WebhookSubscriptionTopic`` values: the names used for SubscriptionSpec.topic and
#: RemoteSubscription.topic alike, so the core's reconcile matches them.
CANCELLATION_SUBSCRIPTIONS = ("ORDERS_CANCELLED",)
FULFILLMENT_SUBSCRIPTIONS = ("FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE", "ORDERS_FULFILLED",
                             "ORDERS_PARTIALLY_FULFILLED")
LIFECYCLE_SUBSCRIPTIONS = ("APP_UNINSTALLED",)
#: Each webhook a merchant may tick (core.webhooks names) and the topics that carry it. Both
#: refund webhooks are Shopify's one refunds/create (POS or online is told by the order's
#: source_name / location_id); a product edit is products/create and products/update.
WEBHOOK_TOPICS = {
    "order_creation": ("ORDERS_CREATE",),
    "order_payment": ("ORDERS_PAID",),
    "cancellation": CANCELLATION_SUBSCRIPTIONS,
    "fulfillment": FULFILLMENT_SUBSCRIPTIONS,
    "refund_pos": ("REFUNDS_CREATE",),
    "refund_ecommerce": ("REFUNDS_CREATE",),
    "product_update": ("PRODUCTS_CREATE", "PRODUCTS_UPDATE"),
    "product_deletion": ("PRODUCTS_DELETE",),
}
#: The webhooks translated today (and so subscribed).
TRANSLATED_WEBHOOKS = frozenset({"order_creation", "order_payment", "cancellation",
                                 "fulfillment", "product_update", "product_deletion",
                                 "refund_pos", "refund_ecommerce"})


class CredentialsSchema(Schema):
    shop_domain = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}\.myshopify\.com$",
        error="a Shopify shop domain looks like my-store.myshopify.com"))
    access_token = fields.String(required=True, validate=validate.Length(min=1, max=512))
    client_secret = fields.String(required=True, validate=validate.Length(min=1, max=512))
    #: The secret before a rotation: Shopify may keep signing with it for up to an hour.
    previous_client_secret = fields.String(allow_none=True,
                                           validate=validate.Length(min=1, max=512))
    #: Quarterly Admin API version, e.g. 2026-07 (default: client.DEFAULT_API_VERSION).
    api_version = fields.String(validate=validate.Regexp(
        r"^(\d{4}-(0[1-9]|1[0-2])|unstable)$", error="an API version looks like 2026-07"))
    #: Default: https://<shop_domain>. Point it at a stand-in or sandbox to test.
    api_base_url = fields.Url(require_tld=False, schemes={"http", "https"})

    @post_load
    def _normalise(self, data, **_kwargs):
        if data.get("shop_domain"):
            data["shop_domain"] = data["shop_domain"].lower()
        if "api_base_url" in data:
            data["api_base_url"] = data["api_base_url"].rstrip("/")
        return data


class ShopifyAdapter(ChannelAdapter):
    type = "shopify"
    title = "Shopify"
    credentials_schema = CredentialsSchema
    #: Both spellings of each (the hmac is not worth keeping).
    stored_headers = (*TOPIC_HEADER, *SHOP_HEADER, *API_VERSION_HEADER, *WEBHOOK_ID_HEADER,
                      *EVENT_ID_HEADER, *TRIGGERED_AT_HEADER)
    destination_credentials = ("api_base_url", "shop_domain")
    sent_credentials = ("access_token",)
    webhook_topics = WEBHOOK_TOPICS
    translated_webhooks = TRANSLATED_WEBHOOKS
    lifecycle_topics = LIFECYCLE_SUBSCRIPTIONS

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.pacer = ShopPacer()

    def client(self, channel: Channel) -> ShopifyClient:
        return ShopifyClient(dict(channel.credentials), timeout=self.timeout, pacer=self.pacer,
                             allowed=self.allowed_api_base_urls)

    def api_base_url(self, credentials) -> str:
        return api.api_base_url(credentials)

    def own_api_base_urls(self, credentials) -> tuple[str, ...]:
        return (api.own_api_base_url(credentials),)

    # -- intake -----------------------------------------------------------------------------

    def check_destination(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"Shopify delivers only to https URLs, not to {url}")

    def authenticate(self, delivery: Delivery, channel: Channel) -> None:
        given = delivery.headers.first(*HMAC_HEADER)
        if not given:
            raise AuthenticationError("missing X-Shopify-Hmac-Sha256 header")
        secrets = [s for s in (channel.credentials.get("client_secret"),
                               channel.credentials.get("previous_client_secret")) if s]
        given_bytes = given.strip().encode("utf-8", "replace")
        matched = False
        for secret in secrets:  # every secret is tried: no early exit to time
            expected = base64.b64encode(hmac.new(secret.encode(), delivery.body,
                                                 hashlib.sha256).digest())
            matched |= hmac.compare_digest(expected, given_bytes)
        if not matched:
            raise AuthenticationError("X-Shopify-Hmac-Sha256 does not match the raw body")
        # The HMAC does not cover the header, and one app secret may sign for several shops:
        # a delivery must name this channel's shop.
        shop = (delivery.headers.first(*SHOP_HEADER) or "").strip().lower()
        expected_shop = _shop(channel)
        if not shop:
            raise AuthenticationError("missing X-Shopify-Shop-Domain header: a delivery must "
                                      f"name the channel's shop {expected_shop}")
        if shop != expected_shop:
            raise AuthenticationError(f"the delivery is for shop {shop}, not for this channel's "
                                      f"shop {expected_shop}")

    def accepts_when_inactive(self, delivery: Delivery, channel: Channel) -> bool:
        return _topic(delivery) in LIFECYCLE_TOPICS

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        topic = _topic(delivery)
        if not topic:
            raise InvalidDelivery("missing X-Shopify-Topic header")
        # An order or fulfillment: only the few top-level fields inspect needs (a full order
        # payload is read by the worker). Lifecycle and privacy bodies are small: whole.
        payload = (delivery.json_object(*SHAPE_FIELDS) if topic not in WHOLE_BODY_TOPICS
                   else delivery.json_object())
        problem = shape_problem(topic, payload, _shop(channel))
        if problem:
            raise InvalidDelivery(problem)
        order_id = _order_id(topic, payload)
        key = dedupe_key(topic, delivery.body)
        return DeliveryInfo(key=key, topic=topic, channel_order_id=order_id,
                            occurred_at=occurred_at(delivery, payload))

    # -- worker -----------------------------------------------------------------------------

    def translate_many(self, deliveries: list[Delivery], channel: Channel) -> list:
        """Each delivery translated in turn; a product read from the API is read once for the
        batch, however many of its deliveries need it (a read failure fails each of them)."""
        reads: dict[str, dict | None | Exception] = {}
        results: list = []
        for delivery in deliveries:
            try:
                results.append(list(self.translate(delivery, channel, reads)))
            except Exception as exc:  # noqa: BLE001 — handed to the worker, per delivery
                results.append(exc)
        return results

    def translate(self, delivery: Delivery, channel: Channel, reads: dict | None = None):
        """The intents of one delivery. ``reads``: products already read from the API in this
        batch, by product id (the answer, or the exception the read raised)."""
        topic = _topic(delivery)
        payload = delivery.json_object()
        # Checked again here: a delivery stored before these checks, or replayed, is held to
        # the same rule as a new one.
        problem = shape_problem(topic, payload, _shop(channel))
        if problem:
            return [Ignore(f"not carried out: {problem}")]
        when = occurred_at(delivery, payload)
        if topic == ORDERS_CREATE:
            if not channel.uses("order_creation"):
                return [Ignore(f"{topic}: order creation is off for this channel (its "
                               "webhooks do not include order_creation)")]
            return import_intents(payload, channel, when)
        if topic == ORDERS_PAID:
            return _payment_intents(payload, channel, when)
        if topic == ORDERS_CANCELLED:
            return [cancel_intent(payload, when)]
        if topic in FULFILLMENT_TOPICS:
            return [_fulfillment_intent(topic, payload, when)]
        if topic in (ORDERS_FULFILLED, ORDERS_PARTIALLY_FULFILLED):
            return [_order_fulfillment_intent(topic, payload, when)]
        if topic == REFUNDS_CREATE:
            return [self._refund_intent(payload, channel, when)]
        if topic == APP_UNINSTALLED:
            return [self._uninstall_intent(channel)]
        if topic == SHOP_REDACT and channel.active:
            # An inactive channel is one whose uninstall was confirmed (or that its operator
            # stopped); an active one must first be confirmed uninstalled.
            still_installed = self._still_installed(topic, channel)
            if still_installed is not None:
                return [still_installed]
        if topic in PRIVACY_TOPICS:
            return [_privacy_intent(topic, payload, channel)]
        if topic in PRODUCT_TOPICS:
            return self._product_intents(payload, channel, when, {} if reads is None else reads)
        if topic == PRODUCTS_DELETE:
            return [DeleteProduct(_shopify_id(payload.get("id"), "Product"), occurred_at=when)]
        return [Ignore(f"Shopify topic {topic or '(none)'} does not concern cancellations or "
                       "fulfilments")]

    def read_order(self, channel: Channel, channel_order_id: str):
        """The order from the REST Admin API (``GET /admin/api/<version>/orders/<id>.json``),
        as :func:`import_intents` reads a delivered one; an Ignore when Shopify does not know
        it (404: only the last 60 days' orders are readable without read_all_orders)."""
        if _shopify_id(channel_order_id, "Order") is None:
            return Ignore(f"order {channel_order_id!r} is not a Shopify order id")
        path, order = self._get_order(channel, channel_order_id)
        if order is None:
            return Ignore(f"order {channel_order_id} could not be imported: GET {path} answered "
                          "404 (Shopify does not know it, or it is older than 60 days)")
        if _order_problem(order):
            raise ChannelAPIError(f"GET {path} answered with no readable order")
        intents = import_intents(order, channel, None, with_cancel=False)
        return intents[0]

    def _get_order(self, channel: Channel, order_id: str, query: str = ""):
        """``(path, order)`` from ``GET /admin/api/<version>/orders/<id>.json``; the order is
        None when Shopify answers 404. A throttled read raises RetryLater, any other failure
        ChannelAPIError."""
        client = self.client(channel)
        path = f"/admin/api/{client.version}/orders/{segment(order_id)}.json{query}"
        response = client.http.request("GET", path)
        status = response.status_code
        if status == 404:
            return path, None
        if status == 429:
            raise RetryLater(f"Shopify shop {_shop(channel)} is throttling GET {path}",
                             delay=_seconds(response.headers.get("Retry-After"), 2.0))
        if not 200 <= status < 300:
            raise ChannelAPIError(f"GET {path} answered HTTP {status}")
        try:
            order = response.json().get("order")
        except (ValueError, AttributeError):
            order = None
        if not isinstance(order, dict):
            raise ChannelAPIError(f"GET {path} answered with no readable order")
        return path, order

    def _refund_intent(self, refund: dict, channel: Channel, when: datetime | None):
        """A refunds/create: a RecordRefund when the channel ticked the refund webhook of its
        kind (POS or e-commerce, told by the order's source), else an Ignore saying why."""
        order_id, refund_id = _id(refund.get("order_id")), _id(refund.get("id"))
        pos, ecommerce = channel.uses("refund_pos"), channel.uses("refund_ecommerce")
        if not (pos or ecommerce):
            return Ignore(f"{REFUNDS_CREATE}: refund {refund_id} of order {order_id}: neither "
                          "refund webhook (refund_pos, refund_ecommerce) is ticked")
        if not (pos and ecommerce):
            kind = self._refund_kind(refund, channel, order_id)
            if isinstance(kind, Ignore):
                return kind
            if (kind == "pos") != pos:
                wanted = "refund_pos" if kind == "pos" else "refund_ecommerce"
                return Ignore(f"{REFUNDS_CREATE}: refund {refund_id} of order {order_id} is "
                              f"a {'POS' if kind == 'pos' else 'e-commerce'} refund, and "
                              f"{wanted} is not ticked for this channel")
        return refund_intent(refund, when)

    def _refund_kind(self, refund: dict, channel: Channel, order_id: str):
        """``"pos"`` or ``"ecommerce"``. The refund does not carry its order's source: a
        transaction made at a POS says so; otherwise the order is read (its ``source_name``
        "pos" or a ``location_id`` make it a POS order)."""
        for transaction in _list(refund.get("transactions")):
            if isinstance(transaction, dict) and transaction.get("source_name") == "pos":
                return "pos"
        path, order = self._get_order(channel, order_id, "?fields=id,source_name,location_id")
        if order is None:
            return Ignore(f"{REFUNDS_CREATE}: order {order_id} could not be read to tell a POS "
                          f"refund from an e-commerce one: GET {path} answered 404")
        if order.get("source_name") == "pos" or order.get("location_id") not in (None, ""):
            return "pos"
        return "ecommerce"

    def _product_intents(self, product: dict, channel: Channel, when: datetime | None,
                         reads: dict) -> list:
        """A products/create or products/update. A body whose ``variants`` are only some of
        the product's is completed by reading the product (every variant) with GraphQL: the
        state read is applied. A product Shopify no longer has (deleted since) is applied as
        delivered, its missing variants kept, with the reason. A read that fails raises: the
        delivery is retried (RetryLater when throttled, ChannelAPIError otherwise)."""
        delivered = product_intent(product, when)
        if delivered.variants_complete:
            return [delivered]
        product_id = delivered.product_id
        if product_id not in reads:
            try:
                reads[product_id] = self.client(channel).product(product_id)
            except Exception as exc:
                reads[product_id] = exc
                raise
        found = reads[product_id]
        if isinstance(found, Exception):
            raise found
        if found is None:
            return [delivered, Ignore(
                f"product {product_id}: the delivery lists {len(delivered.variants)} of its "
                "variants and the rest could not be read: Shopify has no such product any "
                "more (deleted since the delivery was sent), so the variants not listed are "
                "kept as they were")]
        return [product_from_api(product_id, found, delivered.updated_at)]

    def _uninstall_intent(self, channel: Channel):
        """Deactivate only once Shopify confirms the uninstall: its body (a shop object) and
        topic header could come from any captured shop delivery (``shop/update`` carries the
        same object), but Shopify revokes the access token before it sends app/uninstalled."""
        shop = _shop(channel)
        still_installed = self._still_installed(APP_UNINSTALLED, channel)
        if still_installed is not None:
            return still_installed
        return DeactivateChannel(f"the app was uninstalled from Shopify shop {shop} (confirmed: "
                                 "Shopify refuses the channel's access token)")

    def _still_installed(self, topic: str, channel: Channel) -> Ignore | None:
        """None when Shopify refuses the channel's access token (401: the app is uninstalled);
        an Ignore naming why when the token still works. Any other answer raises: RetryLater on
        429, ChannelAPIError otherwise (the delivery is retried, and ends dead with the reason).
        """
        client = self.client(channel)
        path = f"/admin/api/{client.version}/shop.json"
        response = client.http.request("GET", path)  # never follows a redirect
        status = response.status_code
        if status == 401:
            return None
        if 200 <= status < 300:
            return Ignore(f"{topic} not carried out: Shopify still accepts this "
                          f"channel's access token (GET {path} answered {status}), so the app "
                          f"is installed in {_shop(channel)}; Shopify revokes the token before "
                          "it sends app/uninstalled or shop/redact")
        if status == 429:
            raise RetryLater(f"Shopify shop {_shop(channel)} is throttling GET {path}",
                             delay=_seconds(response.headers.get("Retry-After"), 2.0))
        raise ChannelAPIError(f"cannot confirm with Shopify that the app is uninstalled: GET "
                              f"{path} answered {status} (only 401, the token refused, "
                              "confirms it)")

    # -- subscriptions ----------------------------------------------------------------------

    def list_subscriptions(self, channel: Channel) -> list[RemoteSubscription]:
        return [_remote(node) for node in self.client(channel).webhook_subscriptions()]

    def create_subscription(self, channel: Channel, spec: SubscriptionSpec) -> RemoteSubscription:
        return _remote(self.client(channel).create_webhook_subscription(spec.topic,
                                                                         spec.destination))

    def activate_subscription(self, channel: Channel,
                              remote: RemoteSubscription) -> RemoteSubscription:
        """Shopify subscriptions have no inactive state (failing ones are deleted): re-create.
        That is also the repair of a subscription with a mismatch (XML, some fields only, a
        filter): the new one is created as :meth:`create_subscription` creates them."""
        client = self.client(channel)
        client.delete_webhook_subscription(remote.remote_id)
        return _remote(client.create_webhook_subscription(remote.topic, remote.destination))

    def delete_subscription(self, channel: Channel, remote: RemoteSubscription) -> None:
        self.client(channel).delete_webhook_subscription(remote.remote_id)


def dedupe_key(topic: str, body: bytes) -> str:
    """XXH3-128 of topic and raw body. Shopify's retries repeat the body byte for byte (only the
    body is signed: the webhook id is a header anyone can change), and a new event has a new
    body, so the same body under the same topic is the same delivery. A fast 128-bit hash, not a
    cryptographic one, is enough here: only a body that passed the HMAC is keyed, so nobody
    without the app's secret can choose one to collide with another, and two of Shopify's own
    bodies collide by chance with a probability near 2^-128 per pair."""
    digest = xxhash.xxh3_128(topic.encode("utf-8", "replace") + b"\n")
    digest.update(body)
    return "xxh3:" + digest.hexdigest()


# -- helpers --------------------------------------------------------------------------------------


def _shop(channel: Channel) -> str:
    return str(channel.credentials.get("shop_domain") or "").lower()


def _seconds(value, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if 0 <= seconds < 3600 else default



def _topic(delivery: Delivery) -> str:
    return (delivery.headers.first(*TOPIC_HEADER) or "").strip().lower()


def occurred_at(delivery: Delivery, payload: dict) -> datetime | None:
    """When the event happened: X-Shopify-Triggered-At, else the payload's updated_at."""
    return parse_time(delivery.headers.first(*TRIGGERED_AT_HEADER)) or parse_time(
        payload.get("updated_at"))


def _remote(node: dict) -> RemoteSubscription:
    return RemoteSubscription(remote_id=str(node.get("id")), topic=str(node.get("topic") or ""),
                              destination=str(node.get("uri") or node.get("callbackUrl") or ""),
                              active=True, mismatch=_mismatch(node))


def _mismatch(node: dict) -> str | None:
    """What would make this subscription's deliveries useless although Shopify sends them. Its
    authentication is not a property of the subscription: Shopify signs every delivery with the
    app's client secret, and an access token lists only its own app's subscriptions. What a
    subscription does decide is the payload: JSON, whole, unfiltered (an order topic must carry
    the order)."""
    fmt = node.get("format")
    if fmt not in (None, "JSON"):
        return f"it delivers {str(fmt)[:10]}, not JSON: every delivery would be refused"
    if node.get("includeFields"):
        return "it delivers only some fields of each object: orders could not be read"
    if node.get("filter"):
        return "it has a filter: some events would never be delivered"
    return None


@hookimpl
def register_channels(register):
    register(ShopifyAdapter())
