"""Applying intents to routed orders under the status rules, and releasing held intents.

Everything here runs inside the caller's transaction: the order, its history, the held intents and
the delivery's outcome change together or not at all.
"""
from __future__ import annotations

import hashlib
import dataclasses
import logging
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, make_transient_to_detached

from . import events, rmas, rules
from . import statuses as st
from .clock import naive_utc, utcnow
from .db import RawInsert
from .intents import (Cancel, CreateOrder, Fulfill, RecordPayment, RecordRefund, Shipment,
                      from_dict, to_dict)
from .models import (StoredDelivery, Order, OrderChange, OrderLine, PendingIntent, Rma,
                     SalesChannel)

log = logging.getLogger("orderhooks.orders")


def find_order(session: Session, channel_id: int, channel_order_id: str, *,
               lock: bool = False) -> Order | None:
    query = select(Order).where(Order.channel_id == channel_id,
                                Order.channel_order_id == str(channel_order_id))
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def _lock_order_key(session: Session, channel_id: int, channel_order_id: str) -> bool:
    """PostgreSQL: a transaction-scoped advisory lock on (channel, channel order id), taken by a
    worker about to hold an intent for an order it cannot see and by the order's import before
    it releases held intents, so one of them always sees the other's commit. SQLite serialises
    every transaction (BEGIN IMMEDIATE): nothing to do. Returns whether a lock was taken."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    digest = hashlib.sha256(f"orderhooks:order:{channel_id}:{channel_order_id}".encode())
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": int.from_bytes(digest.digest()[:8], "big", signed=True)})
    return True


def merge_shipments(existing: list[dict], new: tuple[Shipment, ...]) -> tuple[list[dict], int]:
    """Existing shipments plus the new ones not already recorded (by channel id or tracking
    number). Returns the merged list and how many were added."""
    merged = list(existing or [])
    keys = {Shipment.from_dict(s).key for s in merged}
    added = 0
    for shipment in new:
        if shipment.key not in keys:
            merged.append(shipment.to_dict())
            keys.add(shipment.key)
            added += 1
    return merged, added


#: ``cache[(HELD, channel_id)]``: the channel's order ids with intents held for them, among
#: those a batch imports (the worker fills it in the batch's transaction); absent: unknown.
HELD = "held"


def _may_have_held(channel: SalesChannel, channel_order_id: str, cache: dict | None) -> bool:
    known = cache.get((HELD, channel.id)) if cache is not None else None
    return known is None or channel_order_id in known


def _load(session: Session, channel: SalesChannel, channel_order_id: str,
          cache: dict | None) -> Order | None:
    """The order (locked), from ``cache`` when the batch loaded it. For an order not found,
    PostgreSQL's advisory lock on its key is taken and it is looked for again: its import,
    holding the same lock, either committed before (found now) or waits for us."""
    key = (channel.id, str(channel_order_id))
    if cache is not None and key in cache:
        order = cache[key]
    else:
        order = find_order(session, channel.id, channel_order_id, lock=True)
    if order is None and _lock_order_key(session, channel.id, channel_order_id):
        order = find_order(session, channel.id, channel_order_id, lock=True)
        if cache is not None:
            cache[key] = order
    return order


def apply_intent(session: Session, channel: SalesChannel,
                 intent: Cancel | Fulfill | RecordPayment, *,
                 delivery_id: int | None, config: dict,
                 cache: dict | None = None) -> rules.Decision:
    """Decide and carry out what ``intent`` does to its order. Returns the decision.
    ``cache`` maps ``(channel_id, channel_order_id)`` to orders already loaded (and locked)."""
    order = _load(session, channel, intent.channel_order_id, cache)
    decision, merged = _decide(session, channel, order, intent)
    if decision.outcome == rules.DEFERRED:
        held = _hold(session, channel, order, intent, decision, delivery_id, config)
        if cache is not None and (HELD, channel.id) in cache:
            cache[(HELD, channel.id)].add(held.channel_order_id)
        return dataclasses.replace(decision, held_until=held.expires_at)
    if order is not None:
        _carry_out(session, channel, order, intent, decision, merged, delivery_id, config)
        if isinstance(intent, RecordPayment) and decision.new_status:
            # The order left AWAITING_PAYMENT: what was held for it is decided in its new
            # status, in the same transaction.
            session.flush()
            release_held(session, channel, order, config)
    return decision


def _decide(session: Session, channel: SalesChannel, order: Order | None, intent):
    if isinstance(intent, RecordRefund):
        rma_id = (rmas.recorded_as(session, channel.id, intent.channel_refund_id)
                  if order is not None else None)
        return rules.decide_refund(intent, order.status if order else None,
                                   recorded_as=rma_id), rma_id
    if isinstance(intent, RecordPayment):
        return rules.decide_payment(intent, order.status if order else None), None
    merged, added = (None, 0)
    if isinstance(intent, Fulfill) and order is not None:
        merged, added = merge_shipments(order.shipments, intent.shipments)
    decision = rules.decide(
        intent, order.status if order else None,
        valid_cancellation=channel.valid_cancellation_statuses or [],
        valid_fulfillment=channel.valid_fulfillment_statuses or [],
        last_event_at=order.last_event_at if order else None,
        new_shipments=added > 0)
    return decision, merged


def _carry_out(session: Session, channel: SalesChannel, order: Order, intent,
               decision: rules.Decision, merged: list[dict] | None, delivery_id: int | None,
               config: dict) -> None:
    if isinstance(intent, RecordPayment):
        _record_payment(session, channel, order, intent, decision, delivery_id, config)
        return
    if isinstance(intent, RecordRefund):
        _record_refund(session, channel, order, intent, decision, merged, delivery_id)
        return
    old = order.status
    if decision.outcome == rules.APPLIED:
        if decision.record_shipments and merged is not None:
            order.shipments = merged
        if decision.new_status:
            order.status = decision.new_status
        # Only status changes move the high-water mark: recording a parcel must not make an
        # earlier "order fulfilled" look stale.
        if decision.new_status and intent.occurred_at is not None:
            moment = naive_utc(intent.occurred_at)
            if order.last_event_at is None or moment > order.last_event_at:
                order.last_event_at = moment
        event = {st.CANCELLED: "cancelled", st.SHIPPED: "shipped"}.get(decision.new_status or "",
                                                                        "shipments_recorded")
    else:
        event = "ignored"
    add_history(session, order, event=event, old_status=old,
                new_status=order.status, delivery_id=delivery_id,
                message=decision.reason)
    _emit_order(session, ORDER_EVENT_TYPES[event], order, old, delivery_id, decision.reason,
                intent=type(intent).__name__.lower())


#: The event each line of an order's history that a delivery caused is published as.
ORDER_EVENT_TYPES = {"cancelled": "order.cancelled", "shipped": "order.shipped",
                     "shipments_recorded": "order.shipment_recorded", "ignored": "order.ignored"}


def _emit_order(session: Session, type: str, order: Order, old_status: str | None,
                delivery_id: int | None, reason: str, intent: str | None = None,
                lines: list | None = None) -> None:
    data = {"order": events.order_view(order), "previous_status": old_status,
            "delivery_id": delivery_id, "reason": reason}
    if lines is not None:
        data["order"]["lines"] = lines
    if intent is not None:
        data["intent"] = intent
    events.emit(session, type, data, channel_id=order.channel_id,
                order_key=events.order_key(order))


def _hold(session: Session, channel: SalesChannel, order: Order | None, intent,
          decision: rules.Decision, delivery_id: int | None, config: dict) -> PendingIntent:
    window = (config["UNPROCESSED_WINDOW_SECONDS"] if order is not None
              else config["UNKNOWN_ORDER_WINDOW_SECONDS"])
    held = PendingIntent(channel_id=channel.id, channel_order_id=str(intent.channel_order_id),
                         delivery_id=delivery_id, intent=to_dict(intent), reason=decision.reason,
                         expires_at=utcnow() + timedelta(seconds=window))
    session.add(held)
    if order is not None:
        add_history(session, order, event="deferred", old_status=order.status,
                    new_status=order.status, delivery_id=delivery_id,
                    message=decision.reason)
    return held


def release_held(session: Session, channel: SalesChannel, order: Order, config: dict) -> int:
    """Re-decide the intents held for ``order`` now that it arrived or changed status.
    Called in the same transaction as the change that triggered it. A held payment may move
    the order on (AWAITING_PAYMENT → UNPROCESSED): the rest are then decided again in its new
    status. Returns how many ran."""
    released = 0
    while True:
        status = order.status
        released += _release_pass(session, channel, order, config)
        session.flush()
        if order.status == status:
            return released


def _release_pass(session: Session, channel: SalesChannel, order: Order, config: dict) -> int:
    held = session.scalars(select(PendingIntent).where(
        PendingIntent.channel_id == channel.id,
        PendingIntent.channel_order_id == order.channel_order_id,
    ).order_by(PendingIntent.id).with_for_update()).all()
    released = 0
    for pending in held:
        intent = from_dict(pending.intent)
        decision, merged = _decide(session, channel, order, intent)
        if decision.outcome == rules.DEFERRED:
            # e.g. it arrived as UNPROCESSED: wait for processing, within that window now.
            if pending.reason != decision.reason:
                pending.reason = decision.reason
                pending.expires_at = utcnow() + timedelta(
                    seconds=config["UNPROCESSED_WINDOW_SECONDS"])
                _set_delivery_outcome(session, pending.delivery_id, rules.DEFERRED,
                                      decision.reason, deferred_until=pending.expires_at)
            continue
        _carry_out(session, channel, order, intent, decision, merged, pending.delivery_id,
                   config)
        _set_delivery_outcome(session, pending.delivery_id, decision.outcome,
                              f"released after being held: {decision.reason}")
        session.delete(pending)
        released += 1
    return released


def expire_held(session: Session, *, limit: int = 500) -> int:
    """Give up on held intents past their window; the delivery records why."""
    now = utcnow()
    expired = session.scalars(select(PendingIntent).where(PendingIntent.expires_at <= now)
                              .order_by(PendingIntent.expires_at).limit(limit)).all()
    for pending in expired:
        order = find_order(session, pending.channel_id, pending.channel_order_id)
        if order is None:
            reason = (f"gave up: order {pending.channel_order_id} was never imported "
                      f"(held since {pending.created_at.isoformat()}Z)")
        else:
            reason = (f"gave up: order stayed {order.status} until "
                      f"{pending.expires_at.isoformat()}Z")
            add_history(session, order, event="ignored", old_status=order.status,
                        new_status=order.status, delivery_id=pending.delivery_id,
                        message=reason)
            _emit_order(session, "order.ignored", order, order.status, pending.delivery_id,
                        reason, intent=str(pending.intent.get("kind", "")).lower() or None)
        _set_delivery_outcome(session, pending.delivery_id, rules.IGNORED, reason)
        session.delete(pending)
    return len(expired)


def _set_delivery_outcome(session: Session, delivery_id: int | None, outcome: str, reason: str,
                          deferred_until=None) -> None:
    if delivery_id is None:
        return
    delivery = session.get(StoredDelivery, delivery_id)
    if delivery is not None:
        delivery.outcome, delivery.reason = outcome, reason
        delivery.deferred_until = deferred_until


def _record_payment(session: Session, channel: SalesChannel, order: Order,
                    intent: RecordPayment, decision: rules.Decision, delivery_id: int | None,
                    config: dict) -> None:
    """Every payment lands in the order's payment history, applied or not."""
    entry = {"at": (naive_utc(intent.occurred_at) if intent.occurred_at else utcnow())
             .isoformat(), "amount": intent.amount, "currency": intent.currency or order.currency,
             "status": intent.status, "outcome": str(decision.outcome),
             "reason": decision.reason, "delivery_id": delivery_id}
    order.payments = [*(order.payments or []), entry]
    old = order.status
    if decision.new_status:
        order.status = decision.new_status
    add_history(session, order,
                event="paid" if decision.new_status else "payment_ignored",
                old_status=old, new_status=order.status, delivery_id=delivery_id,
                message=decision.reason)
    _emit_order(session, "order.paid" if decision.new_status else "order.ignored", order, old,
                delivery_id, decision.reason, intent="recordpayment")


