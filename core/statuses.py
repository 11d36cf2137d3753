"""Network Manager order statuses, as API values.

The merchant picks, per sales channel, which of these count as *valid cancellation* and *valid
fulfillment* statuses. ``UNPROCESSED`` and ``CANCELLED`` can never be picked: an unprocessed order
is held until it is processed, and a cancelled order has nowhere left to go.
"""
from __future__ import annotations

UNPROCESSED = "UNPROCESSED"
UNRESOLVED = "UNRESOLVED"
AWAITING_PAYMENT = "AWAITING_PAYMENT"
PENDING_SHIPMENT_PLAN = "PENDING_SHIPMENT_PLAN"
AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
AWAITING_DROPSHIP = "AWAITING_DROPSHIP"
AWAITING_3PL_EXPORT = "AWAITING_3PL_EXPORT"
PENDING_FULFILLMENT = "PENDING_FULFILLMENT"
SHIPPED = "SHIPPED"
ON_HOLD = "ON_HOLD"
CANCELLED = "CANCELLED"

#: Every status, in the order an order usually moves through them, with the label Network
#: Manager shows.
STATUSES: dict[str, str] = {
    UNPROCESSED: "Unprocessed",
    UNRESOLVED: "Unresolved",
    AWAITING_PAYMENT: "Awaiting Payment",
    PENDING_SHIPMENT_PLAN: "Pending Shipment Plan",
    AWAITING_SHIPMENT: "Awaiting Shipment",
    AWAITING_DROPSHIP: "Awaiting Dropship",
    AWAITING_3PL_EXPORT: "Awaiting 3PL Export",
    PENDING_FULFILLMENT: "Pending Fulfillment",
    SHIPPED: "Shipped",
    ON_HOLD: "On Hold",
    CANCELLED: "Cancelled",
}

#: Statuses a merchant may select as valid cancellation / fulfillment statuses.
SELECTABLE: tuple[str, ...] = tuple(s for s in STATUSES if s not in (UNPROCESSED, CANCELLED))


def check_selection(values, what: str) -> list[str]:
    """Return ``values`` de-duplicated in canonical order, or raise ValueError naming the bad one."""
    if values is None:
        return []
    chosen = []
    for value in values:
        if value not in STATUSES:
            raise ValueError(f"{value!r} is not an order status; valid {what} statuses are: "
                             + ", ".join(SELECTABLE))
        if value not in SELECTABLE:
            raise ValueError(f"{value} cannot be a valid {what} status: "
                             + ("unprocessed orders are held until they are processed"
                                if value == UNPROCESSED else "a cancelled order cannot change"))
        if value not in chosen:
            chosen.append(value)
    return [s for s in STATUSES if s in chosen]
