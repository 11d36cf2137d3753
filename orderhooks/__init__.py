"""What a channel plugin imports: the one stable surface for plugin authors.

Everything a plugin needs is here — the hook marker, the adapter base class, the value types it
receives and returns, the intents it produces, the errors it raises and an HTTP session for its
channel's API — so a plugin never names the core's modules, which may move::

    from orderhooks import ChannelAdapter, Cancel, DeliveryInfo, InvalidDelivery, hookimpl

The pytest plugin for plugin authors is :mod:`orderhooks.testing`. See ``docs/plugins.md``.
"""
from __future__ import annotations

from core.adapters import (Channel, ChannelAdapter, Delivery, DeliveryInfo, Headers,
                           RemoteSubscription, SubscriptionSpec)
from core.errors import (AuthenticationError, ChannelAPIError, InvalidDelivery, RetryLater,
                         SubscriptionError)
from core.hookspecs import hookimpl
from core.http import APIBaseURLs, ChannelHTTP, segment
from core.intents import (REINSERT, WRITE_OFF, Address, Cancel, CreateOrder, Customer,
                          DeactivateChannel, DeleteProduct, Fulfill, Ignore, Intent, InvalidIntent,
                          OrderLine, ProductVariant, RecordPayment, RecordRefund,
                          RedactPersonalData, RefundLine, Shipment, ShipmentItem, UpsertProduct)
from core.models import CHANNEL_ORDER_ID_LENGTH

__all__ = [
    "hookimpl",
    # the adapter and what it receives and returns
    "ChannelAdapter", "Channel", "Delivery", "Headers", "DeliveryInfo", "SubscriptionSpec",
    "RemoteSubscription",
    # intents
    "Intent", "Cancel", "Fulfill", "Shipment", "ShipmentItem", "CreateOrder", "Customer",
    "Address", "OrderLine", "RecordPayment", "RecordRefund", "RefundLine", "REINSERT",
    "WRITE_OFF", "DeactivateChannel",
    "RedactPersonalData", "Ignore", "InvalidIntent", "CHANNEL_ORDER_ID_LENGTH",
    "UpsertProduct", "ProductVariant", "DeleteProduct",
    # errors
    "AuthenticationError", "InvalidDelivery", "RetryLater", "ChannelAPIError",
    "SubscriptionError",
    # the channel's API
    "ChannelHTTP", "APIBaseURLs", "segment",
]
