"""The "manual" channel: a custom cart pushes Standard Webhooks-signed JSON deliveries.

Deliveries (``Content-Type: application/json``)::

    {"type": "order.created", "order_id": "1001", "order_number": "#1001", "paid": false,
     "placed_at": "2026-12-01T10:00:00Z", "currency": "EUR", "totals": {"total": "12.50"},
     "customer": {"id": "c7", "name": "Ana", "email": "ana@example.com", "phone": null},
     "shipping_address": {"name": "Ana", "address1": "1 Rua", "city": "Porto",
                          "country_code": "PT"},
     "lines": [{"id": "l1", "sku": "ABC", "name": "Mug", "quantity": 1,
                "unit_price": "12.50"}]}
    {"type": "order.paid", "order_id": "1001", "amount": "12.50", "currency": "EUR"}
    {"type": "order.cancelled", "order_id": "1001", "reason": "customer asked"}
    {"type": "order.fulfilled", "order_id": "1001", "complete": true,
     "shipments": [{"id": "s1", "tracking_number": "1Z999", "carrier": "ups",
                    "tracking_url": "https://...", "items": [{"sku": "ABC", "quantity": 1}]}]}

* Authentication: Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``), keyed with the channel's ``signing_secret`` (``whsec_...``). The
  timestamp must be within five minutes of now, as the reference library requires.
* De-duplication: ``webhook-id`` (a cart retrying a delivery sends the same id).
* ``order.created`` → CreateOrder, when the channel's webhooks include ``order_creation``
  (amounts are decimal strings; a number is refused: its digits may already be rounded);
  ``order.paid`` → RecordPayment, when they include ``order_payment``.
* ``order.cancelled`` → Cancel; ``order.fulfilled`` → Fulfill (``complete`` defaults to true;
  false records the shipments without moving the order to SHIPPED). Any other ``type`` is stored
  and ignored, with the type named.
* No subscriptions: the cart pushes, so :meth:`desired_subscriptions` is empty.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields
from standardwebhooks.webhooks import Webhook

from orderhooks import (Address, AuthenticationError, Cancel, Channel, ChannelAdapter,
                        CreateOrder, Customer, Delivery, DeliveryInfo, Fulfill, Ignore,
                        InvalidDelivery, OrderLine, RecordPayment, Shipment, ShipmentItem,
                        SubscriptionSpec, hookimpl)

CANCELLED, FULFILLED = "order.cancelled", "order.fulfilled"
CREATED, PAID = "order.created", "order.paid"
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
    #: The webhooks a merchant may tick. The cart pushes, so none has a topic to subscribe to;
    #: the names still say which deliveries the channel acts on.
    webhook_topics = {"order_creation": (), "order_payment": (), "cancellation": (),
                      "fulfillment": ()}

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
        if event["type"] == CREATED:
            if not channel.uses("order_creation"):
                return [Ignore("order.created: order creation is off for this channel")]
            return [_order(delivery.json(), event["order_id"], occurred_at)]
        if event["type"] == PAID:
            if not channel.uses("order_payment"):
                return [Ignore("order.paid: order payment is off for this channel")]
            data = delivery.json()
            return [RecordPayment(event["order_id"], amount=data.get("amount"),
                                  currency=data.get("currency"), status="paid",
                                  occurred_at=occurred_at)]
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
    if event["type"] not in (CANCELLED, FULFILLED, CREATED, PAID):
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


def _order(data: dict, order_id: str, occurred_at) -> CreateOrder:
    """An order.created event as the generic order. Nested parts that are not objects are left
    out; the intent itself refuses amounts that are not decimal strings (InvalidIntent: the
    delivery ends dead with the reason)."""
    def part(key) -> dict:
        value = data.get(key)
        return value if isinstance(value, dict) else {}

    def address(key):
        fields_ = {k: v for k, v in part(key).items() if k in Address.__dataclass_fields__}
        return Address(**fields_) if fields_ else None

    customer = part("customer")
    lines = [line for line in data.get("lines") or [] if isinstance(line, dict)]
    placed = data.get("placed_at")
    try:
        placed_at = datetime.fromisoformat(placed.replace("Z", "+00:00")) if isinstance(
            placed, str) else None
    except ValueError:
        placed_at = None
    return CreateOrder(
        order_id, order_number=data.get("order_number"), placed_at=placed_at,
        currency=data.get("currency"), totals=part("totals"), paid=data.get("paid") is True,
        customer=Customer(channel_customer_id=customer.get("id"), name=customer.get("name"),
                          email=customer.get("email"), phone=customer.get("phone"))
        if customer else None,
        shipping_address=address("shipping_address"), billing_address=address("billing_address"),
        lines=tuple(OrderLine(channel_line_id=line.get("id"), product_id=line.get("product_id"),
                              variant_id=line.get("variant_id"), sku=line.get("sku"),
                              name=line.get("name"), quantity=line.get("quantity", 1),
                              unit_price=line.get("unit_price")) for line in lines),
        occurred_at=occurred_at)


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
