"""Changes to stored deliveries asked for from outside the worker (the admin API): replay."""
from __future__ import annotations

from sqlalchemy import delete, update

from .clock import utcnow
from .models import PendingIntent, StoredDelivery
from .outcomes import DeliveryState


def replay(session, deliveries: list[StoredDelivery]) -> None:
    """Queue deliveries to be processed again from their stored bodies, from attempt 0: a few
    statements for the lot (one UPDATE per previous outcome, one DELETE of their held intents),
    not a round trip per delivery."""
    now = utcnow()
    by_outcome: dict[str | None, list[int]] = {}
    for delivery in deliveries:
        by_outcome.setdefault(delivery.outcome, []).append(delivery.id)
    for outcome, ids in by_outcome.items():
        session.execute(update(StoredDelivery).where(StoredDelivery.id.in_(ids)).values(
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=now, claimed_by=None,
            claimed_until=None, deferred_until=None, outcome=None,
            reason=f"replay requested at {now.isoformat()}Z; previously: "
                   f"{outcome or 'not processed'}"), execution_options={
                       "synchronize_session": False})
        session.execute(delete(PendingIntent).where(PendingIntent.delivery_id.in_(ids)))
    for delivery in deliveries:
        session.expire(delivery)
