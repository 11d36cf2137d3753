"""marshmallow schemas of the admin API."""
from __future__ import annotations

from datetime import timezone

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from .. import alerts, events, statuses
from .. import webhooks as hooks
from ..channel_store import ALERT_EMAILS_MAX
from ..intents import (ADDRESS_FIELDS, RESTOCK_ACTIONS, InvalidIntent, check_channel_order_id,
                       check_money)
from ..models import (CHANNEL_ORDER_ID_LENGTH, DELIVERY_OUTCOMES, PRODUCT_ID_LENGTH, RMA_STATUSES,
                      SKU_LENGTH, TEXT_LENGTH)
from ..outcomes import DeliveryState, Outcome
from .paging import PageQuerySchema

STATUS = validate.OneOf(list(statuses.STATUSES))


class UTCDateTime(fields.DateTime):
    """Timestamps are stored as naive UTC; the API writes them with their offset (RFC 3339
    ``date-time``, as the OpenAPI document promises): ``2026-01-02T03:04:05+00:00``, and reads
    them as naive UTC (no offset: UTC). A moment that has no UTC form within years 1-9999
    (``0001-01-01T00:00:00+14:00``) is refused here, with the field named, not deeper down."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            return moment
        try:
            return moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:
            raise ValidationError("this moment is outside years 1-9999 once converted to "
                                  "UTC") from None


def _channel_order_id(value: str) -> None:
    """The same rule as the intents' (core.intents.check_channel_order_id)."""
    try:
        check_channel_order_id(value)
    except InvalidIntent as exc:
        raise ValidationError(str(exc)) from None


class ErrorSchema(Schema):
    """Every error answer: ``{"error": code, "message": ..., "details"?: ...}``."""
    error = fields.String(required=True, metadata={"description": "Error code, e.g. not_found"})
    message = fields.String(required=True, metadata={"description": "What went wrong"})
    details = fields.Raw(metadata={"description": "Per-field validation errors, when any"})


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class StatusList(fields.List):
    def __init__(self, **kwargs):
        # The enum documents the selectable statuses; channel_store checks them (its messages
        # say why UNPROCESSED and CANCELLED cannot be picked).
        super().__init__(fields.String(metadata={"enum": list(statuses.SELECTABLE)}), **kwargs)


class AlertEmails(fields.List):
    def __init__(self, **kwargs):
        # channel_store checks each address (its message names the one that is not).
        super().__init__(fields.String(validate=validate.Length(min=3, max=254),
                                       metadata={"format": "email"}),
                         validate=validate.Length(max=ALERT_EMAILS_MAX), metadata={
                             "description": "Addresses that get this channel's alert mails, "
                                            "besides ORDERHOOKS_ALERT_EMAILS (docs/alerts.md)"},
                         **kwargs)


class WebhookList(fields.List):
    def __init__(self, **kwargs):
        super().__init__(fields.String(validate=validate.OneOf(list(hooks.WEBHOOKS))), **kwargs)


WEBHOOKS_DOC = ("Which webhooks the channel uses, by name: " + ", ".join(
    f"`{k}` ({v})" for k, v in hooks.WEBHOOKS.items()) + ". Exactly these are subscribed "
    "(those the channel's plugin translates); an unticked one is unsubscribed. null (the "
    "default): derived from the status lists — `cancellation` when a valid cancellation status "
    "is selected, `fulfillment` when a valid fulfillment status is.")
IMPORT_TEST_ORDERS_DOC = ("Import the channel's test orders too (e.g. Shopify orders with "
                          "`test: true`); default false: they are ignored, with the reason")
REFUND_RESTOCK_ACTIONS_DOC = (
    "Restock items from refunds based on the channel's restock value: when true, an RMA line "
    "is Reinsert when the channel restocked it and Write Off when it did not; default false: "
    "every RMA line's action is left for a person to set")


class ChannelCreateSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"example": "bigcommerce"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    credentials = fields.Dict(keys=fields.String(), required=True, load_only=True,
                              metadata={"description": "Channel credentials (write-only)"})
    valid_cancellation_statuses = StatusList(load_default=list)
    valid_fulfillment_statuses = StatusList(load_default=list)
    active = fields.Boolean(load_default=True)
    alert_emails = AlertEmails(load_default=list)
    webhooks = WebhookList(allow_none=True, load_default=None,
                           metadata={"description": WEBHOOKS_DOC})
    import_test_orders = fields.Boolean(load_default=False,
                                        metadata={"description": IMPORT_TEST_ORDERS_DOC})
    refund_restock_actions = fields.Boolean(load_default=False,
                                            metadata={"description": REFUND_RESTOCK_ACTIONS_DOC})


class ChannelPatchSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    credentials = fields.Dict(keys=fields.String(), load_only=True)
    valid_cancellation_statuses = StatusList()
    valid_fulfillment_statuses = StatusList()
    active = fields.Boolean()
    alert_emails = AlertEmails()
    webhooks = WebhookList(allow_none=True, metadata={"description": WEBHOOKS_DOC})
    import_test_orders = fields.Boolean(metadata={"description": IMPORT_TEST_ORDERS_DOC})
    refund_restock_actions = fields.Boolean(metadata={"description": REFUND_RESTOCK_ACTIONS_DOC})


class SubscriptionSchema(Schema):
    topic = fields.String()
    destination = fields.String()
    remote_id = fields.String(allow_none=True)
    status = fields.String()
    last_checked_at = UTCDateTime(allow_none=True)
    last_action = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)


class SubscriptionEventSchema(Schema):
    at = UTCDateTime()
    topic = fields.String(allow_none=True)
    action = fields.String()
    remote_id = fields.String(allow_none=True)
    message = fields.String()


class SubscriptionReportSchema(Schema):
    subscriptions = fields.List(fields.Nested(SubscriptionSchema))
    events = fields.List(fields.Nested(SubscriptionEventSchema))


class ChannelSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    name = fields.String()
    active = fields.Boolean()
    valid_cancellation_statuses = fields.List(fields.String())
    valid_fulfillment_statuses = fields.List(fields.String())
    alert_emails = fields.List(fields.String())
    webhooks = fields.List(fields.String(), allow_none=True, metadata={
        "description": "The webhooks chosen for the channel (null: derived from the status "
                       "lists)"})
    enabled_webhooks = fields.List(fields.String(), metadata={
        "description": "The webhooks the channel uses now: its choice, or what its status "
                       "lists imply"})
    import_test_orders = fields.Boolean()
    refund_restock_actions = fields.Boolean()
    webhook_url = fields.String()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    deleted_at = UTCDateTime(allow_none=True, metadata={
        "description": "When the channel was deleted (null: it is not)"})
    subscriptions = fields.List(fields.Nested(SubscriptionSchema))


class ChannelChangeSchema(Schema):
    id = fields.Integer()
    at = UTCDateTime()
    field = fields.String()
    old_value = fields.Raw(allow_none=True)
    new_value = fields.Raw(allow_none=True)
    actor = fields.String()


class ShipmentItemSchema(Schema):
    sku = fields.String(allow_none=True)
    line_id = fields.String(allow_none=True)
    quantity = fields.Integer()


class ShipmentSchema(Schema):
    shipment_id = fields.String(allow_none=True)
    tracking_number = fields.String(allow_none=True)
    carrier = fields.String(allow_none=True)
    tracking_url = fields.String(allow_none=True)
    items = fields.List(fields.Nested(ShipmentItemSchema))


class OrderChangeSchema(Schema):
    id = fields.Integer()
    at = UTCDateTime()
    event = fields.String()
    old_status = fields.String(allow_none=True)
    new_status = fields.String(allow_none=True)
    delivery_id = fields.Integer(allow_none=True)
    message = fields.String()


class HeldIntentSchema(Schema):
    delivery_id = fields.Integer()
    intent = fields.Dict()
    reason = fields.String()
    expires_at = UTCDateTime()


class OrderPatchSchema(StrictSchema):
    status = fields.String(required=True, validate=STATUS)


