"""BigCommerce: thin deliveries, so the order's current state is read from the API.

Status rule (documented in README and docs/plugins.md):

* 5 Cancelled → Cancel.
* 2 Shipped, 10 Completed → Fulfill with the order's shipments.
* 3 Partially Shipped → the shipments are recorded (Fulfill ``complete=False``, the order keeps its
  status) unless every item has shipped (``items_shipped >= items_total``), which counts as
  fulfilled.
* Any other status → ignored, with the status named.
* ``store/order/created`` (order creation on) → CreateOrder from the order, its products and
  shipping addresses (three calls); status 0 (Incomplete) is not imported until its
  statusUpdated out of 0 (then imported the same way); 5 is imported and then cancelled.
* ``statusUpdated`` out of Awaiting Payment (7) into a paid status (order payment on) →
  RecordPayment as well.

The current state is trusted over the payload's ``new_status_id``: retries arrive late and out of
order, so a stale "cancelled" for an order that was re-opened must not cancel it.

Products (docs/products.md): ``store/product/created`` and ``updated`` (and ``store/sku/*``, which
name their product) carry only the id, so the product is read —
``GET /v3/catalog/products/{id}?include=variants`` — and becomes UpsertProduct with its
``date_modified``; a 404 means it is gone: DeleteProduct at the time of the read.
``store/product/deleted`` → DeleteProduct at the delivery's ``created_at``. Like orders, the
deliveries of one batch for the same product cost one read.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlparse

from marshmallow import Schema, fields, validate

from orderhooks import (Address, AuthenticationError, Cancel, Channel, ChannelAdapter,
                        ChannelAPIError, CreateOrder, Customer, DeleteProduct, Delivery,
                        DeliveryInfo, Fulfill, Ignore, InvalidDelivery, InvalidIntent, OrderLine,
                        ProductVariant, RecordPayment, RecordRefund, RefundLine,
                        RemoteSubscription, RetryLater, Shipment, ShipmentItem, SubscriptionSpec,
                        UpsertProduct, hookimpl)

from . import client as api
from .client import BigCommerceClient

log = logging.getLogger("orderhooks.bigcommerce")

#: The header the service puts in every hook it creates, carrying the channel's secret.
SECRET_HEADER = "X-Orderhooks-Secret"
ORDER_SCOPE = "store/order/statusUpdated"
CREATED_SCOPE = "store/order/created"
REFUND_SCOPE = "store/order/refund/created"
#: Each webhook a merchant may tick (core.webhooks names) and the scopes that carry it.
#: BigCommerce has no paid scope: a payment is a status change out of Awaiting Payment (7).
#: Refunds have one scope for POS and online; a product edit may come as a product or a SKU.
WEBHOOK_SCOPES = {
    "order_creation": (CREATED_SCOPE,),
    "order_payment": (ORDER_SCOPE,),
    "cancellation": (ORDER_SCOPE,),
    "fulfillment": (ORDER_SCOPE,),
    "refund_pos": (REFUND_SCOPE,),
    "refund_ecommerce": (REFUND_SCOPE,),
    "product_update": ("store/product/created", "store/product/updated",
                       "store/sku/updated"),
    "product_deletion": ("store/product/deleted",),
}
#: The webhooks translated today (and so subscribed).
TRANSLATED_WEBHOOKS = frozenset({"order_creation", "order_payment", "cancellation",
                                 "fulfillment", "product_update", "product_deletion",
                                 "refund_pos", "refund_ecommerce"})
#: Scopes whose product is read from the catalog (``store/sku/*`` name it in ``data.sku``).
PRODUCT_READ_SCOPES = ("store/product/created", "store/product/updated", "store/sku/created",
                       "store/sku/updated", "store/sku/deleted")
PRODUCT_DELETED_SCOPE = "store/product/deleted"

STATUS_LABELS = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped",
                 4: "Refunded", 5: "Cancelled", 6: "Declined", 7: "Awaiting Payment",
                 8: "Awaiting Pickup", 9: "Awaiting Shipment", 10: "Completed",
                 11: "Awaiting Fulfillment", 12: "Manual Verification Required", 13: "Disputed",
                 14: "Partially Refunded"}
CANCELLED, SHIPPED, PARTIALLY_SHIPPED, COMPLETED = 5, 2, 3, 10
INCOMPLETE, AWAITING_PAYMENT = 0, 7
#: Statuses of an order whose payment was confirmed: Awaiting Fulfillment (11) and everything
#: after it (shipping, pickup, completion; refunds come after a payment too).
PAID_STATUSES = frozenset({2, 3, 4, 8, 9, 10, 11, 14})


class CredentialsSchema(Schema):
    store_hash = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9]{1,64}$", error="a BigCommerce store hash is letters and digits"))
    access_token = fields.String(required=True, validate=validate.Length(min=1, max=512))
    client_secret = fields.String(validate=validate.Length(min=1, max=512))
    api_base_url = fields.Url(require_tld=False, schemes={"http", "https"})


class BigCommerceAdapter(ChannelAdapter):
    type = "bigcommerce"
    title = "BigCommerce"
    credentials_schema = CredentialsSchema
    stored_headers = ("webhook-signature",)
    destination_credentials = ("api_base_url", "store_hash")
    sent_credentials = ("access_token",)
    webhook_topics = WEBHOOK_SCOPES
    translated_webhooks = TRANSLATED_WEBHOOKS

    #: Orders of one batch read at once (each a call or two, waiting on the network): the
    #: store's pacer still sees every response, and keeps ``client.RESERVE`` calls in hand for
    #: those in flight.
    concurrency = 4

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._clients: OrderedDict[tuple, BigCommerceClient] = OrderedDict()
        self._clients_lock = threading.Lock()

    #: Stores whose API client (and its kept-alive HTTPS connections) is kept between batches.
    kept_clients = 256

    def client(self, channel: Channel) -> BigCommerceClient:
        """The store's API client, kept between batches so its connections are reused (a TLS
        handshake per batch otherwise); a change of credentials or timeout makes a new one."""
        key = (channel.id, self.timeout, tuple(self.allowed_api_base_urls.allowed), tuple(sorted(
            (k, str(v)) for k, v in channel.credentials.items())))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._clients[key] = BigCommerceClient(
                dict(channel.credentials), timeout=self.timeout,
                allowed=self.allowed_api_base_urls)
            # The channel's older clients (edited credentials), then the least recently used.
            dropped = [self._clients.pop(k) for k in list(self._clients)
                       if k[0] == channel.id and k != key]
            while len(self._clients) > self.kept_clients:
                dropped.append(self._clients.popitem(last=False)[1])
        for old in dropped:
            old.http.session.close()
        return client

    def api_base_url(self, credentials) -> str:
        return api.api_base_url(credentials)

    def own_api_base_urls(self, credentials) -> tuple[str, ...]:
        return (api.DEFAULT_API_BASE_URL,)

    # -- intake -----------------------------------------------------------------------------

    def check_destination(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "https" or parsed.port not in (None, 443):
            raise ValueError(f"BigCommerce delivers only to https on port 443, not to {url}")

    def authenticate(self, delivery: Delivery, channel: Channel) -> None:
        given = delivery.headers.get(SECRET_HEADER)
        if not given or not hmac.compare_digest(given.encode(), channel.webhook_secret.encode()):
            raise AuthenticationError(f"missing or wrong {SECRET_HEADER} header")
        # A channel that has the app's client secret can check Standard Webhooks signatures,
        # so it requires one on every delivery: were an unsigned delivery let through, leaving
        # the signature out would skip its timestamp check, and a capture of any age would pass.
        client_secret = channel.credentials.get("client_secret")
        if client_secret:
            verify_standard_webhook(delivery, client_secret)

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        payload = _payload(delivery)
        scope = payload["scope"]
        data = payload.get("data") or {}
        order_id = data.get("orderId") if data.get("type") == "shipment" else data.get("id")
        if scope.startswith(("store/product/", "store/sku/")):
            order_id = None  # a product's id, not an order's
        digest = payload.get("hash") or hashlib.sha1(delivery.body).hexdigest()
        webhook_id = delivery.headers.get("webhook-id")
        created = payload.get("created_at")
        return DeliveryInfo(
            key=f"{scope}:{digest}" if payload.get("hash") or not webhook_id
            else f"webhook-id:{webhook_id}",
            topic=scope, channel_order_id=str(order_id) if order_id is not None else None,
            occurred_at=_timestamp(created))

    # -- worker -----------------------------------------------------------------------------

    def translate(self, delivery: Delivery, channel: Channel):
        result = self.translate_many([delivery], channel)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def translate_many(self, deliveries: list[Delivery], channel: Channel):
        """Coalesce: deliveries for the same order waiting at once (status updated, shipment
        created, order updated...) cost one order read (plus one shipments read), not one per
        delivery — they all get the order's current state anyway. The same for a product's
        deliveries: one catalog read per product per batch."""
        client = self.client(channel)
        results: list = [None] * len(deliveries)
        #: ("order", id) or ("product", id) -> the indexes of the deliveries that read it
        reads: dict[tuple[str, str], list[int]] = {}
        #: index -> (scope, data) of each delivery that needs its order read
        deliveries_info: dict[int, tuple[str, dict]] = {}
        #: order id -> (index, data) of each refund delivery: one refunds read per order
        refunds: dict[str, list[tuple[int, dict]]] = {}
        for index, delivery in enumerate(deliveries):
            try:
                payload = _payload(delivery)
                scope, data = payload["scope"], payload.get("data") or {}
                if scope in PRODUCT_READ_SCOPES or scope == PRODUCT_DELETED_SCOPE:
                    product_id = _product_id(scope, data)
                    if product_id is None:
                        results[index] = [Ignore(f"{scope} delivery names no valid product id "
                                                 "(a BigCommerce product id is a decimal "
                                                 "integer)")]
                    elif scope == PRODUCT_DELETED_SCOPE:
                        results[index] = [DeleteProduct(product_id, occurred_at=_timestamp(
                            payload.get("created_at")))]
                    else:
                        reads.setdefault(("product", product_id), []).append(index)
                    continue
                if scope.startswith(("store/product/", "store/sku/")):
                    results[index] = [Ignore(f"BigCommerce scope {scope} is not acted on: the "
                                             "catalog keeps no inventory levels")]
                    continue
                if not (scope.startswith("store/order/") or scope.startswith("store/shipment/")):
                    results[index] = [Ignore(f"BigCommerce scope {scope} does not concern "
                                             "order status or products")]
                    continue
                order_id = (data.get("orderId") if data.get("type") == "shipment"
                            else data.get("id"))
                if order_id is None:
                    results[index] = [Ignore(f"{scope} delivery names no order")]
                    continue
                if isinstance(order_id, bool) or not api.is_order_id(str(order_id)):
                    # Never a request for it: the id goes into an API path.
                    results[index] = [Ignore(f"{scope} delivery names no valid order id (a "
                                             "BigCommerce order id is a decimal integer)")]
                    continue
                if scope == CREATED_SCOPE and not channel.uses("order_creation"):
                    results[index] = [Ignore(f"{scope}: order creation is off for this channel "
                                             "(its webhooks do not include order_creation)")]
                    continue
                if scope == REFUND_SCOPE:
                    refunds.setdefault(str(order_id), []).append((index, data))
                    continue
                reads.setdefault(("order", str(order_id)), []).append(index)
                deliveries_info[index] = (scope, data)
            except Exception as exc:  # noqa: BLE001
                results[index] = exc

        def read(key: tuple[str, str]):
            """One read for every delivery of an order (a list: one result each) or of a product
            (one result they share); an exception is shared by all of them."""
            kind, object_id = key
            try:
                if kind == "product":
                    return product_intents(client, object_id)
                group = [deliveries_info[i] for i in reads[key]]
                return order_results(client, channel, object_id, group)
            except (ChannelAPIError, RetryLater, InvalidIntent) as exc:
                return exc  # every delivery of the order (product) shares it
            except Exception as exc:  # noqa: BLE001 — an answer we cannot read
                # Its message may quote the answer: the delivery's reason names only the type.
                log.warning("bigcommerce.unreadable_answer", exc_info=exc,
                            extra={"channel_id": channel.id, f"{kind}_id": object_id})
                path = (f"/v3/catalog/products/{object_id}" if kind == "product"
                        else f"/v2/orders/{object_id}")
                return ChannelAPIError(f"GET {path}: an answer we cannot read "
                                       f"({type(exc).__name__})")

        for order_id, group in refunds.items():
            for index, result in zip((i for i, _ in group),
                                     refund_results(client, channel, order_id, group)):
                results[index] = result
        keys = list(reads)
        if len(keys) > 1 and self.concurrency > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency,
                                                thread_name_prefix="bigcommerce-read")
            outcomes = list(self._pool.map(read, keys))
        else:
            outcomes = [read(key) for key in keys]
        for key, outcome in zip(keys, outcomes):
            for position, index in enumerate(reads[key]):
                if isinstance(outcome, Exception) or key[0] == "product":
                    results[index] = outcome
                else:
                    results[index] = outcome[position]
        return results

    # -- subscriptions ----------------------------------------------------------------------

    def list_subscriptions(self, channel: Channel) -> list[RemoteSubscription]:
        return [_remote(h, channel) for h in self.client(channel).hooks()]

    def create_subscription(self, channel: Channel, spec: SubscriptionSpec) -> RemoteSubscription:
        hook = self.client(channel).create_hook({
            "scope": spec.topic, "destination": spec.destination, "is_active": True,
            "headers": {SECRET_HEADER: channel.webhook_secret}})
        return _remote(hook, channel)

    def activate_subscription(self, channel: Channel,
                              remote: RemoteSubscription) -> RemoteSubscription:
        """Also the repair of a hook whose secret header is stale: the update puts the channel's
        current secret on it."""
        hook = self.client(channel).update_hook(remote.remote_id, {
            "is_active": True, "headers": {SECRET_HEADER: channel.webhook_secret}})
        return _remote(hook, channel)

    def delete_subscription(self, channel: Channel, remote: RemoteSubscription) -> None:
        self.client(channel).delete_hook(remote.remote_id)

    def read_order(self, channel: Channel, channel_order_id: str):
        """The order, its products and shipping addresses (three calls, paced per store like
        every read), as a CreateOrder; an Ignore when BigCommerce does not know it (404) or it
        is incomplete."""
        if not api.is_order_id(str(channel_order_id)):
            return Ignore(f"order {channel_order_id!r} is not a BigCommerce order id")
        client = self.client(channel)
        order = client.order(channel_order_id)
        missing = _missing(order, channel_order_id)
        if missing:
            return Ignore(f"order {channel_order_id} could not be imported: GET "
                          f"/v2/orders/{channel_order_id} answered 404 (or the order is "
                          "deleted)")
        return import_intents(client, channel_order_id, order)[0]


def order_results(client: BigCommerceClient, channel: Channel, order_id: str,
                  group: list[tuple[str, dict]]) -> list[list]:
    """The intents of each delivery of one order (``group``: scope and data of each), from one
    read of the order — plus, when one of them is the order's creation, its products and
    shipping addresses (at most three calls for a new order of up to 250 lines)."""
    order = client.order(order_id)
    missing = _missing(order, order_id)
    if missing:
        return [[missing] for _ in group]
    state = order_intents(client, order_id, order)
    created = None
    if any(scope == CREATED_SCOPE or _completes_checkout(scope, data, channel)
           for scope, data in group):
        created = import_intents(client, order_id, order)
    results = []
    for scope, data in group:
        if scope == CREATED_SCOPE:
            results.append(created)
            continue
        # An incomplete order (0) that completes checkout was not imported at its creation:
        # it is imported now (a CreateOrder of an order that exists changes nothing).
        first = ([i for i in created if isinstance(i, CreateOrder)]
                 if _completes_checkout(scope, data, channel) else [])
        results.append(first + state + _payment(order_id, order, data, channel))
    return results


def refund_results(client: BigCommerceClient, channel: Channel, order_id: str,
                   group: list[tuple[int, dict]]) -> list:
    """The result of each refund delivery of one order (``group``: index and data of each),
    from one read of the order's refunds. BigCommerce does not tell POS refunds from online
    ones: either refund webhook ticked records them. It carries no restock data either, so
    every line's action is left for a person."""
    if not (channel.uses("refund_pos") or channel.uses("refund_ecommerce")):
        return [[Ignore(f"{REFUND_SCOPE}: order {order_id}: neither refund webhook "
                        "(refund_pos, refund_ecommerce) is ticked")] for _ in group]
    try:
        found = client.refunds(order_id)
    except (ChannelAPIError, RetryLater) as exc:  # every delivery of the order shares it
        return [exc for _ in group]
    results = []
    for _, data in group:
        refund_data = data.get("refund") if isinstance(data.get("refund"), dict) else {}
        refund_id = refund_data.get("refund_id")
        refund = next((r for r in found or () if str(r.get("id")) == str(refund_id)), None)
        if refund_id is None or isinstance(refund_id, (bool, dict, list)):
            results.append([Ignore(f"{REFUND_SCOPE}: order {order_id}: the delivery names no "
                                   "refund (data.refund.refund_id)")])
        elif refund is None:
            results.append([Ignore(
                f"{REFUND_SCOPE}: order {order_id} has no refund {str(refund_id)[:40]} in GET "
                f"/v3/orders/{order_id}/payment_actions/refunds"
                + (" (BigCommerce does not know the order)" if found is None else ""))])
        else:
            try:
                results.append([refund_intent(order_id, refund)])
            except InvalidIntent as exc:  # a refund no retry can record
                results.append(exc)
    return results


