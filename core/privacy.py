"""Privacy requests: remove a customer's (or a whole channel's) personal data.

What is blanked, for the orders concerned (docs/privacy.md says the same to merchants):

* the order's customer and its shipping and billing addresses;
* the raw bodies of the deliveries about those orders, and of deliveries about no order that
  name the customer;
* the refund notes (free text a merchant or customer wrote) of the orders' RMAs, wherever
  orderhooks keeps a copy: the RMA, its ``rma.created`` event, the intents recorded on the
  refund's delivery, and a refund held until its order is imported.

Everything else an order or RMA keeps is the channel's structured data (ids, SKUs, amounts,
statuses) or orderhooks' own wording, and stays.
"""
from __future__ import annotations

import orjson
from sqlalchemy import Text, cast, select, update

from .clock import utcnow
from .intents import RedactPersonalData
from .models import Event, Order, PendingIntent, Rma, RmaChange, SalesChannel, StoredDelivery
from .orders import add_history

#: What an order's customer and addresses are called in its history.
CUSTOMER_DATA = "the customer and the addresses"


def redact(session, channel: SalesChannel, request: RedactPersonalData, *,
           exclude_delivery: int | None = None) -> str:
    """Blank stored delivery bodies and order customer data concerned. Returns what was done."""
    # The worker records a batch without autoflush: what earlier deliveries of this batch wrote
    # (an RMA's event, a held refund, recorded intents) must be in the database for the
    # queries below to find it.
    session.flush()
    orders_q = select(Order).where(Order.channel_id == channel.id)
    deliveries_q = update(StoredDelivery).where(StoredDelivery.channel_id == channel.id,
                                          StoredDelivery.body.is_not(None))
    if exclude_delivery is not None:
        deliveries_q = deliveries_q.where(StoredDelivery.id != exclude_delivery)
    if not request.everything:
        ids = [str(i) for i in request.channel_order_ids]
        orders = [o for o in session.scalars(orders_q.execution_options(yield_per=1000))
                  if o.channel_order_id in ids or _matches(o.customer, request)]
        ids = sorted({*ids, *(o.channel_order_id for o in orders)})
        deliveries_q = deliveries_q.where(StoredDelivery.channel_order_id.in_(ids))
    else:
        ids = None
        orders = list(session.scalars(orders_q))
    notes = _blank_refund_notes(session, channel, None if ids is None else orders, ids)
    for order in orders:
        removed = []
        if order.customer or order.shipping_address or order.billing_address:
            order.customer = order.shipping_address = order.billing_address = None
            removed.append(CUSTOMER_DATA)
        if notes.get(order.id):
            removed.append(f"{notes[order.id]} refund note(s)")
        if removed:
            add_history(session, order, event="redacted", old_status=order.status,
                        new_status=order.status,
                        message="customer personal data removed on request "
                                f"({' and '.join(removed)})")
    count = session.execute(deliveries_q.values(body=None, body_purged_at=utcnow())).rowcount
    if not request.everything:
        count += _redact_unaddressed(session, channel, request, exclude_delivery)
    scope = "all of the shop's" if request.everything else "the customer's"
    return (f"redacted {scope} personal data: {len(orders)} order(s), "
            f"{count} stored delivery body(ies), {sum(notes.values())} refund note(s)")


