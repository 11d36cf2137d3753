"""Order bodies as intents: orders/create and orders/paid (CreateOrder, RecordPayment),
orders/cancelled (Cancel), the fulfilment topics (Fulfill) and refunds/create (RecordRefund).
Pure functions of a body whose shape :func:`plugins.shopify.payloads.shape_problem` accepted;
reading the Admin API is the adapter's."""
from __future__ import annotations

from datetime import datetime

from orderhooks import (Address, Cancel, Channel, CreateOrder, Customer, Fulfill, Ignore,
                        OrderLine, RecordPayment, RecordRefund, RefundLine, REINSERT, Shipment,
                        ShipmentItem, WRITE_OFF)

from .topics import (ORDERS_CANCELLED, ORDERS_FULFILLED, ORDERS_PAID,
                     ORDERS_PARTIALLY_FULFILLED)
from .values import _id, _int, _list, _money, _text, parse_time

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


def cancel_intent(order: dict, when: datetime | None):
    """orders/cancelled: a Cancel with Shopify's ``cancel_reason``, when the body is a cancelled
    order (its ``cancelled_at`` is set); else an Ignore saying so."""
    order_id = _id(order.get("id"))
    if order.get("cancelled_at") in (None, ""):
        return Ignore(f"{ORDERS_CANCELLED}: order {order_id} has no cancelled_at, so the body "
                      "is not a cancelled order; nothing done")
    return Cancel(order_id, reason=_text(order.get("cancel_reason")), occurred_at=when)


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
