"""/api/v1/deliveries: the inbox — what arrived, what became of it, replay."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from ..db import get_session
from ..models import StoredDelivery, SalesChannel
from ..outcomes import DeliveryState
from ..deliveries import replay
from . import paging
from .lookup import get_or_404
from .schemas import (DeliveryDetailSchema, DeliveryQuerySchema, DeliverySchema,
                      ReplayResultSchema, ReplayWindowSchema)

PREFIX = "/deliveries"
blp = Blueprint("deliveries", __name__, description="Webhook deliveries and their outcomes")


def _get(session, delivery_id: int) -> StoredDelivery:
    return get_or_404(session, StoredDelivery, delivery_id, "delivery")


@blp.route("")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuerySchema, location="query")
    @blp.response(200, DeliverySchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Deliveries, newest first; filter by channel, outcome (or pending) and order"""
        query = select(StoredDelivery)
        if args.get("channel_id") is not None:
            query = query.where(StoredDelivery.channel_id == args["channel_id"])
        if args.get("channel_order_id") is not None:
            query = query.where(StoredDelivery.channel_order_id == args["channel_order_id"])
        if args.get("outcome") == DeliveryState.PENDING:  # not processed yet, or being retried
            query = query.where(StoredDelivery.state.in_((DeliveryState.PENDING,
                                                          DeliveryState.PROCESSING)))
        elif args.get("outcome"):
            query = query.where(StoredDelivery.outcome == args["outcome"])
        return paging.page(get_session(), query, StoredDelivery.id, args, newest_first=True)


@blp.route("/<int:delivery_id>")
class DeliveryById(MethodView):
    @blp.response(200, DeliveryDetailSchema)
    def get(self, delivery_id):
        """A delivery with its headers, raw body, intents and outcome"""
        row = _get(get_session(), delivery_id)
        data = {c.key: getattr(row, c.key) for c in StoredDelivery.__table__.columns}
        data["body"] = row.body.decode("utf-8", "replace") if row.body is not None else None
        return data


@blp.route("/<int:delivery_id>/replay")
class DeliveryReplay(MethodView):
    @blp.response(202, DeliverySchema)
    def post(self, delivery_id):
        """Process a delivery again from its stored body"""
        session = get_session()
        row = _get(session, delivery_id)
        if row.state == DeliveryState.PROCESSING:
            abort(409, message="the delivery is being processed right now; try again shortly")
        replay(session, [row])
        session.commit()
        return row


@blp.route("/replay")
class ReplayWindow(MethodView):
    @blp.arguments(ReplayWindowSchema)
    @blp.response(202, ReplayResultSchema)
    def post(self, data):
        """Replay a channel's deliveries received in a time window with the given outcomes, at
        most ORDERHOOKS_REPLAY_MAX_DELIVERIES per request, oldest first; ``next`` is the body
        to POST for the rest of the window (null when it is done)"""
        session = get_session()
        channel = session.get(SalesChannel, data["channel_id"])
        if channel is None or channel.deleted_at is not None:
            abort(422, message=f"no channel {data['channel_id']}"
                               + (" (it was deleted)" if channel is not None else ""),
                  errors={"json": {"channel_id": ["unknown channel"]}})
        since, until = data["since"], data["until"]
        if until < since:
            abort(422, message="'until' is before 'since'",
                  errors={"json": {"until": ["before 'since'"]}})
        limit = min(data.get("limit") or current_app.config["REPLAY_MAX_DELIVERIES"],
                    current_app.config["REPLAY_MAX_DELIVERIES"])
        # A failed delivery waits (state pending) for its next attempt: replaying it retries it
        # now, from attempt 0. Only deliveries a worker holds right now are left alone.
        rows = session.scalars(select(StoredDelivery).where(
            StoredDelivery.channel_id == data["channel_id"], StoredDelivery.received_at >= since,
            StoredDelivery.received_at <= until, StoredDelivery.state != DeliveryState.PROCESSING,
            StoredDelivery.outcome.in_(data["outcome"]), StoredDelivery.id > data["after_id"])
            .order_by(StoredDelivery.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [r.id for r in rows]
        replay(session, rows)
        session.commit()
        following = None
        if more:
            following = {"channel_id": data["channel_id"], "since": since, "until": until,
                         "outcome": data["outcome"], "after_id": ids[-1]}
        return {"replayed": len(ids), "delivery_ids": ids, "limit": limit,
                "next": following}