class AddressSchema(Schema):
    name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    address1 = fields.String(allow_none=True)
    address2 = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    province = fields.String(allow_none=True)
    zip = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    country_code = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)


MONEY = {"description": "A decimal string in the order's currency (never a float)",
         "example": "404.95"}
MONEY_IN = {"description": "A decimal string in the order's currency, e.g. \"19.99\" (a JSON "
                           "integer is taken too; a JSON number with a fraction is refused: "
                           "its digits were rounded to a float)", "example": "404.95"}


class Money(fields.String):
    """An amount as a decimal string (``"19.99"``), or a JSON integer; a JSON number with a
    fraction is refused: its digits were rounded to a float before anyone could read them.
    The rule is the channel imports' (core.intents.check_money)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float):
            raise ValidationError(f"send amounts as decimal strings (\"{value!r}\"), not JSON "
                                  f"numbers with a fraction: those reach us as floats, with "
                                  f"digits already rounded")
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValidationError("not a decimal string, e.g. \"19.99\"")
        try:
            return check_money(value, attr or "amount")
        except InvalidIntent as exc:
            raise ValidationError(str(exc)) from None


class ChannelId(fields.String):
    """A channel's id for a line, product or variant: text, or a JSON integer taken digit for
    digit (64-bit ids never pass through a float)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


#: Most lines one POST /api/v1/orders takes.
MAX_ORDER_LINES = 5000
TEXT = validate.Length(max=TEXT_LENGTH)
ID = validate.Length(min=1, max=64)


ID_DOC = "text, or a JSON integer of up to 64 bits (kept digit for digit)"


class OrderLineCreateSchema(StrictSchema):
    channel_line_id = ChannelId(allow_none=True, validate=ID, metadata={
        "description": f"The channel's id of the line: {ID_DOC}"})
    product_id = ChannelId(allow_none=True, validate=ID, metadata={
        "description": f"The channel's product id: {ID_DOC}"})
    variant_id = ChannelId(allow_none=True, validate=ID, metadata={
        "description": f"The channel's variant id: {ID_DOC}"})
    sku = fields.String(allow_none=True, validate=TEXT)
    name = fields.String(allow_none=True, validate=TEXT)
    quantity = fields.Integer(strict=True, load_default=1,
                              validate=validate.Range(min=0, max=2**31 - 1))
    unit_price = Money(allow_none=True, metadata=MONEY_IN)


class TotalsCreateSchema(StrictSchema):
    total = Money(allow_none=True, metadata=MONEY_IN)
    subtotal = Money(allow_none=True, metadata=MONEY_IN)
    tax = Money(allow_none=True, metadata=MONEY_IN)
    shipping = Money(allow_none=True, metadata=MONEY_IN)
    discount = Money(allow_none=True, metadata=MONEY_IN)


AddressCreateSchema = StrictSchema.from_dict(
    {name: fields.String(allow_none=True, validate=TEXT) for name in ADDRESS_FIELDS},
    name="AddressCreateSchema")

CUSTOMER_DOC = ("The buyer, as the channel names them: `id` (the channel's customer id), "
                "`name`, `email`, `phone` — other keys are kept as sent. Personal data: "
                "blanked by privacy requests")


class OrderCreateSchema(StrictSchema):
    """An order as the channel has it: the same fields an order imported from the channel
    (its creation webhook) gets, so an order either way is one order."""
    channel_id = fields.Integer(required=True, strict=True,
                                validate=validate.Range(min=1, max=2**62))
    channel_order_id = fields.String(required=True, validate=[
        validate.Length(min=1, max=CHANNEL_ORDER_ID_LENGTH), _channel_order_id])
    status = fields.String(load_default=statuses.UNPROCESSED, validate=STATUS)
    customer = fields.Dict(keys=fields.String(), allow_none=True, load_default=None,
                           metadata={"description": CUSTOMER_DOC})
    order_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=64),
                                 metadata={"description": "The order's number as the merchant "
                                                          "sees it (e.g. #1001)"})
    placed_at = UTCDateTime(allow_none=True, metadata={
        "description": "When the buyer placed it (no offset: UTC)"})
    currency = fields.String(allow_none=True, validate=validate.Length(min=1, max=8),
                             metadata={"example": "USD"})
    totals = fields.Nested(TotalsCreateSchema, allow_none=True)
    shipping_address = fields.Nested(AddressCreateSchema, allow_none=True)
    billing_address = fields.Nested(AddressCreateSchema, allow_none=True)
    lines = fields.List(fields.Nested(OrderLineCreateSchema), load_default=list,
                        validate=validate.Length(max=MAX_ORDER_LINES), metadata={
                            "description": f"The order's lines (at most {MAX_ORDER_LINES})"})




