"""marshmallow schemas of the admin API."""
from __future__ import annotations

from datetime import timezone

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from .. import statuses
from ..intents import InvalidIntent, check_channel_order_id
from ..models import CHANNEL_ORDER_ID_LENGTH, DELIVERY_OUTCOMES, PRODUCT_ID_LENGTH, SKU_LENGTH
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


class ChannelCreateSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"example": "bigcommerce"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    credentials = fields.Dict(keys=fields.String(), required=True, load_only=True,
                              metadata={"description": "Channel credentials (write-only)"})
    valid_cancellation_statuses = StatusList(load_default=list)
    valid_fulfillment_statuses = StatusList(load_default=list)
    active = fields.Boolean(load_default=True)


class ChannelPatchSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    credentials = fields.Dict(keys=fields.String(), load_only=True)
    valid_cancellation_statuses = StatusList()
    valid_fulfillment_statuses = StatusList()
    active = fields.Boolean()


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


class OrderCreateSchema(StrictSchema):
    channel_id = fields.Integer(required=True, strict=True,
                                validate=validate.Range(min=1, max=2**62))
    channel_order_id = fields.String(required=True, validate=[
        validate.Length(min=1, max=CHANNEL_ORDER_ID_LENGTH), _channel_order_id])
    status = fields.String(load_default=statuses.UNPROCESSED, validate=STATUS)
    customer = fields.Dict(keys=fields.String(), allow_none=True, load_default=None)


class OrderPatchSchema(StrictSchema):
    status = fields.String(required=True, validate=STATUS)


class OrderSchema(Schema):
    id = fields.Integer()
    channel_id = fields.Integer()
    channel_order_id = fields.String()
    status = fields.String()
    shipments = fields.List(fields.Nested(ShipmentSchema))
    customer = fields.Dict(allow_none=True)
    last_event_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class OrderDetailSchema(OrderSchema):
    history = fields.List(fields.Nested(OrderChangeSchema))
    held_intents = fields.List(fields.Nested(HeldIntentSchema))


OFFSET = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10**9), metadata={
    "description": "Skip this many items first. Prefer `cursor`: an offset reads and skips "
                   "every item before it"})


class OrderQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    channel_id = fields.Integer(validate=validate.Range(min=1, max=2**62))
    channel_order_id = fields.String(validate=validate.Length(max=CHANNEL_ORDER_ID_LENGTH))
    status = fields.String(validate=STATUS)
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