def refund_intent(order_id: str, refund: dict) -> RecordRefund:
    """A v3 refund as a RecordRefund: its PRODUCT items (``item_id`` is the order product's
    id, as the order's lines have it) with no action (BigCommerce carries no restock data)."""
    lines = tuple(
        RefundLine(channel_line_id=_text(item.get("item_id")),
                   quantity=_quantity(item.get("quantity")),
                   amount=_money(item.get("requested_amount")))
        for item in refund.get("items") or () if isinstance(item, dict)
        and item.get("item_type") == "PRODUCT")
    return RecordRefund(order_id, _text(refund.get("id")), lines=lines,
                        note=_text(refund.get("reason")),
                        occurred_at=_iso(refund.get("created")))


def _iso(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _completes_checkout(scope: str, data: dict, channel: Channel) -> bool:
    change = data.get("status") if isinstance(data.get("status"), dict) else {}
    return (scope == ORDER_SCOPE and channel.uses("order_creation")
            and str(change.get("previous_status_id")) == str(INCOMPLETE))


def _missing(order, order_id: str) -> Ignore | None:
    if not order or not isinstance(order, dict) or order.get("is_deleted"):
        return Ignore(f"order {order_id} does not exist (or was deleted) in BigCommerce")
    return None


def _status(order: dict) -> int | None:
    try:
        return int(order.get("status_id"))
    except (TypeError, ValueError):
        return None


def _payment(order_id: str, order: dict, data: dict, channel: Channel) -> list:
    """A status change out of Awaiting Payment (7) into a paid status is the order's payment:
    BigCommerce has no paid webhook. The payload says where the order came from; its current
    status (read) says where it is now."""
    if not channel.uses("order_payment"):
        return []
    change = data.get("status") if isinstance(data.get("status"), dict) else {}
    previous, status_id = change.get("previous_status_id"), _status(order)
    if str(previous) != str(AWAITING_PAYMENT) or status_id not in PAID_STATUSES:
        return []
    return [RecordPayment(order_id, amount=_money(order.get("total_inc_tax")),
                          currency=_text(order.get("currency_code")),
                          status=f"{STATUS_LABELS.get(status_id, 'unknown')} ({status_id})")]


def import_intents(client: BigCommerceClient, order_id: str, order: dict) -> list:
    """The order, read, as a CreateOrder — with its products and shipping addresses (two more
    calls). Incomplete orders (0: the shopper never finished checkout) are not imported; a
    cancelled one is imported and then cancelled."""
    status_id = _status(order)
    if status_id == INCOMPLETE:
        return [Ignore(f"order {order_id} is Incomplete (status 0) in BigCommerce: the shopper "
                       "did not finish checkout; not imported (its statusUpdated out of 0 imports "
                       "it)")]
    if status_id is None:
        return [Ignore(f"order {order_id} has no readable status_id; not imported")]
    products = client.order_products(order_id)
    addresses = client.order_shipping_addresses(order_id)
    intents: list = [order_intent(order_id, order, products, addresses)]
    if status_id == CANCELLED:
        intents.append(Cancel(order_id, reason=f"cancelled in BigCommerce (status {status_id})"))
    return intents


def order_intent(order_id: str, order: dict, products: list, addresses: list) -> CreateOrder:
    billing = order.get("billing_address") if isinstance(order.get("billing_address"),
                                                          dict) else {}
    status_id = _status(order)
    name = " ".join(n for n in (_text(billing.get("first_name")),
                                _text(billing.get("last_name"))) if n) or None
    email = _text(billing.get("email"))
    customer_id = order.get("customer_id")
    customer = None
    if name or email or customer_id:
        customer = Customer(channel_customer_id=_text(customer_id) if customer_id not in (
            0, "0") else None, name=name, email=email, phone=_text(billing.get("phone")))
    shipping = next((a for a in addresses if isinstance(a, dict)), None)
    return CreateOrder(
        order_id, order_number=str(order_id), placed_at=_rfc2822(order.get("date_created")),
        currency=_text(order.get("currency_code")),
        totals={k: _money(order.get(field)) for k, field in (
            ("total", "total_inc_tax"), ("subtotal", "subtotal_inc_tax"), ("tax", "total_tax"),
            ("shipping", "shipping_cost_inc_tax"), ("discount", "discount_amount"))
            if order.get(field) not in (None, "")},
        paid=status_id in PAID_STATUSES,
        payment_status=f"{STATUS_LABELS.get(status_id, 'unknown')} ({status_id})",
        customer=customer, shipping_address=_address(shipping),
        billing_address=_address(billing),
        lines=tuple(OrderLine(channel_line_id=_text(p.get("id")),
                              product_id=_text(p.get("product_id")),
                              variant_id=_text(p.get("variant_id")), sku=_text(p.get("sku")),
                              name=_text(p.get("name")),
                              quantity=_quantity(p.get("quantity")),
                              unit_price=_money(p.get("base_price")))
                    for p in products if isinstance(p, dict)))


def _address(data) -> Address | None:
    if not isinstance(data, dict) or not any(data.values()):
        return None
    name = " ".join(n for n in (_text(data.get("first_name")), _text(data.get("last_name")))
                    if n) or None
    return Address(name=name, company=_text(data.get("company")),
                   address1=_text(data.get("street_1")), address2=_text(data.get("street_2")),
                   city=_text(data.get("city")), province=_text(data.get("state")),
                   zip=_text(data.get("zip")), country=_text(data.get("country")),
                   country_code=_text(data.get("country_iso2")),
                   phone=_text(data.get("phone")), email=_text(data.get("email")))


def _text(value) -> str | None:
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    return str(value).strip() or None


def _money(value):
    """BigCommerce's v2 amounts are strings ("55.9900"); an integer is exact too. Anything else
    goes on as it is, and the intent refuses it (a float's digits are already rounded)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _quantity(value) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _rfc2822(value) -> datetime | None:
    """BigCommerce's v2 dates ("Tue, 20 Nov 2012 00:00:00 +0000"); None when unreadable."""
    from email.utils import parsedate_to_datetime
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def order_intents(client: BigCommerceClient, order_id: str, order: dict | None = None) -> list:
    """What the order's *current* state in BigCommerce means for the routed copy."""
    if order is None:
        order = client.order(order_id)
    missing = _missing(order, order_id)
    if missing:
        return [missing]
    status_id = _status(order)
    if status_id is None:
        return [Ignore(f"order {order_id} has no readable status_id")]
    label = STATUS_LABELS.get(status_id, "unknown")
    if status_id == CANCELLED:
        return [Cancel(order_id, reason=f"cancelled in BigCommerce (status {status_id})")]
    if status_id in (SHIPPED, COMPLETED, PARTIALLY_SHIPPED):
        shipments = tuple(_shipment(s) for s in client.shipments(order_id))
        complete = status_id != PARTIALLY_SHIPPED or _all_shipped(order)
        return [Fulfill(order_id, shipments=shipments, complete=complete)]
    return [Ignore(f"order {order_id} is {label} (status {status_id}) in BigCommerce: "
                   "neither cancelled nor shipped")]


def product_intents(client: BigCommerceClient, product_id: str) -> list:
    """The product as BigCommerce holds it now; gone (404) means deleted, as of this read."""
    answer = client.product(product_id)
    if answer is None:
        return [DeleteProduct(product_id, occurred_at=datetime.now(timezone.utc))]
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise ChannelAPIError(f"GET /v3/catalog/products/{product_id}: the answer has no "
                              "product (data)")
    variants = []
    for entry in data.get("variants") or ():
        if not isinstance(entry, dict) or not _is_id(entry.get("id")):
            continue
        labels = [str(v.get("label")) for v in entry.get("option_values") or ()
                  if isinstance(v, dict) and isinstance(v.get("label"), str)]
        variants.append(ProductVariant(str(entry["id"]), sku=_sku(entry.get("sku")),
                                       title=" / ".join(labels) or None,
                                       price=_price(entry.get("price"))))
    visible = data.get("is_visible")
    name = data.get("name")
    return [UpsertProduct(
        product_id, title=name if isinstance(name, str) else None, sku=_sku(data.get("sku")),
        price=_price(data.get("price")),
        status=None if visible is None else ("visible" if visible else "hidden"),
        active=visible is not False, variants=tuple(variants),
        updated_at=_iso_time(data.get("date_modified")))]


def _product_id(scope: str, data: dict) -> str | None:
    """The product a product or SKU delivery names, as digits; None when it names none."""
    value = data.get("id")
    if scope.startswith("store/sku/"):
        sku = data.get("sku")
        value = sku.get("product_id") if isinstance(sku, dict) else None
    return str(value) if _is_id(value) else None


def _is_id(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, str))
            and api.is_order_id(str(value)) and int(value) > 0)


