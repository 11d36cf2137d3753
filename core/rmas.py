"""RMAs: what a channel's refund of a SHIPPED order opens, and what a person does with them.

Runs inside the caller's transaction, as core.orders does: the RMA, its lines, its history and
the order's history change together or not at all.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import events
from .clock import naive_utc, utcnow
from .db import RawInsert
from .intents import RESTOCK_ACTIONS, RecordRefund
from .models import RMA_MOVES, Order, OrderLine, Rma, RmaChange, RmaLine, SalesChannel


class RmaRefused(ValueError):
    """A change a person asked for that the RMA's state does not allow (the message says why)."""


def recorded_as(session: Session, channel_id: int, channel_refund_id: str) -> int | None:
    """The id of the RMA ``channel_refund_id`` opened, if any."""
    known = _known(session)["recorded"]
    if (channel_id, channel_refund_id) in known:
        return known[(channel_id, channel_refund_id)]
    return session.scalars(select(Rma.id).where(
        Rma.channel_id == channel_id, Rma.channel_refund_id == channel_refund_id)).first()


def _known(session: Session) -> dict:
    """What this transaction knows of RMAs (see :func:`prefetch`): ``recorded`` (channel,
    refund id) -> RMA id or None; ``ordered`` order id -> its lines (:func:`_ordered`);
    ``returned`` order id -> channel line id -> quantity in its RMAs. Kept up to date by
    :func:`open_rma`; a key absent is read from the database."""
    return session.info.setdefault("orderhooks.rmas", {"recorded": {}, "ordered": {},
                                                        "returned": {}})


def prefetch(session: Session, refunds) -> None:
    """Read what a batch's refunds need in three queries, not three per refund: whether each
    refund opened an RMA already, and the lines and returned quantities of their orders.
    ``refunds``: (order, RecordRefund) pairs of orders the caller loaded, and on PostgreSQL
    locked, in this transaction — an RMA is only opened under its order's lock, so what is read
    now stays true for the transaction, with what :func:`open_rma` adds."""
    refunds = [(order, intent) for order, intent in refunds if order is not None]
    if not refunds:
        return
    known = _known(session)
    wanted: dict[int, set[str]] = {}
    for order, intent in refunds:
        wanted.setdefault(order.channel_id, set()).add(intent.channel_refund_id)
    for channel_id, refund_ids in wanted.items():
        found = dict(session.execute(select(Rma.channel_refund_id, Rma.id).where(
            Rma.channel_id == channel_id, Rma.channel_refund_id.in_(refund_ids))).all())
        for refund_id in refund_ids:
            known["recorded"][(channel_id, refund_id)] = found.get(refund_id)
    order_ids = {order.id for order, _ in refunds} - set(known["ordered"])
    if not order_ids:
        return
    ordered = {order_id: {} for order_id in order_ids}
    for order_id, line_id, quantity, sku in session.execute(
            select(OrderLine.order_id, OrderLine.channel_line_id, OrderLine.quantity,
                   OrderLine.sku).where(OrderLine.order_id.in_(order_ids))
            .order_by(OrderLine.order_id, OrderLine.id)):
        _add_line(ordered[order_id], line_id, quantity, sku)
    returned = {order_id: {} for order_id in order_ids}
    for order_id, line_id, quantity in session.execute(
            select(Rma.order_id, RmaLine.channel_line_id, func.sum(RmaLine.quantity))
            .join(Rma, Rma.id == RmaLine.rma_id).where(Rma.order_id.in_(order_ids))
            .group_by(Rma.order_id, RmaLine.channel_line_id)):
        if line_id is not None:
            returned[order_id][line_id] = int(quantity or 0)
    known["ordered"].update(ordered)
    known["returned"].update(returned)


def _action(channel: SalesChannel, action: str | None) -> str | None:
    # The refund's restock data decides the action only where the merchant asked for it.
    return action if channel.refund_restock_actions else None


_INSERT_RMA = RawInsert(Rma.__table__, (
    "channel_id", "order_id", "channel_refund_id", "status", "note", "warning", "delivery_id",
    "refunded_at", "created_at", "updated_at"), returning="id")
_INSERT_RMA_LINES = RawInsert(RmaLine.__table__, (
    "rma_id", "channel_line_id", "sku", "quantity", "amount", "action"))