class TotalsSchema(Schema):
    total = fields.String(metadata=MONEY)
    subtotal = fields.String(metadata=MONEY)
    tax = fields.String(metadata=MONEY)
    shipping = fields.String(metadata=MONEY)
    discount = fields.String(metadata=MONEY)


class PaymentSchema(Schema):
    at = fields.String(metadata={"description": "When the channel says it was paid (UTC)"})
    amount = fields.String(allow_none=True, metadata=MONEY)
    currency = fields.String(allow_none=True)
    status = fields.String(allow_none=True, metadata={"description": "The channel's word"})
    outcome = fields.String(metadata={"description": "applied (the order moved on) or ignored"})
    reason = fields.String()
    delivery_id = fields.Integer(allow_none=True)


class CatalogLinkSchema(Schema):
    product_id = fields.Integer(metadata={"description": "The catalog entry: /products/<id>"})
    channel_variant_id = fields.String(allow_none=True, metadata={
        "description": "The variant the line is (null: the product is known, not the variant)"})
    title = fields.String(allow_none=True)
    deleted = fields.Boolean()


class OrderLineSchema(Schema):
    channel_line_id = fields.String(allow_none=True)
    product_id = fields.String(allow_none=True)
    variant_id = fields.String(allow_none=True)
    sku = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_price = fields.String(allow_none=True, metadata=MONEY)
    catalog = fields.Nested(CatalogLinkSchema, allow_none=True, metadata={
        "description": "The line's product in the channel's catalog (/products/<product_id>): "
                       "by variant id, else product id, else SKU; null when not in it"})


class OrderSchema(Schema):
    id = fields.Integer()
    channel_id = fields.Integer()
    channel_order_id = fields.String()
    order_number = fields.String(allow_none=True, metadata={
        "description": "The order's number as the merchant sees it (e.g. #1001)"})
    status = fields.String()
    placed_at = UTCDateTime(allow_none=True)
    currency = fields.String(allow_none=True)
    totals = fields.Nested(TotalsSchema, allow_none=True)
    shipments = fields.List(fields.Nested(ShipmentSchema))
    customer = fields.Dict(allow_none=True, metadata={
        "description": "The buyer: for an order from the channel {id, name, email, phone}; "
                       "as sent for one the admin API imported. Blanked by privacy requests"})
    shipping_address = fields.Nested(AddressSchema, allow_none=True)
    billing_address = fields.Nested(AddressSchema, allow_none=True)
    payments = fields.List(fields.Nested(PaymentSchema), allow_none=True)
    last_event_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class RmaLineSchema(Schema):
    id = fields.Integer()
    channel_line_id = fields.String(allow_none=True)
    sku = fields.String(allow_none=True)
    quantity = fields.Integer()
    amount = fields.String(allow_none=True, metadata=MONEY)
    action = fields.String(allow_none=True, metadata={
        "description": "Reinsert, Write Off, or null: a person sets it"})


class RmaChangeSchema(Schema):
    at = UTCDateTime()
    event = fields.String()
    delivery_id = fields.Integer(allow_none=True)
    actor = fields.String()
    message = fields.String()


