"""What BigCommerce's API answers mean for the routed orders and the catalog: the kinds of read a
batch's deliveries share (``READ_KINDS``), and each answer turned into intents.

BigCommerce's deliveries are thin: each names an order, a product or a refund, and the current
state is read from the API. Every kind says how a delivery names what it needs read (its key),
how that is read once for all the batch's deliveries naming it, and what the answer means for
each of them. A new kind of read is one more entry in ``READ_KINDS``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from orderhooks import (Address, Cancel, Channel, ChannelAPIError, CreateOrder, Customer,
                        DeleteProduct, Delivery, Fulfill, Ignore, InvalidDelivery, InvalidIntent,
                        OrderLine, ProductVariant, RecordPayment, RecordRefund, RefundLine,
                        RetryLater, Shipment, ShipmentItem, UpsertProduct)

from . import client as api
from .client import BigCommerceClient, Hold

log = logging.getLogger("orderhooks.bigcommerce")

ORDER_SCOPE = "store/order/statusUpdated"
CREATED_SCOPE = "store/order/created"
REFUND_SCOPE = "store/order/refund/created"
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


@dataclass
class Batch:
    """What every read of one batch of one channel's deliveries shares: the store's client, the
    channel's settings, and where orders read for an import that may follow are kept."""
    client: BigCommerceClient
    channel: Channel
    recent: "RecentOrders"


@dataclass(frozen=True)
class ReadKind:
    """One kind of API read that the deliveries of a batch share: all the deliveries naming the
    same object (an order, a product, an order's refunds) wait on one read of it.

    - ``name``: the kind, in log lines;
    - ``takes(scope)``: whether a delivery of that scope is this kind's;
    - ``key(scope, data, payload, channel)``: the id of the object the delivery needs read, or
      the delivery's result when it needs none (its intents, or an Ignore saying why);
    - ``calls(group, channel, new)``: the calls held in the store's window before the read
      (the read and the calls its results make), so the chain is never cut halfway by the
      window running out; ``new``: a delivery of the group names an order the service may
      not hold yet;
    - ``read(client, object_id, hold)``: the answer, one call (or a few pages) to the API;
    - ``results(batch, object_id, answer, group, hold)``: what the answer means for each
      delivery of ``group`` (scope and data of each): its intents, or an exception of its own.
      An exception raised by ``read`` or ``results`` is every delivery's of the group;
    - ``path``: the read's path (``{}``: the object id), named when an answer cannot be read;
    - ``names``: what the object id is ("order", "product"), in log lines.
    """
    name: str
    takes: Callable[[str], bool]
    key: Callable[[str, dict, dict, Channel], "str | list"]
    calls: Callable[[list, Channel, bool], int]
    read: Callable[[BigCommerceClient, str, Hold], object]
    results: Callable[["Batch", str, object, list, Hold], list]
    path: str
    names: str


def _order_id(scope: str, data: dict) -> "str | list":
    """The order a delivery names, as digits, or the Ignore that says it names none: the id
    goes into an API path, so nothing else ever reaches one."""
    order_id = data.get("orderId") if data.get("type") == "shipment" else data.get("id")
    if order_id is None:
        return [Ignore(f"{scope} delivery names no order")]
    if isinstance(order_id, bool) or not api.is_order_id(str(order_id)):
        return [Ignore(f"{scope} delivery names no valid order id (a BigCommerce order id is a "
                       "decimal integer)")]
    return str(order_id)


def _order_key(scope: str, data: dict, payload: dict, channel: Channel) -> "str | list":
    order_id = _order_id(scope, data)
    if (isinstance(order_id, str) and scope == CREATED_SCOPE
            and not channel.uses("order_creation")):
        return [Ignore(f"{scope}: order creation is off for this channel (its webhooks do not "
                       "include order_creation)")]
    return order_id


def _refunds_key(scope: str, data: dict, payload: dict, channel: Channel) -> "str | list":
    """BigCommerce does not tell POS refunds from online ones: either refund webhook ticked
    records them."""
    order_id = _order_id(scope, data)
    if isinstance(order_id, str) and not (channel.uses("refund_pos")
                                          or channel.uses("refund_ecommerce")):
        return [Ignore(f"{REFUND_SCOPE}: order {order_id}: neither refund webhook "
                       "(refund_pos, refund_ecommerce) is ticked")]
    return order_id


