"""The status rules: what a Cancel or Fulfill does to a routed order. A pure function.

=====================  ===========================================================
order                  outcome
=====================  ===========================================================
not imported yet       DEFERRED until the order arrives (bounded window)
already in the target  IGNORED, nothing changes (re-applying is a no-op); a Fulfill
state                  that brings new shipments to a SHIPPED order records them; a
                       partial Fulfill with no new shipments changes nothing either
older than the order's IGNORED as stale: an older event never overrides a newer one
last channel event
UNPROCESSED            DEFERRED until the order is processed
in a selected status   APPLIED
any other status       IGNORED, with the reason
=====================  ===========================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import statuses as st
from .clock import naive_utc
from .intents import Cancel, Fulfill, RecordPayment, RecordRefund
from .outcomes import Outcome

APPLIED = Outcome.APPLIED
IGNORED = Outcome.IGNORED
DEFERRED = Outcome.DEFERRED


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    #: The status the order moves to (None: it stays where it is).
    new_status: str | None = None
    #: Whether the intent's shipments are recorded on the order.
    record_shipments: bool = False
    #: For a deferred intent: until when it is held (set when it is stored).
    held_until: datetime | None = None


def decide(intent: Cancel | Fulfill, order_status: str | None, *,
           valid_cancellation: list[str] | tuple[str, ...],
           valid_fulfillment: list[str] | tuple[str, ...],
           last_event_at: datetime | None = None,
           new_shipments: bool = False) -> Decision:
    """Decide what ``intent`` does to an order currently in ``order_status`` (None: unknown order).

    ``new_shipments`` says whether the intent carries shipments the order does not have yet.
    """
    cancel = isinstance(intent, Cancel)
    what = "cancellation" if cancel else "fulfillment"
    if order_status is None:
        return Decision(DEFERRED, "order not imported yet; waiting for it to arrive")
    if cancel and order_status == st.CANCELLED:
        return Decision(IGNORED, "order is already CANCELLED; nothing to change")
    if not cancel and order_status == st.SHIPPED:
        if new_shipments:
            return Decision(APPLIED, "order is already SHIPPED; recorded its new shipments",
                            record_shipments=True)
        return Decision(IGNORED, "order is already SHIPPED with these shipments; nothing to change")
    occurred_at = intent.occurred_at
    if occurred_at and last_event_at and naive_utc(occurred_at) < naive_utc(last_event_at):
        return Decision(IGNORED, f"stale {what}: it happened at {occurred_at.isoformat()}, before "
                                 f"the order's last channel event at {last_event_at.isoformat()}")
    if order_status == st.UNPROCESSED:
        return Decision(DEFERRED, "order is UNPROCESSED; held until it is processed")
    valid = valid_cancellation if cancel else valid_fulfillment
    if order_status not in valid:
        return Decision(IGNORED, f"order is {order_status}, not a valid {what} status"
                                 + (f" (valid: {', '.join(valid)})" if valid else
                                    f" (no valid {what} statuses are selected)"))
    if cancel:
        return Decision(APPLIED, f"order was {order_status}; cancelled", new_status=st.CANCELLED)
    if not intent.complete:
        if not new_shipments:
            return Decision(IGNORED, f"order is {order_status}; its shipments are already "
                                     "recorded; nothing to change")
        return Decision(APPLIED, f"order is {order_status}; partial shipment recorded, status kept",
                        record_shipments=True)
    return Decision(APPLIED, f"order was {order_status}; shipped", new_status=st.SHIPPED,
                    record_shipments=True)


def first_status(paid: bool) -> str:
    """The status an order imported from its channel starts in: an unpaid order waits for its
    payment (Network Manager's "orders without payment status"); a paid one is processed."""
    return st.UNPROCESSED if paid else st.AWAITING_PAYMENT


def decide_payment(intent: RecordPayment, order_status: str | None) -> Decision:
    """What a payment does: an order awaiting payment moves on to UNPROCESSED; an order not
    imported yet holds the payment until it is; in any other status the payment is recorded
    on the order and changes nothing."""
    if order_status is None:
        return Decision(DEFERRED, "order not imported yet; the payment waits for it")
    if order_status == st.AWAITING_PAYMENT:
        return Decision(APPLIED, "payment received; order was AWAITING_PAYMENT",
                        new_status=st.UNPROCESSED)
    return Decision(IGNORED, f"payment recorded; order is {order_status}, not AWAITING_PAYMENT, "
                             "so its status is kept")


def decide_refund(intent: RecordRefund, order_status: str | None, *,
                  recorded_as: int | None = None) -> Decision:
    """What a refund does: an RMA is opened only for a SHIPPED order (the items went out, so
    they may come back); an order not imported yet holds the refund until it is; a refund
    already recorded (``recorded_as``: its RMA's id) opens nothing new; a refund with no lines
    (an amount-only refund) has nothing to return."""
    if order_status is None:
        return Decision(DEFERRED, "order not imported yet; the refund waits for it")
    if recorded_as is not None:
        return Decision(IGNORED, f"refund {intent.channel_refund_id} is already recorded as "
                                 f"RMA {recorded_as}")
    if not intent.lines:
        return Decision(IGNORED, f"refund {intent.channel_refund_id} has no lines (an amount-"
                                 "only refund): nothing comes back, no RMA")
    if order_status != st.SHIPPED:
        return Decision(IGNORED, f"refund {intent.channel_refund_id}: order is {order_status}, "
                                 "not SHIPPED; an RMA is created only for a SHIPPED order")
    return Decision(APPLIED, f"refund {intent.channel_refund_id}: RMA opened")
