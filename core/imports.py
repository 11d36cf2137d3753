"""Importing orders the worker does not know yet, before a cancellation, fulfilment or payment
for them is applied — on channels with order creation on, whose plugin can read an order
(``ChannelAdapter.read_order``). Without it such an intent is held for
``ORDERHOOKS_UNKNOWN_ORDER_WINDOW_SECONDS``, waiting for the order to arrive.

The reads run between translating a batch and recording it, outside any transaction, as every
channel API call does.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from . import webhooks as hooks
from .errors import ChannelAPIError, RetryLater
from .intents import (Cancel, CreateOrder, Fulfill, Ignore, InvalidIntent, RecordPayment,
                      RecordRefund)
from .models import Order

log = logging.getLogger("orderhooks.imports")

#: The intents that need their order to exist.
NEEDS_ORDER = (Cancel, Fulfill, RecordPayment, RecordRefund)


def mark_known_orders(session, rows, work, views: dict) -> None:
    """Tell each delivery of the batch (``work``, claimed from ``rows``) that names an order,
    on a channel with order creation on, whether the service holds that order
    (``Delivery.order_known``): one query per channel. A plugin then holds API calls for the
    import only for orders that may need one."""
    named: dict[int, dict[int, str]] = {}
    for row in rows:
        channel = views.get(row.channel_id)
        if (row.channel_order_id and channel is not None
                and not isinstance(channel, Exception) and channel.uses(hooks.ORDER_CREATION)):
            named.setdefault(row.channel_id, {})[row.id] = row.channel_order_id
    known: set[tuple[int, str]] = set()
    for channel_id, ids in named.items():
        known |= {(channel_id, order_id) for order_id in session.scalars(
            select(Order.channel_order_id).where(Order.channel_id == channel_id,
                                                 Order.channel_order_id.in_(set(ids.values()))))}
    for item in work:
        order_id = named.get(item.channel_id, {}).get(item.id)
        if order_id is not None:
            item.delivery.order_known = (item.channel_id, order_id) in known


def import_unknown_orders(session_factory, adapters, work, results: dict, views: dict) -> None:
    """For each order a batch's intents name that no order table row nor any CreateOrder of the
    batch provides, on a channel with order creation on: read it from the channel's API and
    put its CreateOrder first in the first delivery naming it. An order the API does not know
    (404) is recorded on that delivery (an Ignore with the reason) and its intents are held as
    without order creation: never retried for it. A failed or throttled read fails (or
    reschedules) that delivery, as a failed translation does."""
    wanted: dict[int, dict[str, int]] = {}
    provided: set[tuple[int, str]] = set()
    for item in work:
        result = results.get(item.id)
        if not isinstance(result, list):
            continue
        provided |= {(item.channel_id, i.channel_order_id) for i in result
                     if isinstance(i, CreateOrder)}
        channel = views.get(item.channel_id)
        if isinstance(channel, Exception) or channel is None or not channel.active:
            continue
        if not channel.uses(hooks.ORDER_CREATION):
            continue
        for intent in result:
            if isinstance(intent, NEEDS_ORDER):
                wanted.setdefault(item.channel_id, {}).setdefault(intent.channel_order_id,
                                                                  item.id)
    for channel_id in list(wanted):
        for order_id in list(wanted[channel_id]):
            if (channel_id, order_id) in provided:
                del wanted[channel_id][order_id]
    wanted = {cid: ids for cid, ids in wanted.items() if ids}
    if not wanted:
        return
    with session_factory() as session:
        for channel_id, ids in wanted.items():
            known = set(session.scalars(select(Order.channel_order_id).where(
                Order.channel_id == channel_id, Order.channel_order_id.in_(list(ids)))))
            for order_id in known:
                del ids[order_id]
    types = {item.channel_id: item.channel_type for item in work}
    for channel_id, ids in wanted.items():
        adapter = adapters.get(types[channel_id])
        channel = views[channel_id]
        for order_id, delivery_id in ids.items():
            if not isinstance(results.get(delivery_id), list):
                continue  # an earlier read already failed this delivery
            try:
                found = adapter.read_order(channel, order_id)
            except (RetryLater, ChannelAPIError) as exc:
                results[delivery_id] = exc
                continue
            except InvalidIntent as exc:  # the order cannot be imported, whatever we retry
                found = Ignore(f"order {order_id} could not be imported: {exc}")
            except Exception as exc:  # noqa: BLE001 — a plugin's failure is this delivery's
                log.warning("imports.read_failed", exc_info=exc,
                            extra={"channel_id": channel_id, "order_id": order_id})
                results[delivery_id] = ChannelAPIError(
                    f"reading order {order_id} to import it failed ({type(exc).__name__})")
                continue
            if isinstance(found, CreateOrder):
                results[delivery_id] = [found, *results[delivery_id]]
            elif isinstance(found, Ignore):
                results[delivery_id] = [*results[delivery_id], found]
