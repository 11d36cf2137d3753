"""The "manual" channel: a custom cart pushes Standard Webhooks-signed JSON deliveries.

Deliveries (``Content-Type: application/json``)::

    {"type": "order.cancelled", "order_id": "1001", "reason": "customer asked"}
    {"type": "order.fulfilled", "order_id": "1001", "complete": true,
     "shipments": [{"id": "s1", "tracking_number": "1Z999", "carrier": "ups",
                    "tracking_url": "https://...", "items": [{"sku": "ABC", "quantity": 1}]}]}

* Authentication: Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``), keyed with the channel's ``signing_secret`` (``whsec_...``). The
  timestamp must be within five minutes of now, as the reference library requires.
* De-duplication: ``webhook-id`` (a cart retrying a delivery sends the same id).
* ``order.cancelled`` → Cancel; ``order.fulfilled`` → Fulfill (``complete`` defaults to true;
  false records the shipments without moving the order to SHIPPED). Any other ``type`` is stored
  and ignored, with the type named.
* No subscriptions: the cart pushes, so :meth:`desired_subscriptions` is empty.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields
from standardwebhooks.webhooks import Webhook

from orderhooks import (AuthenticationError, Cancel, Channel, ChannelAdapter, Delivery,
                        DeliveryInfo, Fulfill, Ignore, InvalidDelivery, Shipment, ShipmentItem,
                        SubscriptionSpec, hookimpl)

CANCELLED, FULFILLED = "order.cancelled", "order.fulfilled"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _valid_secret(value: str) -> None:
    if not value.startswith("whsec_"):
        raise ValidationError("a Standard Webhooks secret starts with 'whsec_'")
    try:
        Webhook(value)
    except Exception as exc:  # noqa: BLE001 — bad base64, empty key
        raise ValidationError(f"not a Standard Webhooks secret: {exc}") from exc


class CredentialsSchema(Schema):
    signing_secret = fields.String(required=True, validate=_valid_secret)


class ManualAdapter(ChannelAdapter):
    type = "manual"
    title = "Manual (custom cart)"
    credentials_schema = CredentialsSchema
    stored_headers = ()  # webhook-id and webhook-timestamp are kept by the core already

    def authenticate(self, delivery: Delivery, channel: Channel) -> None:
        headers = {name: delivery.headers.get(name) or "" for name in SIGNATURE_HEADERS}
        if not all(headers.values()):
            raise AuthenticationError("missing Standard Webhooks headers "
                                      "(webhook-id, webhook-timestamp, webhook-signature)")
        try:
            Webhook(channel.credentials["signing_secret"]).verify(delivery.body, headers,
                                                                  json_parse=False)
        except Exception as exc:  # noqa: BLE001 — the verifier raises several types on garbage
            raise AuthenticationError(f"Standard Webhooks signature rejected: {exc}") from exc

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        event = _event(delivery)
        return DeliveryInfo(key=f"webhook-id:{delivery.headers['webhook-id']}",
                            topic=event["type"], channel_order_id=event.get("order_id"),
                            occurred_at=_timestamp(delivery))

    def translate(self, delivery: Delivery, channel: Channel):
        try:
            event = _event(delivery)
        except InvalidDelivery as exc:  # stored before this version's rules: nothing to retry
            return [Ignore(f"unreadable manual delivery: {exc}")]
        occurred_at = _timestamp(delivery)
        if event["type"] == CANCELLED:
            return [Cancel(event["order_id"], reason=event.get("reason") or "cancelled in the cart",
                           occurred_at=occurred_at)]
        if event["type"] == FULFILLED:
            return [Fulfill(event["order_id"], shipments=event["shipments"],
                            complete=event["complete"], occurred_at=occurred_at)]
        return [Ignore(f"manual delivery type {event['type']!r} is not acted on")]

    def desired_subscriptions(self, channel: Channel) -> list[SubscriptionSpec]:
        return []  # the cart pushes: nothing to subscribe to


def _timestamp(delivery: Delivery) -> datetime | None:
    raw = delivery.headers.get("webhook-timestamp") or ""
    return datetime.fromtimestamp(int(raw), timezone.utc) if raw.isdigit() else None


def _event(delivery: Delivery) -> dict:
    """The delivery's event, checked: raises InvalidDelivery with what is wrong."""
    data = delivery.json_object()
    if not isinstance(data.get("type"), str) or not data["type"]:
        raise InvalidDelivery("a manual delivery is a JSON object with a 'type'")
    event = {"type": data["type"][:128]}
    if event["type"] not in (CANCELLED, FULFILLED):
        return event
    order_id = data.get("order_id")
    if isinstance(order_id, bool) or not isinstance(order_id, (str, int)) or not str(order_id):
        raise InvalidDelivery("'order_id' must be a non-empty string or number")
    event["order_id"] = str(order_id)
    reason = data.get("reason")
    event["reason"] = reason if isinstance(reason, str) else None
    complete = data.get("complete", True)
    if not isinstance(complete, bool):
        raise InvalidDelivery("'complete' must be true or false")
    event["complete"] = complete
    raw_shipments = data.get("shipments") or []
    if not isinstance(raw_shipments, list):
        raise InvalidDelivery("'shipments' must be a list")
    event["shipments"] = tuple(_shipment(s) for s in raw_shipments)
    return event


def _text(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidDelivery(f"shipment '{key}' must be a string")
    return str(value)


def _shipment(data) -> Shipment:
    if not isinstance(data, dict):
        raise InvalidDelivery("each shipment is an object")
    items = data.get("items") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidDelivery("shipment 'items' must be a list of objects")
    parsed = []
    for item in items:
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise InvalidDelivery("item 'quantity' must be a whole number")
        parsed.append(ShipmentItem(sku=_text(item, "sku"), line_id=_text(item, "line_id"),
                                   quantity=quantity))
    return Shipment(shipment_id=_text(data, "id"), tracking_number=_text(data, "tracking_number"),
                    carrier=_text(data, "carrier"), tracking_url=_text(data, "tracking_url"),
                    items=tuple(parsed))


@hookimpl
def register_channels(register):
    register(ManualAdapter())