def _blank_refund_notes(session, channel: SalesChannel, orders: list[Order] | None,
                        channel_order_ids: list[str] | None) -> dict[int, int]:
    """Blank the refund notes of ``orders``' RMAs (None: every RMA of the channel) and the
    copies kept of them: the ``rma.created`` events, the intents recorded on deliveries about
    those orders, and refunds held for them (by ``channel_order_ids``; an order not imported
    yet has no row). Returns how many RMA notes were blanked, by order id."""
    rmas = select(Rma).where(Rma.channel_id == channel.id, Rma.note.is_not(None))
    events = select(Event).where(Event.channel_id == channel.id, Event.type == "rma.created")
    recorded = select(StoredDelivery.id, StoredDelivery.intents).where(
        StoredDelivery.channel_id == channel.id, StoredDelivery.intents.is_not(None),
        # only rows whose recorded intents have a note at all: a cheap text filter first
        cast(StoredDelivery.intents, Text).like('%"note"%'))
    held = select(PendingIntent).where(PendingIntent.channel_id == channel.id)
    if orders is not None:
        order_ids = [order.id for order in orders]
        rmas = rmas.where(Rma.order_id.in_(order_ids))
        events = events.where(Event.order_key.in_([f"order:{i}" for i in order_ids]))
        recorded = recorded.where(StoredDelivery.channel_order_id.in_(channel_order_ids))
        held = held.where(PendingIntent.channel_order_id.in_(channel_order_ids))
    counts: dict[int, int] = {}
    for rma in session.scalars(rmas):
        rma.note = None
        session.add(RmaChange(rma_id=rma.id, event="redacted", actor="privacy",
                              message="refund note removed on a privacy request"))
        counts[rma.order_id] = counts.get(rma.order_id, 0) + 1
    for event in session.scalars(events):
        rma = (event.data or {}).get("rma")
        if isinstance(rma, dict) and rma.get("note") is not None:
            event.data = {**event.data, "rma": {**rma, "note": None}}
    for delivery_id, intents in session.execute(recorded).all():
        blanked = [_without_note(i) for i in intents or ()]
        if blanked != intents:
            session.execute(update(StoredDelivery).where(StoredDelivery.id == delivery_id)
                            .values(intents=blanked))
    for row in session.scalars(held):
        if _without_note(row.intent) != row.intent:
            row.intent = _without_note(row.intent)
    return counts


def _without_note(intent):
    """A recorded intent (``to_dict`` form) with its refund note blanked."""
    if (isinstance(intent, dict) and intent.get("kind") == "RecordRefund"
            and intent.get("note") is not None):
        return {**intent, "note": None}
    return intent


def _matches(customer: dict | None, request: RedactPersonalData) -> bool:
    if not isinstance(customer, dict):
        return False
    email = customer.get("email")
    return (_plain_id(customer.get("id")) in request.customer_ids
            or (isinstance(email, str)
                and email.strip().lower() in {e.strip().lower() for e in request.emails}))


def _redact_unaddressed(session, channel: SalesChannel, request: RedactPersonalData,
                        exclude_delivery: int | None) -> int:
    """Deliveries about no order (e.g. a data request) that name the customer: blank them too.
    A body names the customer when one of its objects is the customer (``customer`` with that
    id, ``customer_id``) or one of its values is the customer's email exactly: another
    customer's body merely containing the same digits or a longer address is left alone."""
    if not (request.customer_ids or request.emails):
        return 0
    query = select(StoredDelivery.id, StoredDelivery.body).where(
        StoredDelivery.channel_id == channel.id, StoredDelivery.channel_order_id.is_(None),
        StoredDelivery.body.is_not(None))
    if exclude_delivery is not None:
        query = query.where(StoredDelivery.id != exclude_delivery)
    ids = set(request.customer_ids)
    emails = {e.strip().lower() for e in request.emails if e.strip()}
    hits = [delivery_id for delivery_id, body in session.execute(query)
            if _names_customer(body, ids, emails)]
    if hits:
        session.execute(update(StoredDelivery).where(StoredDelivery.id.in_(hits))
                        .values(body=None, body_purged_at=utcnow()))
    return len(hits)


def _names_customer(body: bytes, ids: set[str], emails: set[str]) -> bool:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False  # not JSON: it names nobody in a way that can be told
    stack = [document]
    while stack:  # iterative: a deeply nested body cannot exhaust the stack
        node = stack.pop()
        if isinstance(node, dict):
            customer = node.get("customer")
            if isinstance(customer, dict) and _plain_id(customer.get("id")) in ids:
                return True
            if _plain_id(node.get("customer_id")) in ids:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node.strip().lower() in emails:
            return True
    return False


def _plain_id(value) -> str | None:
    """An id as the text a request names it by (``gid://shopify/Customer/7`` → ``7``)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text.rsplit("/", 1)[-1] if text.startswith("gid://") else text
