"""/api/v1/orders: routed orders, their status and history."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import orders, products
from ..db import get_session
from ..intents import Address, CreateOrder, InvalidIntent
from ..intents import OrderLine as IntentLine
from ..models import Order, OrderLine, PendingIntent, Rma, SalesChannel
from . import paging
from .lookup import get_or_404
from .schemas import (OrderCreateSchema, OrderDetailSchema, OrderPatchSchema, OrderQuerySchema,
                      OrderSchema)

PREFIX = "/orders"
blp = Blueprint("orders", __name__, description="Routed orders: status, shipments, history")


def _detail(session, order: Order) -> dict:
    held = session.scalars(select(PendingIntent).where(
        PendingIntent.channel_id == order.channel_id,
        PendingIntent.channel_order_id == order.channel_order_id)
        .order_by(PendingIntent.id)).all()
    lines = list(order.lines)
    linked = products.link_lines(session, order.channel_id, lines)
    return {**{c.key: getattr(order, c.key) for c in Order.__table__.columns},
            "lines": [{**{c.key: getattr(line, c.key) for c in OrderLine.__table__.columns},
                       "catalog": _catalog(entry)} for line, entry in zip(lines, linked)],
            "history": order.history, "held_intents": held,
            "rmas": session.scalars(select(Rma).where(Rma.order_id == order.id)
                                    .order_by(Rma.id)).all()}


def _catalog(entry) -> dict | None:
    """Where an order line's product is in the channel's catalog (None: not in it)."""
    if entry is None:
        return None
    return {"product_id": entry.product.id,
            "channel_variant_id": (entry.variant.channel_variant_id
                                   if entry.variant is not None else None),
            "title": entry.product.title, "deleted": entry.product.deleted_at is not None}


def _get(session, order_id: int) -> Order:
    return get_or_404(session, Order, order_id, "order")


@blp.route("")
class Orders(MethodView):
    @blp.arguments(OrderQuerySchema, location="query")
    @blp.response(200, OrderSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Find orders by channel, channel order id, status and creation time, oldest first"""
        query = select(Order)
        for name in ("channel_id", "channel_order_id", "status"):
            if args.get(name) is not None:
                query = query.where(getattr(Order, name) == args[name])
        if args.get("created_since") is not None:
            query = query.where(Order.created_at >= args["created_since"])
        if args.get("created_until") is not None:
            query = query.where(Order.created_at < args["created_until"])
        return paging.page(get_session(), query, Order.id, args)

    @blp.arguments(OrderCreateSchema)
    @blp.response(201, OrderDetailSchema, headers={"Location": {
        "description": "The new order's URL", "schema": {"type": "string"}}})
    def post(self, data):
        """Import an order (as the order-routing system downloads it); releases held intents"""
        session = get_session()
        channel = session.get(SalesChannel, data["channel_id"])
        if channel is None or channel.deleted_at is not None:
            abort(422, message=f"no channel {data['channel_id']}"
                               + (" (it was deleted)" if channel is not None else ""),
                  errors={"json": {"channel_id": ["unknown channel"]}})
        if orders.find_order(session, channel.id, data["channel_order_id"]) is not None:
            _already_exists(session, channel.id, data["channel_order_id"])
        try:
            intent = _as_intent(data)
        except InvalidIntent as exc:  # the schema keeps the intents' rules: a last guard
            abort(422, message=str(exc))
        try:
            order = orders.create_order(session, channel, intent, data["status"],
                                        customer=data.get("customer"),
                                        config=current_app.config)
            session.commit()
        except IntegrityError:
            # Another import of the same order committed between our check and our insert.
            session.rollback()
            _already_exists(session, data["channel_id"], data["channel_order_id"])
        session.expire(order, ["lines", "history"])
        return _detail(session, order), {"Location": url_for("orders.OrderById",
                                                             order_id=order.id)}


def _as_intent(data: dict) -> CreateOrder:
    """The body as the channel imports' CreateOrder: one order model, whichever way an order
    arrives (values already checked by OrderCreateSchema, to the intents' rules)."""
    def address(raw):
        return Address(**raw) if raw else None
    return CreateOrder(
        channel_order_id=data["channel_order_id"], order_number=data.get("order_number"),
        placed_at=data.get("placed_at"), currency=data.get("currency"),
        totals=data.get("totals") or {},
        shipping_address=address(data.get("shipping_address")),
        billing_address=address(data.get("billing_address")),
        lines=tuple(IntentLine(**line) for line in data["lines"]))


def _already_exists(session, channel_id: int, channel_order_id: str):
    """409 naming the order that exists: an order sent twice, or sent here after the channel's
    creation webhook imported it, stays one order."""
    found = orders.find_order(session, channel_id, channel_order_id)
    where = f" as order {found.id} (GET /api/v1/orders/{found.id})" if found is not None else ""
    abort(409, message=f"order {channel_order_id} already exists on channel {channel_id}{where};"
                       f" nothing was changed")


@blp.route("/<int:order_id>")
class OrderById(MethodView):
    @blp.response(200, OrderDetailSchema)
    def get(self, order_id):
        """An order with its shipments, its history and the intents held for it"""
        session = get_session()
        return _detail(session, _get(session, order_id))

    @blp.arguments(OrderPatchSchema)
    @blp.response(200, OrderDetailSchema)
    def patch(self, data, order_id):
        """Change an order's status; intents held for it are re-decided at once"""
        session = get_session()
        order = _get(session, order_id)
        session.refresh(order, with_for_update=True)
        channel = session.get(SalesChannel, order.channel_id)
        orders.change_status(session, channel, order, data["status"], config=current_app.config)
        session.commit()
        session.expire(order, ["history", "lines"])
        return _detail(session, order)
