"""Shopify: full-payload deliveries signed with the app's client secret.

Every delivery carries the whole object, so :meth:`ShopifyAdapter.translate` makes no API call;
the GraphQL Admin API is used only for webhook subscriptions (:mod:`plugins.shopify.client`).

Topic rule (documented in docs/shopify.md):

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
* ``app/uninstalled`` → DeactivateChannel (the token is already dead: no API call).
* ``customers/data_request`` → ignored (the request is stored and visible in the inbox);
  ``customers/redact`` → RedactPersonalData for that customer and ``orders_to_redact``;
  ``shop/redact`` → RedactPersonalData of everything. These three and ``app/uninstalled`` are
  accepted even once the channel is inactive (``shop/redact`` arrives 48 h after an uninstall).
* Any other topic → ignored, with the topic named.

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
from urllib.parse import urlparse

from marshmallow import Schema, fields, post_load, validate

from orderhooks import (AuthenticationError, Cancel, Channel, ChannelAdapter, DeactivateChannel,
                        Delivery, DeliveryInfo, Fulfill, Ignore, InvalidDelivery,
                        RedactPersonalData, RemoteSubscription, Shipment, ShipmentItem,
                        SubscriptionSpec, hookimpl)

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

ORDERS_CANCELLED = "orders/cancelled"
FULFILLMENTS_CREATE = "fulfillments/create"
FULFILLMENTS_UPDATE = "fulfillments/update"
ORDERS_FULFILLED = "orders/fulfilled"
ORDERS_PARTIALLY_FULFILLED = "orders/partially_fulfilled"
APP_UNINSTALLED = "app/uninstalled"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"

PRIVACY_TOPICS = (CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT)
#: Topics an inactive (e.g. uninstalled) channel still accepts and processes.
LIFECYCLE_TOPICS = (APP_UNINSTALLED, *PRIVACY_TOPICS)

#: GraphQL ``WebhookSubscriptionTopic`` values: the names used for SubscriptionSpec.topic and
#: RemoteSubscription.topic alike, so the core's reconcile matches them.
CANCELLATION_SUBSCRIPTIONS = ("ORDERS_CANCELLED",)
FULFILLMENT_SUBSCRIPTIONS = ("FULFILLMENTS_CREATE", "FULFILLMENTS_UPDATE", "ORDERS_FULFILLED",
                             "ORDERS_PARTIALLY_FULFILLED")
LIFECYCLE_SUBSCRIPTIONS = ("APP_UNINSTALLED",)

# -- fulfilment statuses ------------------------------------------------------------------------

#: A fulfillment in this status has left the warehouse.
SHIPPED_STATUSES = frozenset({"success"})
#: Not shipped yet: a later fulfillments/update says when it does.
NOT_YET_SHIPPED_STATUSES = frozenset({"pending", "open"})
#: Will never ship.
FAILED_STATUSES = frozenset({"cancelled", "error", "failure"})


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

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.pacer = ShopPacer()

    def client(self, channel: Channel) -> ShopifyClient:
        return ShopifyClient(dict(channel.credentials), timeout=self.timeout, pacer=self.pacer)

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
        shop = delivery.headers.first(*SHOP_HEADER)
        expected_shop = str(channel.credentials.get("shop_domain") or "").lower()
        if shop and expected_shop and shop.strip().lower() != expected_shop:
            raise AuthenticationError(f"the delivery is for shop {shop}, not for this channel's "
                                      f"shop {expected_shop}")

    def accepts_when_inactive(self, delivery: Delivery, channel: Channel) -> bool:
        return _topic(delivery) in LIFECYCLE_TOPICS

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        topic = _topic(delivery)
        if not topic:
            raise InvalidDelivery("missing X-Shopify-Topic header")
        # Only the fields inspect needs: a full order payload is read by the worker.
        payload = delivery.json_object("id", "order_id", "updated_at")
        webhook_id = (delivery.headers.first(*WEBHOOK_ID_HEADER) or "").strip()
        if len(webhook_id) > 200:  # Shopify's are UUIDs; keep the key within its column
            webhook_id = "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()
        key = (f"webhook-id:{webhook_id}" if webhook_id
               else f"sha256:{topic}:{hashlib.sha256(delivery.body).hexdigest()}")
        order_id = _order_id(topic, payload)
        return DeliveryInfo(key=key, topic=topic, channel_order_id=order_id,
                            occurred_at=occurred_at(delivery, payload))

    # -- worker -----------------------------------------------------------------------------

    def translate(self, delivery: Delivery, channel: Channel):
        topic = _topic(delivery)
        payload = delivery.json_object()
        when = occurred_at(delivery, payload)
        if topic == ORDERS_CANCELLED:
            order_id = _order_id(topic, payload)
            if order_id is None:
                return [Ignore(f"{topic} delivery names no order")]
            return [Cancel(order_id, reason=_text(payload.get("cancel_reason")),
                           occurred_at=when)]
        if topic in (FULFILLMENTS_CREATE, FULFILLMENTS_UPDATE):
            return [_fulfillment_intent(topic, payload, when)]
        if topic in (ORDERS_FULFILLED, ORDERS_PARTIALLY_FULFILLED):
            return [_order_fulfillment_intent(topic, payload, when)]
        if topic == APP_UNINSTALLED:
            shop = payload.get("myshopify_domain") or payload.get("domain") or \
                channel.credentials.get("shop_domain")
            return [DeactivateChannel(f"the app was uninstalled from Shopify shop {shop}")]
        if topic in PRIVACY_TOPICS:
            return [_privacy_intent(topic, payload, channel)]
        return [Ignore(f"Shopify topic {topic or '(none)'} does not concern cancellations or "
                       "fulfilments")]

    # -- subscriptions ----------------------------------------------------------------------

    def desired_subscriptions(self, channel: Channel) -> list[SubscriptionSpec]:
        topics: list[str] = []
        if channel.wants_cancellations:
            topics += CANCELLATION_SUBSCRIPTIONS
        if channel.wants_fulfillments:
            topics += FULFILLMENT_SUBSCRIPTIONS
        if topics:
            topics += LIFECYCLE_SUBSCRIPTIONS
        return [SubscriptionSpec(topic, channel.webhook_url) for topic in topics]

    def list_subscriptions(self, channel: Channel) -> list[RemoteSubscription]:
        return [_remote(node) for node in self.client(channel).webhook_subscriptions()]

    def create_subscription(self, channel: Channel, spec: SubscriptionSpec) -> RemoteSubscription:
        return _remote(self.client(channel).create_webhook_subscription(spec.topic,
                                                                         spec.destination))

    def activate_subscription(self, channel: Channel,
                              remote: RemoteSubscription) -> RemoteSubscription:
        """Shopify subscriptions have no inactive state (failing ones are deleted): re-create."""
        client = self.client(channel)
        client.delete_webhook_subscription(remote.remote_id)
        return _remote(client.create_webhook_subscription(remote.topic, remote.destination))

    def delete_subscription(self, channel: Channel, remote: RemoteSubscription) -> None:
        self.client(channel).delete_webhook_subscription(remote.remote_id)


# -- translating ----------------------------------------------------------------------------------


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
    if order_id is None:
        return Ignore(f"{topic} delivery names no order")
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
    shop = str(payload.get("shop_domain") or "").lower()
    expected = str(channel.credentials.get("shop_domain") or "").lower()
    if shop and expected and shop != expected:
        return Ignore(f"{topic} is for shop {shop}, not this channel's shop {expected}; "
                      "nothing redacted")
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


# -- helpers --------------------------------------------------------------------------------------


def _topic(delivery: Delivery) -> str:
    return (delivery.headers.first(*TOPIC_HEADER) or "").strip().lower()


def _order_id(topic: str, payload: dict) -> str | None:
    if topic.startswith("orders/"):
        return _id(payload.get("id"))
    if topic.startswith("fulfillments/"):
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
                              active=True)


@hookimpl
def register_channels(register):
    register(ShopifyAdapter())