def _record_refund(session: Session, channel: SalesChannel, order: Order, intent: RecordRefund,
                   decision: rules.Decision, existing, delivery_id: int | None) -> None:
    """Every refund lands in the order's history: the RMA it opened, or why it opened none."""
    if decision.outcome == rules.APPLIED:
        rma_id, warning = rmas.open_rma(session, channel, order, intent,
                                        delivery_id=delivery_id)
        event = "rma_created"
        message = f"{decision.reason} (RMA {rma_id})" + (
            f"; warning: {warning}" if warning else "")
    else:
        event, message = "refund_ignored", decision.reason
        if existing is not None:
            filled = rmas.fill_unset_actions(session, channel, session.get(Rma, existing),
                                             intent, delivery_id=delivery_id)
            if filled:
                message += f"; {filled} unset actions taken from it"
    add_history(session, order, event=event, old_status=order.status,
                new_status=order.status, delivery_id=delivery_id, message=message)


def import_order(session: Session, channel: SalesChannel, intent: CreateOrder, *,
                 delivery_id: int | None, config: dict,
                 cache: dict | None = None) -> rules.Decision:
    """Import the channel's order (CreateOrder). Idempotent: an order that exists already
    (created by an earlier delivery, or by the admin API) keeps its status; details it lacks
    (lines, addresses, totals) are filled in from the channel's, once."""
    order = _load(session, channel, intent.channel_order_id, cache)
    if order is not None:
        if order.placed_at is None and not order.order_number and not order.totals:
            _fill_details(session, order, intent)
            add_history(session, order, event="details_imported",
                        old_status=order.status, new_status=order.status,
                        delivery_id=delivery_id,
                        message="order details imported from the channel")
            return rules.Decision(rules.APPLIED, f"order already existed as {order.status}; "
                                                 "its details were imported from the channel")
        return rules.Decision(rules.IGNORED, f"order already imported (now {order.status}); "
                                             "nothing to change")
    status = rules.first_status(intent.paid)
    paid = f"payment {intent.payment_status}" if intent.payment_status else (
        "paid" if intent.paid else "not paid")
    reason = f"order imported from the channel as {status} ({paid})"
    order = _insert_order(session, {
        "channel_id": channel.id, "channel_order_id": intent.channel_order_id,
        "status": status, "shipments": [], "payments": [], **_details(intent)})
    add_history(session, order, event="created", new_status=status,
                delivery_id=delivery_id, message=reason)
    lines = [_line_row(None, line) for line in intent.lines]
    # One executemany, no ORM objects: an order may have hundreds of lines.
    _INSERT_LINES.many(session, [{"order_id": order.id, **line} for line in lines])
    _emit_order(session, "order.created", order, None, delivery_id, reason,
                intent="createorder", lines=lines)
    if cache is not None:
        cache[(channel.id, order.channel_order_id)] = order
    # PostgreSQL: under the order key's lock, a worker that held an intent for this order has
    # committed it, so look; SQLite: the batch's own view of what is held is exact.
    locked = _lock_order_key(session, channel.id, order.channel_order_id)
    held_here = _may_have_held(channel, order.channel_order_id, cache)
    if held_here:
        # an intent this batch held for the order is still pending in the session: the
        # release reads held intents from the database
        session.flush()
    if locked or held_here:
        release_held(session, channel, order, config)
    return rules.Decision(rules.APPLIED, reason, new_status=status)


