"""The webhooks a channel may use, by generic name (the merchant's checkboxes), whatever the
channel calls them. Each plugin maps a name to its channel's topics or scopes
(``ChannelAdapter.webhook_topics``); the subscriptions follow the ticked set exactly.

A channel that never chose (``webhooks`` null) uses what its status lists imply: cancellation
when a valid cancellation status is selected, fulfilment when a valid fulfilment status is.
"""
from __future__ import annotations

ORDER_CREATION = "order_creation"
ORDER_PAYMENT = "order_payment"
CANCELLATION = "cancellation"
FULFILLMENT = "fulfillment"
REFUND_POS = "refund_pos"
REFUND_ECOMMERCE = "refund_ecommerce"
PRODUCT_UPDATE = "product_update"
PRODUCT_DELETION = "product_deletion"

#: Every name, in the order the settings list them, with the label Network Manager shows.
WEBHOOKS: dict[str, str] = {
    ORDER_CREATION: "Order Creation",
    ORDER_PAYMENT: "Order Payment",
    CANCELLATION: "Cancellation",
    FULFILLMENT: "Fulfillment",
    REFUND_POS: "POS Refund",
    REFUND_ECOMMERCE: "e-commerce Refund",
    PRODUCT_UPDATE: "Product Update / Product Edit",
    PRODUCT_DELETION: "Product Deletion",
}


def check_selection(values) -> list[str]:
    """``values`` de-duplicated in canonical order, or ValueError naming the unknown one."""
    chosen = []
    for value in values or ():
        if value not in WEBHOOKS:
            raise ValueError(f"{value!r} is not a webhook name; the names are: "
                             + ", ".join(WEBHOOKS))
        chosen.append(value)
    return [name for name in WEBHOOKS if name in chosen]


def effective(webhooks, valid_cancellation_statuses, valid_fulfillment_statuses) -> tuple:
    """The webhooks a channel uses: its choice, or (never chosen) what its statuses imply."""
    if webhooks is not None:
        return tuple(name for name in WEBHOOKS if name in webhooks)
    derived = []
    if valid_cancellation_statuses:
        derived.append(CANCELLATION)
    if valid_fulfillment_statuses:
        derived.append(FULFILLMENT)
    return tuple(derived)
