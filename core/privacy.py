"""Privacy requests: remove a customer's (or a whole channel's) personal data."""
from __future__ import annotations

import orjson
from sqlalchemy import select, update

from .clock import utcnow
from .intents import RedactPersonalData
from .models import StoredDelivery, Order, SalesChannel
from .orders import add_history


def redact(session, channel: SalesChannel, request: RedactPersonalData, *,
           exclude_delivery: int | None = None) -> str:
    """Blank stored delivery bodies and order customer data concerned. Returns what was done."""
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
        orders = list(session.scalars(orders_q))
    for order in orders:
        if order.customer or order.shipping_address or order.billing_address:
            order.customer = order.shipping_address = order.billing_address = None
            add_history(session, order, event="redacted", old_status=order.status,
                        new_status=order.status,
                        message="customer personal data removed on request "
                                "(the customer and the addresses)")
    count = session.execute(deliveries_q.values(body=None, body_purged_at=utcnow())).rowcount
    if not request.everything:
        count += _redact_unaddressed(session, channel, request, exclude_delivery)
    scope = "all of the shop's" if request.everything else "the customer's"
    return (f"redacted {scope} personal data: {len(orders)} order(s), "
            f"{count} stored delivery body(ies)")


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