_INSERT_ORDER = RawInsert(Order.__table__, (
    "channel_id", "channel_order_id", "status", "shipments", "payments", "order_number",
    "placed_at", "currency", "totals", "customer", "shipping_address", "billing_address",
    "created_at", "updated_at", "last_event_at"), returning="id")
_INSERT_LINES = RawInsert(OrderLine.__table__, (
    "order_id", "channel_line_id", "product_id", "variant_id", "sku", "name", "quantity",
    "unit_price"))
_INSERT_CHANGE = RawInsert(OrderChange.__table__, (
    "order_id", "at", "event", "old_status", "new_status", "delivery_id", "message"))


def add_history(session: Session, order: Order, *, event: str, old_status: str | None = None,
                new_status: str | None = None, delivery_id: int | None = None,
                message: str = "") -> None:
    """A line of ``order``'s history, written in the session's transaction at once (or with
    the batch's other lines before its next statement: ``core.db.defer_inserts``). Every
    line goes this way, so an order's history is in the order its lines were added (by id)
    whatever the ORM flushes later."""
    if order.id is None:  # an order the session has not written yet
        session.flush()
    _INSERT_CHANGE.add(session, {"order_id": order.id, "at": utcnow(), "event": event,
                                 "old_status": old_status, "new_status": new_status,
                                 "delivery_id": delivery_id, "message": message})