def _sku(value) -> str | None:
    """BigCommerce writes "" for no SKU."""
    return value.strip() or None if isinstance(value, str) else None


def _price(value) -> str | None:
    """A catalog price (read as Decimal or int, never a float) as decimal text."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    text = str(value)
    return text if len(text) <= 32 and Decimal(value).is_finite() else None


def _iso_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _all_shipped(order: dict) -> bool:
    try:
        total, shipped = int(order.get("items_total") or 0), int(order.get("items_shipped") or 0)
    except (TypeError, ValueError):
        return False
    return total > 0 and shipped >= total


def _shipment(data: dict) -> Shipment:
    return Shipment(
        shipment_id=str(data["id"]) if data.get("id") is not None else None,
        tracking_number=data.get("tracking_number") or None,
        carrier=data.get("tracking_carrier") or data.get("shipping_provider") or None,
        tracking_url=data.get("tracking_link") or data.get("generated_tracking_link") or None,
        items=tuple(ShipmentItem(line_id=str(i.get("order_product_id")),
                                 sku=str(i["product_id"]) if i.get("product_id") else None,
                                 quantity=int(i.get("quantity") or 0))
                    for i in data.get("items") or ()))


def _remote(hook: dict, channel: Channel) -> RemoteSubscription:
    return RemoteSubscription(remote_id=str(hook.get("id")), topic=hook.get("scope", ""),
                              destination=hook.get("destination", ""),
                              active=bool(hook.get("is_active", True)),
                              mismatch=_secret_mismatch(hook, channel))


def _secret_mismatch(hook: dict, channel: Channel) -> str | None:
    """Whether the hook's deliveries would pass :meth:`BigCommerceAdapter.authenticate`: its
    secret header must be the channel's current secret (a restored database, or a channel that
    adopted an old hook, leaves another one there). Compared in constant time; never quoted."""
    headers = hook.get("headers")
    given = next((v for k, v in headers.items() if str(k).lower() == SECRET_HEADER.lower()),
                 None) if isinstance(headers, dict) else None
    if not isinstance(given, str) or not given:
        return f"the hook has no {SECRET_HEADER} header: every delivery would be refused"
    if not hmac.compare_digest(given.encode("utf-8", "replace"), channel.webhook_secret.encode()):
        return (f"the hook's {SECRET_HEADER} header is not the channel's current secret: every "
                "delivery would be refused")
    return None


def _timestamp(value) -> datetime | None:
    """``created_at`` (Unix seconds) as a UTC datetime; None when absent or implausible
    (non-numeric, infinite, out of range): it only orders events, it never rejects one."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _payload(delivery: Delivery) -> dict:
    payload = delivery.json_object()
    if not isinstance(payload.get("scope"), str):
        raise InvalidDelivery("a BigCommerce delivery is a JSON object with a 'scope'")
    if payload.get("data") is not None and not isinstance(payload["data"], dict):
        raise InvalidDelivery("'data' must be an object")
    return payload