class RmaSchema(Schema):
    id = fields.Integer()
    channel_id = fields.Integer()
    order_id = fields.Integer()
    channel_refund_id = fields.String()
    status = fields.String(metadata={"description": "open -> received -> closed, or "
                                                    "open -> cancelled"})
    note = fields.String(allow_none=True)
    warning = fields.String(allow_none=True, metadata={
        "description": "Why the refund needs a look (lines not on the order, more refunded "
                       "than shipped); null when nothing"})
    delivery_id = fields.Integer(allow_none=True)
    refunded_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    lines = fields.List(fields.Nested(RmaLineSchema))


class RmaDetailSchema(RmaSchema):
    history = fields.List(fields.Nested(RmaChangeSchema))


class RmaQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    order_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    status = fields.String(validate=validate.OneOf(RMA_STATUSES))


class RmaPatchSchema(StrictSchema):
    status = fields.String(required=True, validate=validate.OneOf(RMA_STATUSES))


class RmaLinePatchSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(RESTOCK_ACTIONS))


class OrderDetailSchema(OrderSchema):
    lines = fields.List(fields.Nested(OrderLineSchema))
    history = fields.List(fields.Nested(OrderChangeSchema))
    held_intents = fields.List(fields.Nested(HeldIntentSchema))
    rmas = fields.List(fields.Nested(RmaSchema))


OFFSET = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10**9), metadata={
    "description": "Skip this many items first. Prefer `cursor`: an offset reads and skips "
                   "every item before it"})


class OrderQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    channel_order_id = fields.String(validate=validate.Length(max=CHANNEL_ORDER_ID_LENGTH))
    status = fields.String(validate=STATUS)
    created_since = UTCDateTime(metadata={"description": "Orders created at or after this"})
    created_until = UTCDateTime(metadata={"description": "Orders created before this"})
    offset = OFFSET


OUTCOMES = list(DELIVERY_OUTCOMES)


class DeliveryQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    outcome = fields.String(validate=validate.OneOf(OUTCOMES + [DeliveryState.PENDING]))
    channel_order_id = fields.String(validate=validate.Length(max=CHANNEL_ORDER_ID_LENGTH))
    offset = OFFSET


class DeliverySchema(Schema):
    id = fields.Integer()
    channel_id = fields.Integer()
    channel_type = fields.String()
    dedupe_key = fields.String()
    topic = fields.String(allow_none=True)
    channel_order_id = fields.String(allow_none=True)
    occurred_at = UTCDateTime(allow_none=True)
    received_at = UTCDateTime()
    state = fields.String()
    outcome = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    attempts = fields.Integer()
    next_attempt_at = UTCDateTime(allow_none=True)
    deferred_until = UTCDateTime(allow_none=True)
    processed_at = UTCDateTime(allow_none=True)
    body_purged_at = UTCDateTime(allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    headers = fields.Dict()
    intents = fields.List(fields.Dict(), allow_none=True)
    body = fields.String(allow_none=True, metadata={"description": "Raw body as text"})


REPLAYABLE = [Outcome.FAILED, Outcome.DEAD, Outcome.IGNORED, Outcome.APPLIED, Outcome.DEFERRED]


class ReplayWindowSchema(StrictSchema):
    channel_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**62))
    since = UTCDateTime(required=True)
    until = UTCDateTime(required=True)
    outcome = fields.List(fields.String(validate=validate.OneOf(REPLAYABLE)),
                          load_default=lambda: [Outcome.FAILED, Outcome.DEAD])
    after_id = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62),
                              metadata={"description": "Continue after this delivery id: the "
                                                       "previous answer's next.after_id"})
    limit = fields.Integer(validate=validate.Range(min=1, max=2**31), metadata={
        "description": "At most this many deliveries (never more than "
                       "ORDERHOOKS_REPLAY_MAX_DELIVERIES)"})


class ReplayNextSchema(Schema):
    """The body to POST to /deliveries/replay for the next part of the window."""
    channel_id = fields.Integer()
    since = UTCDateTime()
    until = UTCDateTime()
    outcome = fields.List(fields.String())
    after_id = fields.Integer()


