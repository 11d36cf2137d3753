"""Retention: raw bodies hold customers' personal data; keep them only so long."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import literal, select, update

from .clock import utcnow
from .models import DELIVERY_OUTCOMES, StoredDelivery, SalesChannel
from .outcomes import DeliveryState

log = logging.getLogger("orderhooks.retention")


def purge_bodies(db, days: int) -> int:
    """Drop the raw bodies of processed deliveries older than ``days``; keep the outcome."""
    cutoff = utcnow() - timedelta(days=days)
    with db.session() as session:
        # channel_id IN / outcome IN / received_at <: a range of ix_deliveries_channel_outcome
        # per channel and outcome, not a walk over every processed row (ix_deliveries_claim,
        # which "state = 'done'" would otherwise pick: "state || ''" keeps the planner off it).
        result = session.execute(update(StoredDelivery).where(
            StoredDelivery.channel_id.in_(select(SalesChannel.id)),
            StoredDelivery.outcome.in_(DELIVERY_OUTCOMES), StoredDelivery.received_at < cutoff,
            StoredDelivery.body.is_not(None),
            StoredDelivery.state + literal("") == DeliveryState.DONE)
            .values(body=None, body_purged_at=utcnow()))
    if result.rowcount:
        log.info("retention.purged", extra={"count": result.rowcount, "older_than_days": days})
    return result.rowcount