_INSERT_RMA_CHANGE = RawInsert(RmaChange.__table__, (
    "rma_id", "at", "event", "delivery_id", "actor", "message"))


def open_rma(session: Session, channel: SalesChannel, order: Order, intent: RecordRefund, *,
             delivery_id: int | None) -> tuple[int, str | None]:
    """Open the RMA for ``intent`` (the rules allowed it); returns its id and warning. Lines
    the order does not have, and quantities beyond what the order shipped (counting its
    earlier RMAs), are kept and flagged in ``warning``: a person looks, nothing is dropped.
    Rows are INSERTed at once (no ORM objects, no flush of the session): a batch opens
    hundreds."""
    ordered = _ordered(session, order)
    warning = _warning(session, order, intent, ordered)
    now = utcnow()
    # Statements built once, run on the session's connection (core.db.RawInsert): no ORM
    # bulk machinery and no statement built per refund.
    rma_id = _INSERT_RMA.one(session, {
        "channel_id": channel.id, "order_id": order.id,
        "channel_refund_id": intent.channel_refund_id, "status": "open", "note": intent.note,
        "warning": warning, "delivery_id": delivery_id,
        "refunded_at": naive_utc(intent.occurred_at) if intent.occurred_at else None,
        "created_at": now, "updated_at": now})
    # A refund that names only the order line (BigCommerce) takes the line's SKU. Written
    # now, and added to what the transaction knows: the next refund of this order in the
    # batch counts these lines.
    lines = [{"channel_line_id": line.channel_line_id,
              "sku": line.sku or ordered.get(line.channel_line_id, (0, None))[1],
              "quantity": line.quantity, "amount": line.amount,
              "action": _action(channel, line.action)} for line in intent.lines]
    _INSERT_RMA_LINES.many(session, [{"rma_id": rma_id, **line} for line in lines])
    known = _known(session)
    known["recorded"][(channel.id, intent.channel_refund_id)] = rma_id
    if order.id in known["returned"]:
        returned = known["returned"][order.id]
        for line in lines:
            if line["channel_line_id"] is not None:
                returned[line["channel_line_id"]] = (returned.get(line["channel_line_id"], 0)
                                                     + line["quantity"])
    message = f"opened from refund {intent.channel_refund_id} ({len(intent.lines)} lines)"
    if warning:
        message += f"; warning: {warning}"
    _INSERT_RMA_CHANGE.one(session, {"rma_id": rma_id, "at": now, "event": "created",
                                     "delivery_id": delivery_id, "actor": "worker",
                                     "message": message})
    # The refund's note is free text that may name the customer: it stays on the RMA, where a
    # privacy request blanks it, and out of the event, whose copies receivers keep.
    events.emit(session, "rma.created", {
        "rma": {"id": rma_id, "channel_id": channel.id, "order_id": order.id,
                "channel_order_id": order.channel_order_id,
                "channel_refund_id": intent.channel_refund_id, "status": "open",
                "warning": warning, "lines": lines},
        "delivery_id": delivery_id}, channel_id=channel.id, order_key=events.order_key(order))
    return rma_id, warning


def forget_lines(session: Session, order_id: int) -> None:
    """The order's lines changed in this transaction: read them again when next needed."""
    _known(session)["ordered"].pop(order_id, None)


def _ordered(session: Session, order: Order) -> dict[str, tuple[int, str | None]]:
    """The order's lines by channel line id: (quantity, SKU)."""
    known = _known(session)["ordered"]
    if order.id in known:
        return known[order.id]
    ordered: dict[str, tuple[int, str | None]] = {}
    for line_id, quantity, sku in session.execute(
            select(OrderLine.channel_line_id, OrderLine.quantity, OrderLine.sku)
            .where(OrderLine.order_id == order.id).order_by(OrderLine.id)):
        _add_line(ordered, line_id, quantity, sku)
    return ordered


def _add_line(ordered: dict, line_id: str | None, quantity: int, sku: str | None) -> None:
    if line_id is not None:
        before = ordered.get(line_id, (0, sku))
        ordered[line_id] = (before[0] + quantity, before[1] or sku)