class ReplayResultSchema(Schema):
    replayed = fields.Integer(metadata={"description": "How many deliveries were queued again"})
    delivery_ids = fields.List(fields.Integer())
    limit = fields.Integer(metadata={"description": "The most this request could replay"})
    next = fields.Nested(ReplayNextSchema, allow_none=True, metadata={
        "description": "null when the window is done; else the body to POST for the rest"})


class StatusSchema(Schema):
    value = fields.String()
    label = fields.String()
    selectable = fields.Boolean()


class PluginSchema(Schema):
    name = fields.String()
    version = fields.String(allow_none=True)
    channel_types = fields.List(fields.String())
    status = fields.String()
    error = fields.String(allow_none=True)


class AlertQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    status = fields.String(validate=validate.OneOf(list(alerts.STATUSES)))
    kind = fields.String(validate=validate.Length(max=64))


class AlertSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    channel_id = fields.Integer(allow_none=True)
    recipients = fields.List(fields.String())
    subject = fields.String()
    body = fields.String()
    status = fields.String(metadata={"enum": list(alerts.STATUSES), "description":
                                     "pending (waiting, or waiting for a retry), sending, sent, "
                                     "or failed (given up: see last_error)"})
    attempts = fields.Integer()
    next_attempt_at = UTCDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = UTCDateTime()
    sent_at = UTCDateTime(allow_none=True)


class EventQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    after = fields.String(validate=validate.Length(max=64), metadata={
        "description": "Read events after this cursor (the `after` of the previous answer's "
                       "Link: rel=\"next\" URL); absent: from the oldest event kept"})
    types = fields.String(validate=validate.Length(max=2000), metadata={
        "description": "Only these event types, comma-separated (or the parameter repeated)"})
    channel = fields.Integer(validate=validate.Range(min=1, max=2**62),
                             metadata={"description": "Only events of this channel"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000),
                           metadata={"description": "At most this many events"})
    wait = fields.Float(validate=validate.Range(min=0, max=20), metadata={
        "description": "Long poll: when no event is there yet, wait up to this many seconds "
                       "(at most 20) and answer as soon as one is"})


class EventSchema(Schema):
    id = fields.String(metadata={"description": "Stable id (evt_...), the webhook-id of its "
                                                "outbound webhooks"})
    type = fields.String()
    timestamp = fields.String(metadata={"description": "When the change was made (UTC)"})
    channel_id = fields.Integer(allow_none=True)
    data = fields.Dict(metadata={"description": "The resource after the change (docs/events.md)"})


EVENT_TYPE = validate.OneOf(list(events.TYPES))
ENDPOINT_URL = fields.String(validate=validate.Length(min=1, max=2000), metadata={
    "description": "Where events are POSTed: https (http only where "
                   "ORDERHOOKS_ALLOWED_WEBHOOK_URLS lists it), no user, password, query or "
                   "fragment; redirects are not followed", "example": "https://routing.example.com/hooks"})


class EndpointCreateSchema(StrictSchema):
    url = fields.String(required=True, validate=ENDPOINT_URL.validate,
                        metadata=ENDPOINT_URL.metadata)
    description = fields.String(load_default="", validate=validate.Length(max=200))
    event_types = fields.List(fields.String(validate=EVENT_TYPE), load_default=list,
                              validate=validate.Length(max=len(events.TYPES)), metadata={
                                  "description": "Event types sent (empty: every type)"})
    channel_ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=2**62)),
                              load_default=list, validate=validate.Length(max=1000), metadata={
                                  "description": "Only these channels' events (empty: all)"})
    enabled = fields.Boolean(load_default=True)


class EndpointPatchSchema(StrictSchema):
    url = fields.String(validate=ENDPOINT_URL.validate, metadata=ENDPOINT_URL.metadata)
    description = fields.String(validate=validate.Length(max=200))
    event_types = fields.List(fields.String(validate=EVENT_TYPE),
                              validate=validate.Length(max=len(events.TYPES)))
    channel_ids = fields.List(fields.Integer(validate=validate.Range(min=1, max=2**62)),
                              validate=validate.Length(max=1000))
    enabled = fields.Boolean(metadata={"description": "Enable a disabled endpoint again: it "
                                                      "resumes where it stopped"})


class EndpointSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    description = fields.String()
    event_types = fields.List(fields.String())
    channel_ids = fields.List(fields.Integer())
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    failing_since = UTCDateTime(allow_none=True, metadata={
        "description": "Since when every attempt failed (null: the last one succeeded)"})
    previous_secret_until = UTCDateTime(allow_none=True, metadata={
        "description": "Until when the secret before the last rotation signs too"})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class EndpointCreatedSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "The signing secret (whsec_...), shown "
                                                    "this once"})


class RotateSecretSchema(StrictSchema):
    overlap_seconds = fields.Integer(load_default=86400, validate=validate.Range(min=0,
                                                                                max=7 * 86400),
                                     metadata={"description": "How long the current secret "
                                                              "keeps signing beside the new one"})


class RotatedSecretSchema(Schema):
    secret = fields.String(metadata={"description": "The new secret, shown this once"})
    previous_secret_until = UTCDateTime()


class MessageQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    state = fields.String(validate=validate.OneOf(["pending", "delivered", "failed"]))


class MessageSchema(Schema):
    id = fields.Integer()
    event_id = fields.String(metadata={"description": "The event's id (the webhook-id)"})
    event_type = fields.String()
    state = fields.String(metadata={"description": "pending | delivered | failed"})
    attempts = fields.Integer(metadata={"description": "Failed attempts so far"})
    next_attempt_at = UTCDateTime()
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = UTCDateTime()
    delivered_at = UTCDateTime(allow_none=True)


class AttemptQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    message_id = fields.Integer(validate=validate.Range(min=1, max=2**62))


class AttemptSchema(Schema):
    id = fields.Integer()
    message_id = fields.Integer()
    at = UTCDateTime()
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Float()
    response_body = fields.String(allow_none=True, metadata={
        "description": "The first 2,048 bytes of the answer"})
    error = fields.String(allow_none=True)


class RecoverSchema(StrictSchema):
    since = UTCDateTime(required=True)
    until = UTCDateTime(load_default=None)


class RecoverResultSchema(Schema):
    resent = fields.Integer(metadata={"description": "How many failed messages were queued again"})


class ProductQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    channel_product_id = fields.String(validate=validate.Length(max=PRODUCT_ID_LENGTH))
    sku = fields.String(validate=validate.Length(min=1, max=SKU_LENGTH), metadata={
        "description": "Products with this SKU, their own or one of their variants'"})
    deleted = fields.Boolean(metadata={
        "description": "true: only products deleted in the channel; false: only live ones"})
    offset = OFFSET


class ProductVariantSchema(Schema):
    channel_variant_id = fields.String()
    sku = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    price = fields.String(allow_none=True, metadata={"description": "A decimal, as text"})
    position = fields.Integer(allow_none=True)


class ProductChangeSchema(Schema):
    id = fields.Integer()
    at = UTCDateTime()
    event = fields.String(metadata={"description": "created | updated | deleted | restored"})
    channel_updated_at = UTCDateTime(allow_none=True)
    delivery_id = fields.Integer(allow_none=True)
    changes = fields.Dict(metadata={"description": "field: [old, new]; variants: counts "
                                                   "added, removed, changed"})
    message = fields.String()


class ProductSchema(Schema):
    id = fields.Integer()
    channel_id = fields.Integer()
    channel_product_id = fields.String()
    title = fields.String(allow_none=True)
    sku = fields.String(allow_none=True)
    price = fields.String(allow_none=True, metadata={"description": "A decimal, as text"})
    status = fields.String(allow_none=True)
    active = fields.Boolean()
    deleted = fields.Function(lambda product: product.deleted_at is not None,
                              metadata={"type": "boolean"})
    deleted_at = UTCDateTime(allow_none=True)
    channel_updated_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class ProductDetailSchema(ProductSchema):
    variants = fields.List(fields.Nested(ProductVariantSchema))
    history = fields.List(fields.Nested(ProductChangeSchema))