def _insert_order(session: Session, row: dict) -> Order:
    """The order written at once by an INSERT ... RETURNING id, and made a persistent object
    of the session as if loaded: no flush of the session for it (the batch's other pending
    rows — events, deliveries — are written together at its end) and no ORM bulk machinery."""
    now = utcnow()
    row = {**row, "created_at": now, "updated_at": now, "last_event_at": None}
    order_id = _INSERT_ORDER.one(session, row)
    order = Order(id=order_id, **row)
    make_transient_to_detached(order)
    session.add(order)
    return order


def _line_row(order_id: int | None, line) -> dict:
    """A line as the order_lines table stores it (an event's copy: without ``order_id``)."""
    row = {"order_id": order_id} if order_id is not None else {}
    return {**row, "channel_line_id": line.channel_line_id,
            "product_id": line.product_id, "variant_id": line.variant_id, "sku": line.sku,
            "name": line.name, "quantity": line.quantity, "unit_price": line.unit_price}


def _details(intent: CreateOrder) -> dict:
    """The order's columns the channel's order fills in."""
    return {"order_number": intent.order_number,
            "placed_at": naive_utc(intent.placed_at) if intent.placed_at else None,
            "currency": intent.currency, "totals": dict(intent.totals),
            "customer": intent.customer.to_record() if intent.customer else None,
            "shipping_address": (intent.shipping_address.to_record()
                                 if intent.shipping_address else None),
            "billing_address": (intent.billing_address.to_record()
                                if intent.billing_address else None)}