def _warning(session: Session, order: Order, intent: RecordRefund,
             ordered: dict[str, tuple[int, str | None]]) -> str | None:
    shipped = {line_id: quantity for line_id, (quantity, _) in ordered.items()}
    known = {line.channel_line_id for line in intent.lines} & set(shipped)
    returned = _known(session)["returned"].get(order.id)
    if returned is None:
        returned = dict(session.execute(
            select(RmaLine.channel_line_id, func.sum(RmaLine.quantity))
            .join(Rma, Rma.id == RmaLine.rma_id)
            .where(Rma.order_id == order.id, RmaLine.channel_line_id.in_(known))
            .group_by(RmaLine.channel_line_id)).all()) if known else {}
    problems = []
    asked: dict[str | None, int] = {}
    for line in intent.lines:
        asked[line.channel_line_id] = asked.get(line.channel_line_id, 0) + line.quantity
    for line_id, quantity in asked.items():
        if line_id is None:
            problems.append("a line names no order line")
        elif line_id not in shipped:
            problems.append(f"line {line_id} is not on the order")
        elif (returned.get(line_id) or 0) + quantity > shipped[line_id]:
            problems.append(f"line {line_id}: {int(returned.get(line_id) or 0) + quantity} "
                            f"refunded in all, more than the {shipped[line_id]} shipped")
    return "; ".join(problems) or None


def fill_unset_actions(session: Session, channel: SalesChannel, rma: Rma,
                       intent: RecordRefund, *, delivery_id: int | None) -> int:
    """A refund delivered again (e.g. replayed after the merchant turned
    ``refund_restock_actions`` on): lines whose action is still unset take the refund's, on an
    RMA still open. An action a person chose is never overwritten. Returns how many were set."""
    if rma.status != "open" or not channel.refund_restock_actions:
        return 0
    wanted = {}
    for line in intent.lines:
        if line.action is not None:
            wanted.setdefault((line.channel_line_id, line.sku), line.action)
    filled = 0
    for line in rma.lines:
        action = wanted.get((line.channel_line_id, line.sku))
        if line.action is None and action is not None:
            line.action = action
            filled += 1
    if filled:
        session.add(RmaChange(rma_id=rma.id, event="actions_set", delivery_id=delivery_id,
                              message=f"{filled} unset actions taken from refund "
                                      f"{intent.channel_refund_id} delivered again"))
    return filled


def set_line_action(session: Session, rma: Rma, line_id: int, action: str, *,
                    actor: str = "admin-api") -> RmaLine:
    """A person sets a line's action (Reinsert / Write Off) while the RMA is not closed."""
    if action not in RESTOCK_ACTIONS:
        raise RmaRefused(f"action {action!r} is none of {', '.join(RESTOCK_ACTIONS)}")
    if rma.status in ("closed", "cancelled"):
        raise RmaRefused(f"RMA {rma.id} is {rma.status}; its actions can no longer change")
    line = next((line for line in rma.lines if line.id == line_id), None)
    if line is None:
        raise LookupError(f"RMA {rma.id} has no line {line_id}")
    if line.action != action:
        session.add(RmaChange(rma_id=rma.id, event="action_set", actor=actor,
                              message=f"line {line.id} ({line.sku or line.channel_line_id}): "
                                      f"{line.action or 'unset'} -> {action}"))
        line.action = action
    return line


def move(session: Session, rma: Rma, status: str, *, actor: str = "admin-api") -> None:
    """A person moves the RMA on (see ``RMA_MOVES``). Closing needs every line's action set:
    a closed RMA says what became of each item."""
    if status == rma.status:
        return
    if status not in RMA_MOVES.get(rma.status, ()):
        allowed = ", ".join(RMA_MOVES.get(rma.status, ())) or "none"
        raise RmaRefused(f"RMA {rma.id} is {rma.status}; it may move to: {allowed}")
    if status == "closed":
        unset = [line.id for line in rma.lines if line.action is None]
        if unset:
            raise RmaRefused(f"RMA {rma.id} has lines with no action ({', '.join(map(str, unset))}"
                             "); set Reinsert or Write Off on each before closing it")
    session.add(RmaChange(rma_id=rma.id, event="status_changed", actor=actor,
                          message=f"{rma.status} -> {status}"))
    rma.status = status
    rma.updated_at = utcnow()
