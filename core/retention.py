"""Retention: raw bodies hold customers' personal data; keep them only so long."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import update

from .models import Delivery, utcnow

log = logging.getLogger("orderhooks.retention")


def purge_bodies(db, days: int) -> int:
    """Drop the raw bodies of processed deliveries older than ``days``; keep the outcome."""
    cutoff = utcnow() - timedelta(days=days)
    with db.session() as session:
        result = session.execute(update(Delivery).where(
            Delivery.received_at < cutoff, Delivery.body.is_not(None),
            Delivery.state == "done").values(body=None, body_purged_at=utcnow()))
    if result.rowcount:
        log.info("retention.purged", extra={"count": result.rowcount, "older_than_days": days})
    return result.rowcount