def _product_key(scope: str, data: dict, payload: dict, channel: Channel) -> "str | list":
    """A deletion carries all there is to know (the id); the others are read."""
    product_id = _product_id(scope, data)
    if product_id is None:
        return [Ignore(f"{scope} delivery names no valid product id (a BigCommerce product id "
                       "is a decimal integer)")]
    if scope == PRODUCT_DELETED_SCOPE:
        return [DeleteProduct(product_id, occurred_at=delivery_time(payload.get("created_at")))]
    return product_id


#: An order's import: the order, its products and its shipping addresses (up to 250 lines).
IMPORT_CALLS = 3


def order_calls(group: list[tuple[str, dict]], channel: Channel, new: bool) -> int:
    """The calls held for one read of an order: the whole import when the group imports it
    (its creation, a checkout completed) or may have to (order creation on and an order the
    service may not hold: the worker imports it from this read), else the read alone."""
    if any(scope == CREATED_SCOPE or _completes_checkout(scope, data, channel)
           for scope, data in group) or (new and channel.uses("order_creation")):
        return IMPORT_CALLS
    return 1


def order_results(batch: Batch, order_id: str, order, group: list[tuple[str, dict]],
                  hold: Hold) -> list:
    """The intents of each delivery of one order (``group``: scope and data of each), from one
    read of the order — plus, when one of them is the order's creation, its products and
    shipping addresses (at most three calls for a new order of up to 250 lines, held with the
    read), and, when one of them needs the order's state and it has shipped, its shipments."""
    client, channel = batch.client, batch.channel
    missing = missing_order(order, order_id)
    if missing:
        return [[missing] for _ in group]
    created = None
    if any(scope == CREATED_SCOPE or _completes_checkout(scope, data, channel)
           for scope, data in group):
        created = import_intents(client, order_id, order, hold)
    # The state (and its shipments read) only for the deliveries that act on it: a creation
    # imports the order as it is, status and all.
    state = (order_intents(client, order_id, order)
             if any(scope != CREATED_SCOPE for scope, _ in group) else [])
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
    if channel.uses("order_creation") and created is None and any(
            isinstance(i, NEEDS_ORDER) for r in results for i in r):
        # The worker imports an order it does not know before applying these: from this read,
        # with the calls held for it.
        batch.recent.keep(channel.id, order_id, order, hold.handed_on())
    return results


def product_results(batch: Batch, product_id: str, answer, group: list, hold: Hold) -> list:
    """Every delivery of the product gets the product as it is now."""
    intents = product_intents(product_id, answer)
    return [intents for _ in group]


def refund_results(batch: Batch, order_id: str, found, group: list[tuple[str, dict]],
                   hold: Hold) -> list:
    """The result of each refund delivery of one order (``group``: scope and data of each),
    from one read of the order's refunds (None: BigCommerce does not know the order). It
    carries no restock data, so every line's action is left for a person."""
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


def _one_call(group: list, channel: Channel, new: bool) -> int:
    return 1


def _is_product_scope(scope: str) -> bool:
    return scope in PRODUCT_READ_SCOPES or scope == PRODUCT_DELETED_SCOPE


def _is_order_scope(scope: str) -> bool:
    return scope.startswith(("store/order/", "store/shipment/"))


#: The kinds of read, in the order a delivery's scope is matched against them. A scope none
#: takes is ignored with the reason (``unread``).
READ_KINDS = (
    ReadKind("product", _is_product_scope, _product_key, _one_call,
             BigCommerceClient.product, product_results,
             "/v3/catalog/products/{}", "product"),
    ReadKind("refunds", lambda scope: scope == REFUND_SCOPE, _refunds_key, _one_call,
             BigCommerceClient.refunds, refund_results,
             "/v3/orders/{}/payment_actions/refunds", "order"),
    ReadKind("order", _is_order_scope, _order_key, order_calls,
             BigCommerceClient.order, order_results,
             "/v2/orders/{}", "order"),
)


def unread(scope: str) -> list:
    """The result of a delivery no kind of read takes."""
    if scope.startswith(("store/product/", "store/sku/")):
        return [Ignore(f"BigCommerce scope {scope} is not acted on: the catalog keeps no "
                       "inventory levels")]
    return [Ignore(f"BigCommerce scope {scope} does not concern order status or products")]