def verify_standard_webhook(delivery: Delivery, client_secret: str) -> None:
    """Standard Webhooks signature, keyed with base64 of the app's client secret: the
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers are all required, the
    timestamp within the library's tolerance (5 minutes) and the signature over the raw body."""
    headers = {name: delivery.headers.get(name) or "" for name in STANDARD_HEADERS}
    missing = [name for name, value in headers.items() if not value.strip()]
    if missing:
        raise AuthenticationError(
            "this channel verifies Standard Webhooks signatures (it has the app's client "
            f"secret): the {', '.join(missing)} header{'s' if len(missing) > 1 else ''} "
            f"{'are' if len(missing) > 1 else 'is'} missing")
    try:
        _verifier(client_secret).verify(delivery.body, headers, json_parse=False)
    except Exception as exc:  # noqa: BLE001 — the verifier raises several types on garbage
        raise AuthenticationError(f"Standard Webhooks signature rejected: {exc}") from exc


#: The headers of a Standard Webhooks delivery, all required to verify it.
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@lru_cache(maxsize=256)
def _verifier(client_secret: str):
    """The library's verifier for one client secret (kept: it decodes the key once)."""
    from standardwebhooks.webhooks import Webhook
    return Webhook(base64.b64encode(client_secret.encode()).decode())


@hookimpl
def register_channels(register):
    register(BigCommerceAdapter())