def _fill_details(session: Session, order: Order, intent: CreateOrder) -> None:
    """An existing order takes the channel's details; a customer it has already stays."""
    customer = order.customer
    for name, value in _details(intent).items():
        setattr(order, name, value)
    order.customer = customer or order.customer
    if intent.lines:
        has_lines = session.scalars(select(OrderLine.id).where(OrderLine.order_id == order.id)
                                    .limit(1)).first()
        if has_lines is None:
            _INSERT_LINES.many(session, [_line_row(order.id, line) for line in intent.lines])
            rmas.forget_lines(session, order.id)


def create_order(session: Session, channel: SalesChannel, intent: CreateOrder, status: str, *,
                 customer: dict | None, config: dict) -> Order:
    """An order the order-routing system registers (``POST /api/v1/orders``) in ``status``,
    with the channel's order as ``intent`` carries it — number, placed-at time, currency,
    totals, addresses and lines, in the columns a channel import fills — and ``customer`` as
    sent. Intents held for it are decided at once, in the same transaction."""
    order = Order(channel_id=channel.id, channel_order_id=intent.channel_order_id,
                  status=status, shipments=[], **{**_details(intent), "customer": customer})
    session.add(order)
    session.flush()
    if intent.lines:
        _INSERT_LINES.many(session, [_line_row(order.id, line) for line in intent.lines])
    add_history(session, order, event="created", new_status=status,
                message=f"order imported as {status}")
    session.flush()
    _lock_order_key(session, channel.id, order.channel_order_id)
    release_held(session, channel, order, config)
    return order


def change_status(session: Session, channel: SalesChannel, order: Order, status: str, *,
                  config: dict, message: str = "status changed in Network Manager") -> None:
    """A status change made in the order-routing system (e.g. processing finished). Held
    intents are re-decided at once, in the same transaction."""
    if status == order.status:
        return
    old, order.status = order.status, status
    add_history(session, order, event="status_changed", old_status=old,
                new_status=status, message=message)
    session.flush()
    release_held(session, channel, order, config)