def read_group(batch: Batch, kind: ReadKind, object_id: str, group: list,
               new: bool = True) -> "list | Exception":
    """One read for every delivery of ``group`` naming the object: a result each, or the
    exception they all share. The read's calls are held first (``ReadKind.calls``; ``new``:
    an order named may be new): when the window has no room for them, no call is made and
    the group is rescheduled (RetryLater) for the next window."""
    try:
        with batch.client.reserve(kind.calls(group, batch.channel, new)) as hold:
            return kind.results(batch, object_id, kind.read(batch.client, object_id, hold),
                                group, hold)
    except (ChannelAPIError, RetryLater, InvalidIntent) as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 — an answer we cannot read
        # Its message may quote the answer: the delivery's reason names only the type.
        log.warning("bigcommerce.unreadable_answer", exc_info=exc,
                    extra={"channel_id": batch.channel.id, "read": kind.name,
                           f"{kind.names}_id": object_id})
        return ChannelAPIError(f"GET {kind.path.format(object_id)}: an answer we cannot read "
                               f"({type(exc).__name__})")


#: The intents that need their order to exist (the worker imports it first, when it can).
NEEDS_ORDER = (Cancel, Fulfill, RecordPayment)


class RecentOrders:
    """Orders read while translating a batch, kept a short while for ``read_order``: the
    worker imports an order it does not know right after translating the batch that names it,
    and the order just read is the one to import — one read of it, not two — with the calls
    held for its products and addresses in the same window. Only orders that a cancellation,
    fulfilment or payment on a channel with order creation needs are kept; each is handed out
    once; at most ``size`` of them, none older than ``seconds``, none beyond the channel's next
    batch (``drop``: the worker has imported what it needed). What goes unused gives its held
    calls back (an import that comes later reads the order again)."""

    def __init__(self, size: int = 256, seconds: float = 60.0):
        self.size, self.seconds = size, seconds
        self._orders: OrderedDict[tuple[int, str], tuple[float, dict, Hold | None]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def keep(self, channel_id: int, order_id: str, order: dict,
             hold: Hold | None = None) -> None:
        now = time.monotonic()
        dropped = []
        with self._lock:
            dropped.append(self._orders.pop((channel_id, order_id), None))
            self._orders[(channel_id, order_id)] = (now, order, hold)
            while self._orders and (len(self._orders) > self.size or next(
                    iter(self._orders.values()))[0] < now - self.seconds):
                dropped.append(self._orders.popitem(last=False)[1])
        _release(dropped)

    def take(self, channel_id: int, order_id: str) -> tuple[dict, Hold | None] | None:
        """The order kept and the calls held for its import; None when none is kept."""
        with self._lock:
            kept = self._orders.pop((channel_id, order_id), None)
        if kept is None or kept[0] < time.monotonic() - self.seconds:
            _release([kept])
            return None
        return kept[1], kept[2]

    def drop(self, channel_id: int) -> None:
        """Forget the channel's orders (its next batch begins)."""
        with self._lock:
            dropped = [self._orders.pop(key) for key in list(self._orders)
                       if key[0] == channel_id]
        _release(dropped)


def _release(kept: list) -> None:
    for entry in kept:
        if entry is not None and entry[2] is not None:
            entry[2].release()


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


def missing_order(order, order_id: str) -> Ignore | None:
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


def import_intents(client: BigCommerceClient, order_id: str, order: dict,
                   hold: Hold | None = None) -> list:
    """The order, read, as a CreateOrder — with its products and shipping addresses (two more
    calls, of ``hold`` when it has them). Incomplete orders (0: the shopper never finished
    checkout) are not imported; a cancelled one is imported and then cancelled."""
    status_id = _status(order)
    if status_id == INCOMPLETE:
        return [Ignore(f"order {order_id} is Incomplete (status 0) in BigCommerce: the shopper "
                       "did not finish checkout; not imported (its statusUpdated out of 0 imports "
                       "it)")]
    if status_id is None:
        return [Ignore(f"order {order_id} has no readable status_id; not imported")]
    products = client.order_products(order_id, hold)
    addresses = client.order_shipping_addresses(order_id, hold)
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
    missing = missing_order(order, order_id)
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


def product_intents(product_id: str, answer) -> list:
    """The product as BigCommerce holds it now (``answer``: the catalog's, None on 404); gone
    means deleted, as of this read."""
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


def delivery_time(value) -> datetime | None:
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


def parse_payload(delivery: Delivery) -> dict:
    payload = delivery.json_object()
    if not isinstance(payload.get("scope"), str):
        raise InvalidDelivery("a BigCommerce delivery is a JSON object with a 'scope'")
    if payload.get("data") is not None and not isinstance(payload["data"], dict):
        raise InvalidDelivery("'data' must be an object")
    return payload

