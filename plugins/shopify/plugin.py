"""Shopify: full-payload deliveries signed with the app's client secret.

Every delivery carries the whole object, so :meth:`ShopifyAdapter.translate` makes no API call;
the GraphQL Admin API is used only for webhook subscriptions (:mod:`plugins.shopify.client`).

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
  ``updated_at`` decides against what the catalog holds); ``products/delete`` → DeleteProduct (the
  body is only the id; the time is ``X-Shopify-Triggered-At``, else when it was received).
* Any other topic → ignored, with the topic named.

Only the body is signed; the topic and shop domain are headers anyone who captured a delivery can
change. So a body must look like its topic (:func:`shape_problem`: an order for an order topic, a
fulfillment for a fulfillment topic, a shop for ``app/uninstalled``, a redact request of the right
kind for a privacy topic, a product for a product topic and only ``{id}`` for ``products/delete``) and name the channel's shop wherever it names one, or the intake refuses
it (400); the worker checks again and ignores what does not fit. The de-duplication key is the
SHA-256 of topic and raw body, not the (unsigned) webhook id: a captured body re-sent under a new
webhook id is a duplicate.

Every Cancel and Fulfill carries ``occurred_at`` (``X-Shopify-Triggered-At``, else the payload's
``updated_at``): the core keeps a per-order high-water mark, so a late retry of an older event
never overrides a newer one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import urlparse

from marshmallow import Schema, fields, post_load, validate

from orderhooks import (Address, AuthenticationError, Cancel, Channel, ChannelAdapter,
                        ChannelAPIError, CreateOrder, Customer, DeactivateChannel, DeleteProduct,
                        Delivery, DeliveryInfo, Fulfill, Ignore, InvalidDelivery, OrderLine,
                        ProductVariant, RecordPayment, RecordRefund, RedactPersonalData,
                        RefundLine, REINSERT, RemoteSubscription, RetryLater, Shipment,
                        ShipmentItem, SubscriptionSpec, UpsertProduct, WRITE_OFF, hookimpl,
                        segment)

from . import client as api
from .client import ShopifyClient, ShopPacer

# -- headers (Shopify's names; newer "events" deliveries drop the X- prefix) --------------------


def _names(suffix: str) -> tuple[str, str]:
    return (f"x-shopify-{suffix}", f"shopify-{suffix}")


HMAC_HEADER = _names("hmac-sha256")
TOPIC_HEADER = _names("topic")
SHOP_HEADER = _names("shop-domain")
API_VERSION_HEADER = _names("api-version")
WEBHOOK_ID_HEADER = _names("webhook-id")
EVENT_ID_HEADER = _names("event-id")
TRIGGERED_AT_HEADER = _names("triggered-at")

# -- topics -----------------------------------------------------------------------------------

ORDERS_CREATE = "orders/create"
ORDERS_PAID = "orders/paid"
ORDERS_CANCELLED = "orders/cancelled"
FULFILLMENTS_CREATE = "fulfillments/create"
FULFILLMENTS_UPDATE = "fulfillments/update"
ORDERS_FULFILLED = "orders/fulfilled"
ORDERS_PARTIALLY_FULFILLED = "orders/partially_fulfilled"
APP_UNINSTALLED = "app/uninstalled"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"
PRODUCTS_CREATE = "products/create"
PRODUCTS_UPDATE = "products/update"
PRODUCTS_DELETE = "products/delete"
REFUNDS_CREATE = "refunds/create"

ORDER_TOPICS = (ORDERS_CREATE, ORDERS_PAID, ORDERS_CANCELLED, ORDERS_FULFILLED,
                ORDERS_PARTIALLY_FULFILLED)
FULFILLMENT_TOPICS = (FULFILLMENTS_CREATE, FULFILLMENTS_UPDATE)
PRIVACY_TOPICS = (CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT)
#: Topics whose body is the product.
PRODUCT_TOPICS = (PRODUCTS_CREATE, PRODUCTS_UPDATE)
#: Topics an inactive (e.g. uninstalled) channel still accepts and processes.
LIFECYCLE_TOPICS = (APP_UNINSTALLED, *PRIVACY_TOPICS)

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
#: A refund line's ``restock_type`` and the RMA action it implies: ``return`` and ``cancel``
#: put the items back on sale, ``no_restock`` does not; ``legacy_restock`` (the deprecated
#: top-level ``restock`` was used) "made the items available for sale again".
RESTOCK_ACTIONS = {"return": REINSERT, "cancel": REINSERT, "legacy_restock": REINSERT,
                   "no_restock": WRITE_OFF}

#: ``financial_status`` values of an order whose payment was captured (refunds come after a
#: payment). pending, authorized, partially_paid, voided and expired are not paid.
PAID_FINANCIAL_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})

# -- fulfilment statuses ------------------------------------------------------------------------

#: A fulfillment in this status has left the warehouse.
SHIPPED_STATUSES = frozenset({"success"})
#: Not shipped yet: a later fulfillments/update says when it does.
NOT_YET_SHIPPED_STATUSES = frozenset({"pending", "open"})
#: Will never ship.
FAILED_STATUSES = frozenset({"cancelled", "error", "failure"})
#: The order's ``fulfillment_status`` that shows each order fulfilment topic's event.
FULFILLMENT_STATUS_OF = {ORDERS_FULFILLED: "fulfilled", ORDERS_PARTIALLY_FULFILLED: "partial"}


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

    def translate(self, delivery: Delivery, channel: Channel):
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
            order_id = _order_id(topic, payload)
            if payload.get("cancelled_at") in (None, ""):
                return [Ignore(f"{topic}: order {order_id} has no cancelled_at, so the body is "
                               "not a cancelled order; nothing done")]
            return [Cancel(order_id, reason=_text(payload.get("cancel_reason")),
                           occurred_at=when)]
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
            return [product_intent(payload, when)]
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


# -- translating ----------------------------------------------------------------------------------


def import_intents(order: dict, channel: Channel, when: datetime | None, *,
                   with_cancel: bool = True) -> list:
    """An order payload (orders/create, or the REST order) as a CreateOrder — or an Ignore for
    a test order when the channel does not import them. A cancelled order is imported and then
    cancelled (a Cancel after it): the routed copy ends cancelled when its status allows."""
    order_id = _id(order.get("id"))
    if order.get("test") is True and not channel.import_test_orders:
        return [Ignore(f"order {order_id} is a Shopify test order; not imported (the channel's "
                       "import_test_orders is off)")]
    intents: list = [order_intent(order, when)]
    if with_cancel and order.get("cancelled_at") not in (None, ""):
        intents.append(Cancel(order_id, reason=_text(order.get("cancel_reason")),
                              occurred_at=when))
    return intents


def order_intent(order: dict, when: datetime | None) -> CreateOrder:
    """The generic order of a Shopify Order object. Ids are read exactly (64-bit integers from
    the raw JSON), money stays the strings Shopify sends."""
    financial = (_text(order.get("financial_status")) or "").lower()
    customer = order.get("customer") if isinstance(order.get("customer"), dict) else None
    email = _text(order.get("email")) or _text(order.get("contact_email"))
    buyer = None
    if customer or email:
        customer = customer or {}
        buyer = Customer(channel_customer_id=_id(customer.get("id")),
                         name=_full_name(customer), email=_text(customer.get("email")) or email,
                         phone=_text(customer.get("phone")) or _text(order.get("phone")))
    shipping = order.get("total_shipping_price_set")
    totals = {"total": order.get("total_price"), "subtotal": order.get("subtotal_price"),
              "tax": order.get("total_tax"), "discount": order.get("total_discounts"),
              "shipping": ((shipping.get("shop_money") or {}).get("amount")
                           if isinstance(shipping, dict) else None)}
    return CreateOrder(
        _id(order.get("id")),
        order_number=_text(order.get("name")) or _text(order.get("order_number")),
        placed_at=parse_time(order.get("processed_at")) or parse_time(order.get("created_at")),
        currency=_text(order.get("currency")),
        totals={k: _money(v) for k, v in totals.items() if v is not None},
        paid=financial in PAID_FINANCIAL_STATUSES, payment_status=financial or None,
        customer=buyer,
        shipping_address=_address(order.get("shipping_address")),
        billing_address=_address(order.get("billing_address")),
        lines=tuple(OrderLine(channel_line_id=_id(line.get("id")),
                              product_id=_id(line.get("product_id")),
                              variant_id=_id(line.get("variant_id")),
                              sku=_text(line.get("sku")),
                              name=_text(line.get("name")) or _text(line.get("title")),
                              quantity=max(0, _int(line.get("quantity"), 1)),
                              unit_price=_money(line.get("price")))
                    for line in _list(order.get("line_items")) if isinstance(line, dict)),
        occurred_at=when)


def _payment_intents(order: dict, channel: Channel, when: datetime | None) -> list:
    """orders/paid: the payment, after the order itself when the channel imports orders
    (Shopify may send orders/paid before orders/create: the order is then imported from this
    payload, and the orders/create that follows finds it)."""
    order_id = _id(order.get("id"))
    if not channel.uses("order_payment"):
        return [Ignore(f"{ORDERS_PAID}: order payment is off for this channel (its webhooks "
                       "do not include order_payment)")]
    financial = (_text(order.get("financial_status")) or "").lower()
    if financial not in PAID_FINANCIAL_STATUSES:
        return [Ignore(f"{ORDERS_PAID}: order {order_id} has financial_status "
                       f"{financial or 'null'}, not paid; nothing done")]
    intents: list = []
    if channel.uses("order_creation"):
        intents += [i for i in import_intents(order, channel, when, with_cancel=False)
                    if isinstance(i, CreateOrder)]
    intents.append(RecordPayment(order_id, amount=_money(order.get("total_price")),
                                 currency=_text(order.get("currency")), status=financial,
                                 occurred_at=when))
    return intents


def refund_intent(refund: dict, when: datetime | None):
    """A refund as a RecordRefund: its lines (the order line refunded, SKU, quantity, the
    shop-currency subtotal) with the action their ``restock_type`` implies."""
    lines = []
    for item in _list(refund.get("refund_line_items")):
        if not isinstance(item, dict):
            continue
        line_item = item.get("line_item") if isinstance(item.get("line_item"), dict) else {}
        amount = ((item.get("subtotal_set") or {}).get("shop_money") or {}).get("amount") \
            if isinstance(item.get("subtotal_set"), dict) else None
        if isinstance(amount, dict) or isinstance(amount, list):
            amount = None
        lines.append(RefundLine(
            channel_line_id=_id(item.get("line_item_id")) or _id(line_item.get("id")),
            sku=_text(line_item.get("sku")), quantity=_int(item.get("quantity"), -1),
            amount=_money(amount), action=RESTOCK_ACTIONS.get(item.get("restock_type"))))
    return RecordRefund(_id(refund.get("order_id")), _id(refund.get("id")), lines=tuple(lines),
                        note=_text(refund.get("note")),
                        occurred_at=parse_time(refund.get("created_at")) or when)


def _money(value):
    """Shopify's amounts are strings; an integer is exact too. Anything else is handed on as
    it is, and the intent refuses it (a float's digits are already rounded)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _full_name(person: dict) -> str | None:
    name = " ".join(n for n in (_text(person.get("first_name")),
                                _text(person.get("last_name"))) if n)
    return name or _text(person.get("name"))


def _address(data) -> Address | None:
    if not isinstance(data, dict) or not any(data.values()):
        return None
    return Address(name=_text(data.get("name")) or _full_name(data),
                   company=_text(data.get("company")), address1=_text(data.get("address1")),
                   address2=_text(data.get("address2")), city=_text(data.get("city")),
                   province=_text(data.get("province")), zip=_text(data.get("zip")),
                   country=_text(data.get("country")),
                   country_code=_text(data.get("country_code")),
                   phone=_text(data.get("phone")))


def _fulfillment_intent(topic: str, fulfillment: dict, when: datetime | None):
    order_id = _id(fulfillment.get("order_id"))
    name = f"fulfillment {_id(fulfillment.get('id')) or '(no id)'}"
    if order_id is None:
        return Ignore(f"{topic}: {name} names no order")
    status = str(fulfillment.get("status") or "").lower()
    if status not in SHIPPED_STATUSES:
        return Ignore(f"{topic}: {name} of order {order_id} is {_why_not_shipped(status)}")
    return Fulfill(order_id, shipments=(_shipment(fulfillment),), complete=False,
                   occurred_at=when)


def _order_fulfillment_intent(topic: str, order: dict, when: datetime | None):
    order_id = _id(order.get("id"))
    state = _text(order.get("fulfillment_status"))
    wanted = FULFILLMENT_STATUS_OF[topic]
    if (state or "").lower() != wanted:
        return Ignore(f"{topic}: order {order_id} has fulfillment_status {state or 'null'}, not "
                      f"{wanted}, so the body is not a {wanted} order; nothing done")
    fulfillments = [f for f in _list(order.get("fulfillments")) if isinstance(f, dict)]
    shipped = tuple(_shipment(f) for f in fulfillments
                    if str(f.get("status") or "").lower() in SHIPPED_STATUSES)
    if topic == ORDERS_FULFILLED:
        return Fulfill(order_id, shipments=shipped, complete=True, occurred_at=when)
    if not shipped:
        return Ignore(f"{topic}: order {order_id} lists no shipped fulfillment; nothing to record")
    return Fulfill(order_id, shipments=shipped, complete=False, occurred_at=when)


def _why_not_shipped(status: str) -> str:
    if status in NOT_YET_SHIPPED_STATUSES:
        return f"{status}, not shipped yet (only status success counts as shipped)"
    if status in FAILED_STATUSES:
        return f"{status}: it did not ship"
    return (f"in status {status!r}, not a shipped one (only status success counts as shipped)"
            if status else "without a status; not counted as shipped")


def _shipment(fulfillment: dict) -> Shipment:
    numbers = [n for n in map(_text, _list(fulfillment.get("tracking_numbers"))) if n]
    urls = [u for u in map(_text, _list(fulfillment.get("tracking_urls"))) if u]
    return Shipment(
        shipment_id=_id(fulfillment.get("id")),
        tracking_number=_text(fulfillment.get("tracking_number")) or (
            numbers[0] if numbers else None),
        carrier=_text(fulfillment.get("tracking_company")),
        tracking_url=_text(fulfillment.get("tracking_url")) or (urls[0] if urls else None),
        items=tuple(ShipmentItem(sku=_text(item.get("sku")), line_id=_id(item.get("id")),
                                 quantity=_int(item.get("quantity"), 1))
                    for item in _list(fulfillment.get("line_items")) if isinstance(item, dict)))


def _privacy_intent(topic: str, payload: dict, channel: Channel):
    """For a payload :func:`shape_problem` accepted (its shop is the channel's)."""
    customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
    if topic == CUSTOMERS_DATA_REQUEST:
        requested = ", ".join(o for o in map(_id, _list(payload.get("orders_requested")))
                              if o) or "none"
        return Ignore(f"customers/data_request for customer {_id(customer.get('id')) or '?'} "
                      f"recorded (this delivery; orders requested: {requested}); orderhooks "
                      "keeps only the deliveries and orders it was sent — answer the merchant "
                      "from them")
    if topic == CUSTOMERS_REDACT:
        customer_id = _id(customer.get("id"))
        email = _text(customer.get("email"))
        orders = tuple(o for o in map(_id, _list(payload.get("orders_to_redact"))) if o)
        if not (customer_id or email or orders):
            return Ignore("customers/redact names no customer and no order; nothing to redact")
        return RedactPersonalData(customer_ids=(customer_id,) if customer_id else (),
                                  emails=(email,) if email else (), channel_order_ids=orders)
    return RedactPersonalData(everything=True)


# -- products ---------------------------------------------------------------------------------------


#: The Shopify product statuses that count as active (``draft``, ``archived``, ``unlisted`` don't).
ACTIVE_PRODUCT_STATUSES = frozenset({"active"})


def product_intent(product: dict, when: datetime | None):
    """A products/create or products/update body (shape already checked) as UpsertProduct. The
    body's own times (signed, unlike the triggered-at header) order its states.
    Variants without a Shopify variant id are left out; when ``variant_gids`` names more
    variants than ``variants`` carries, the list is taken as partial (none is removed)."""
    variants, seen = [], 0
    for entry in _list(product.get("variants")):
        if not isinstance(entry, dict):
            continue
        seen += 1
        variant_id = _shopify_id(entry.get("id"), "ProductVariant")
        if variant_id is None:
            continue
        position = entry.get("position")
        variants.append(ProductVariant(
            variant_id, sku=_text(entry.get("sku")), title=_string(entry.get("title")),
            price=_price(entry.get("price")),
            position=position if isinstance(position, int) and not isinstance(position, bool)
            and abs(position) < 2 ** 31 else None))
    gids = product.get("variant_gids")
    status = _string(product.get("status"))
    return UpsertProduct(
        _shopify_id(product.get("id"), "Product"), title=_string(product.get("title")),
        status=status[:32] if status else None,
        active=status is None or status.lower() in ACTIVE_PRODUCT_STATUSES,
        variants=tuple(variants),
        variants_complete=not (isinstance(gids, list) and len(gids) > seen),
        updated_at=_product_time(product, gids) or when)


def _product_time(product: dict, gids) -> datetime | None:
    """When this state of the product was made: the latest of its ``updated_at`` and its
    variants' (``variant_gids``), since a variant's edit need not move the product's own."""
    moments = [parse_time(product.get("updated_at"))]
    if isinstance(gids, list):
        moments += [parse_time(g.get("updated_at")) for g in gids if isinstance(g, dict)]
    moments = [m for m in moments if m is not None]
    return max(moments) if moments else None


def _string(value) -> str | None:
    return value if isinstance(value, str) else None


def _price(value) -> str | None:
    """A price as decimal text ("19.99"); None when it is not one (a malformed variant keeps
    its place in the catalog, without a price)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    try:
        return text if len(text) <= 32 and Decimal(text).is_finite() else None
    except InvalidOperation:
        return None


# -- what each topic's body must look like --------------------------------------------------------

#: The top-level fields the intake reads of an order or fulfillment body: enough to tell the
#: kinds of Shopify objects apart and to name the order, not the whole 15 kB document.
SHAPE_FIELDS = ("id", "admin_graphql_api_id", "order_id", "order_number", "updated_at",
                "title")
#: Keys of a customer's privacy request; a shop/redact carries none of them.
CUSTOMER_REQUEST_KEYS = ("customer", "orders_to_redact", "orders_requested", "data_request")
#: Keys a shop object (app/uninstalled) never has: they belong to orders, fulfillments and
#: privacy requests.
NOT_IN_A_SHOP = ("order_id", "order_number", "line_items", "shop_id", "shop_domain", "customer")
#: Topics whose body the intake reads whole: small by nature (a shop, a privacy request, a
#: deleted product's id), and what they must not carry is anywhere in them.
WHOLE_BODY_TOPICS = (*LIFECYCLE_TOPICS, PRODUCTS_DELETE)

_EXPECTED = {
    "order": "an order (an id, its admin_graphql_api_id gid://shopify/Order/<id> or an "
             "order_number, and no order_id)",
    "fulfillment": "a fulfillment (an id, the order_id, admin_graphql_api_id "
                   "gid://shopify/Fulfillment/<id> when present, and no order_number)",
    "refund": "a refund (an id, the order_id, admin_graphql_api_id "
              "gid://shopify/Refund/<id> when present, and no order_number)",
    APP_UNINSTALLED: "a shop object (an id and myshopify_domain)",
    SHOP_REDACT: "{shop_id, shop_domain} and nothing about a customer",
    CUSTOMERS_REDACT: "{shop_id, shop_domain, customer, orders_to_redact}",
    CUSTOMERS_DATA_REQUEST: "{shop_id, shop_domain, customer, orders_requested, data_request}",
    "product": "a product (an id, its admin_graphql_api_id gid://shopify/Product/<id> when "
               "present, a title, and no order_id or order_number)",
    PRODUCTS_DELETE: "only {id}, the deleted product's id",
}


def shape_problem(topic: str, payload: dict, shop: str) -> str | None:
    """Why ``payload`` cannot be a ``topic`` delivery of shop ``shop``, or None when it can.

    Only the body is signed: a captured body re-sent under another topic header (an order as
    ``shop/redact``, a ``shop/update`` as ``app/uninstalled``) must not be acted on as that
    topic. Reads only :data:`SHAPE_FIELDS` of an order or fulfillment (what the intake parses);
    topics orderhooks does not act on are not checked."""
    if topic in ORDER_TOPICS:
        kind, why = "order", _order_problem(payload)
    elif topic in FULFILLMENT_TOPICS:
        kind, why = "fulfillment", _fulfillment_problem(payload)
    elif topic == REFUNDS_CREATE:
        kind, why = "refund", _refund_problem(payload)
    elif topic == APP_UNINSTALLED:
        kind, why = topic, _shop_object_problem(payload, shop)
    elif topic in PRIVACY_TOPICS:
        kind, why = topic, _privacy_problem(topic, payload, shop)
    elif topic in PRODUCT_TOPICS:
        kind, why = "product", _product_problem(payload)
    elif topic == PRODUCTS_DELETE:
        kind, why = topic, _product_deletion_problem(payload)
    else:
        return None
    if why is None:
        return None
    return (f"the body does not look like {topic}: that topic carries {_EXPECTED[kind]}, "
            f"but {why}")


def _object_problem(payload: dict, kind: str) -> str | None:
    """Why ``payload`` is not a Shopify ``kind`` object (``Order``, ``Fulfillment``, ``Shop``)
    by its id and, when present, its ``admin_graphql_api_id`` (which names the object's kind)."""
    object_id = _shopify_id(payload.get("id"), kind)
    if object_id is None:
        return f"its id is not a Shopify {kind.lower()} id"
    gid = payload.get("admin_graphql_api_id")
    if gid is not None and gid != f"gid://shopify/{kind}/{object_id}":
        return f"its admin_graphql_api_id is {_quote(gid)}"
    return None


def _order_problem(order: dict) -> str | None:
    if order.get("order_id") is not None:
        return "it has an order_id, as a fulfillment or a refund does"
    if order.get("admin_graphql_api_id") is None and order.get("order_number") is None:
        return "it has neither an admin_graphql_api_id nor an order_number"
    return _object_problem(order, "Order")


def _refund_problem(refund: dict) -> str | None:
    if _shopify_id(refund.get("order_id"), "Order") is None:
        return "it names no order (order_id)"
    if refund.get("order_number") is not None:
        return "it has an order_number, as an order does"
    return _object_problem(refund, "Refund")


def _fulfillment_problem(fulfillment: dict) -> str | None:
    if _shopify_id(fulfillment.get("order_id"), "Order") is None:
        return "it names no order (order_id)"
    if fulfillment.get("order_number") is not None:
        return "it has an order_number, as an order does"
    return _object_problem(fulfillment, "Fulfillment")


def _product_problem(product: dict) -> str | None:
    if product.get("order_id") is not None:
        return "it has an order_id, as a fulfillment or a refund does"
    if product.get("order_number") is not None:
        return "it has an order_number, as an order does"
    if not isinstance(product.get("title"), str):
        return "it has no title"
    return _object_problem(product, "Product")


def _product_deletion_problem(payload: dict) -> str | None:
    """A genuine products/delete is ``{"id": n}``: any other field means a body of another kind
    (a product, whose deletion would be forged from a captured products/update)."""
    extra = sorted(str(key) for key in payload if key != "id")
    if extra:
        return f"it has {', '.join(_quote(k) for k in extra[:5])}"
    if _shopify_id(payload.get("id"), "Product") is None:
        return "its id is not a Shopify product id"
    return None


def _shop_object_problem(payload: dict, shop: str) -> str | None:
    if "myshopify_domain" not in payload:
        return "it has no myshopify_domain"
    extra = [key for key in NOT_IN_A_SHOP if key in payload]
    if extra:
        return f"it has {', '.join(extra)}, which a shop object does not"
    problem = _object_problem(payload, "Shop")
    if problem:
        return problem
    # The shop's own domain must be the channel's; ``domain`` is the shop's primary domain,
    # comparable only when it is its myshopify.com one (a custom domain says nothing).
    for key in ("myshopify_domain", "domain"):
        value = payload.get(key)
        if key == "domain" and not (isinstance(value, str)
                                    and value.lower().endswith(".myshopify.com")):
            continue
        if value is not None and _domain(value) != shop:
            return f"its {key} {_quote(value)} is not this channel's shop {shop}"
    return None


def _privacy_problem(topic: str, payload: dict, shop: str) -> str | None:
    if _shopify_id(payload.get("shop_id"), "Shop") is None:
        return "it has no shop_id"
    if payload.get("shop_domain") is None:
        return "it has no shop_domain"
    if _domain(payload["shop_domain"]) != shop:
        return (f"its shop_domain {_quote(payload['shop_domain'])} is not this channel's shop "
                f"{shop}")
    if topic == SHOP_REDACT:
        extra = [key for key in CUSTOMER_REQUEST_KEYS if key in payload]
        return f"it has {', '.join(extra)}: a customer's request" if extra else None
    customer = payload.get("customer")
    if not isinstance(customer, dict):
        return "it names no customer"
    if topic == CUSTOMERS_REDACT:
        extra = [key for key in ("orders_requested", "data_request") if key in payload]
        if extra:
            return f"it has {', '.join(extra)}: a customers/data_request"
        if "orders_to_redact" in payload and not isinstance(payload["orders_to_redact"], list):
            return "its orders_to_redact is not a list"
    return None


def _shopify_id(value, kind: str) -> str | None:
    """A Shopify id (a positive 64-bit integer, its digits, or ``gid://shopify/<kind>/<n>``)
    as digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < 2 ** 64 else None
    if isinstance(value, str):
        text = value.strip()
        prefix = f"gid://shopify/{kind}/"
        if text.startswith(prefix):
            text = text[len(prefix):]
        if text.isascii() and text.isdigit() and len(text) <= 20 and int(text) > 0:
            return text
    return None


def _domain(value) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def _quote(value) -> str:
    """An outside value in a message: bounded."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def dedupe_key(topic: str, body: bytes) -> str:
    """SHA-256 of topic and raw body. Shopify's retries repeat the body byte for byte (only the
    body is signed: the webhook id is a header anyone can change), and a new event has a new
    body, so the same body under the same topic is the same delivery."""
    digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\n")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


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


def _order_id(topic: str, payload: dict) -> str | None:
    if topic.startswith("orders/"):
        return _id(payload.get("id"))
    if topic.startswith("fulfillments/") or topic == REFUNDS_CREATE:
        return _id(payload.get("order_id"))
    return None


def _id(value) -> str | None:
    """Shopify ids are 64-bit integers (parsed exactly from the raw JSON); digit strings too."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # "gid://shopify/Order/123" → "123"
        return text.rsplit("/", 1)[-1] if text.startswith("gid://") else text
    return None


def _text(value) -> str | None:
    """A string field as text (numbers too); None for empty, missing or structured values."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value).strip() or None
    return None


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC); None if unreadable.
    Shopify's X-Shopify-Triggered-At has nanoseconds and a Z: both are handled."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
