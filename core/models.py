"""The tables. The inbox (``StoredDelivery``) and the order history (``OrderChange``) are the spine:
together they answer "why did (or didn't) order 250 cancel?"."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer,
                        LargeBinary, String, Text, UniqueConstraint, false, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .clock import utcnow
from .outcomes import DeliveryState, Outcome

#: Column limits for values that come from outside. Every path that takes one checks it against
#: these (the intake, the intents plugins build, the admin API), so no value reaches a column it
#: does not fit: PostgreSQL refuses it (SQLite would keep it whole).
CHANNEL_ORDER_ID_LENGTH = 128
TOPIC_LENGTH = 128
DEDUPE_KEY_LENGTH = 255
#: An amount as a decimal string ("12345.6789"): money never passes through a float.
MONEY_LENGTH = 32
#: Names, SKUs and address fields from the channel (shown, never matched on: longer is cut).
TEXT_LENGTH = 255

# BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
PK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class SalesChannel(Base):
    __tablename__ = "sales_channels"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Encrypted JSON (core.crypto): never returned by the API, never logged.
    credentials_sealed: Mapped[str] = mapped_column(Text)
    webhook_secret_sealed: Mapped[str] = mapped_column(Text)
    valid_cancellation_statuses: Mapped[list] = mapped_column(JSON, default=list)
    valid_fulfillment_statuses: Mapped[list] = mapped_column(JSON, default=list)
    #: Addresses that get this channel's alert mails, besides ORDERHOOKS_ALERT_EMAILS.
    alert_emails: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    #: Set when the channel is deleted: it is then inactive for good and gone from the lists,
    #: while its orders, deliveries and histories stay (they answer "why did order 250 cancel?").
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: Which webhooks the channel uses (core.webhooks names); None: derived from the status
    #: lists (cancellation and fulfilment when their statuses are selected).
    webhooks: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: Whether the channel's test orders (e.g. Shopify's ``test: true``) are imported.
    import_test_orders: Mapped[bool] = mapped_column(Boolean, default=False,
                                                     server_default=false())
    #: "Restock items from Refund based on the channel's restock value": when on, an RMA line
    #: takes the action the refund's restock data implies (Reinsert / Write Off); when off
    #: (the default), every action is left for a person to choose.
    refund_restock_actions: Mapped[bool] = mapped_column(Boolean, default=False,
                                                         server_default=false())


class ChannelChange(Base):
    """The edit history of a channel's settings: what changed, old → new, when, by whom."""
    __tablename__ = "channel_changes"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"),
                                            index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[object | None] = mapped_column(JSON, nullable=True)
    new_value: Mapped[object | None] = mapped_column(JSON, nullable=True)
    actor: Mapped[str] = mapped_column(String(64), default="admin-api")


class Order(Base):
    """The routed copy of a channel's order."""
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id"))
    channel_order_id: Mapped[str] = mapped_column(String(CHANNEL_ORDER_ID_LENGTH))
    status: Mapped[str] = mapped_column(String(32), index=True)
    shipments: Mapped[list] = mapped_column(JSON, default=list)
    #: Personal data of the buyer ({id, name, email, phone}), removed by privacy requests.
    customer: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: What the channel's order says, when it came from the channel (CreateOrder): its number
    #: as the merchant sees it, when it was placed, its currency and totals (decimal strings).
    order_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    placed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(8), nullable=True)
    totals: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: Personal data too, removed by privacy requests.
    shipping_address: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    billing_address: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: Every payment the channel reported, applied or not: {at, amount, currency, status,
    #: outcome, reason, delivery_id}.
    payments: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: High-water mark: when the newest channel event that changed this order's status happened.
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("channel_id", "channel_order_id",
                                       name="uq_orders_channel_order"),
                      # the admin API lists a channel's orders by creation time
                      Index("ix_orders_channel_created", "channel_id", "created_at"))

    history: Mapped[list["OrderChange"]] = relationship(order_by="OrderChange.id",
                                                        back_populates="order")
    lines: Mapped[list["OrderLine"]] = relationship(order_by="OrderLine.id",
                                                    back_populates="order")


class OrderLine(Base):
    """One line of a routed order, as the channel sent it. Ids are text (64-bit channel ids
    never pass through a float), the unit price a decimal string in the order's currency."""
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    channel_line_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    product_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    variant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sku: Mapped[str | None] = mapped_column(String(TEXT_LENGTH), nullable=True)
    name: Mapped[str | None] = mapped_column(String(TEXT_LENGTH), nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[str | None] = mapped_column(String(MONEY_LENGTH), nullable=True)

    order: Mapped[Order] = relationship(back_populates="lines")


class OrderChange(Base):
    """One line of an order's history, with the delivery that caused it (if any)."""
    __tablename__ = "order_changes"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: created | status_changed | cancelled | shipped | shipments_recorded | ignored | deferred
    #: | released | redacted | details_imported | paid | payment_ignored | rma_created
    #: | refund_ignored
    event: Mapped[str] = mapped_column(String(32))
    old_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    new_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(PK, nullable=True, index=True)
    message: Mapped[str] = mapped_column(Text, default="")

    order: Mapped[Order] = relationship(back_populates="history")


#: An RMA's statuses, in the order a person moves it on: open (the refund was recorded; items
#: expected back) -> received (the items arrived at the warehouse) -> closed (every line's
#: action carried out). ``cancelled`` ends an RMA whose items never come back.
RMA_STATUSES = ("open", "received", "closed", "cancelled")
#: The moves a person may make.
RMA_MOVES = {"open": ("received", "cancelled"), "received": ("closed",),
             "closed": (), "cancelled": ()}


class Rma(Base):
    """A return authorisation opened by a channel's refund of a SHIPPED order: one per refund
    (``channel_refund_id`` is unique per channel)."""
    __tablename__ = "rmas"
    __table_args__ = (UniqueConstraint("channel_id", "channel_refund_id",
                                       name="uq_rmas_channel_refund"),
                      Index("ix_rmas_channel_status", "channel_id", "status", "id"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"),
                                          index=True)
    channel_refund_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Why the refund needs a look (e.g. it refunds more than was shipped); None: nothing.
    warning: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(PK, nullable=True)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list["RmaLine"]] = relationship(order_by="RmaLine.id", back_populates="rma")
    history: Mapped[list["RmaChange"]] = relationship(order_by="RmaChange.id",
                                                      back_populates="rma")


class RmaLine(Base):
    """One refunded line: the order line (channel line id), SKU, quantity, amount (a decimal
    string) and its action: Reinsert, Write Off, or None for a person to choose."""
    __tablename__ = "rma_lines"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    rma_id: Mapped[int] = mapped_column(ForeignKey("rmas.id", ondelete="CASCADE"), index=True)
    channel_line_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sku: Mapped[str | None] = mapped_column(String(TEXT_LENGTH), nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[str | None] = mapped_column(String(MONEY_LENGTH), nullable=True)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)

    rma: Mapped[Rma] = relationship(back_populates="lines")


class RmaChange(Base):
    """One line of an RMA's history: created, action_set, status_changed..."""
    __tablename__ = "rma_changes"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    rma_id: Mapped[int] = mapped_column(ForeignKey("rmas.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[int | None] = mapped_column(PK, nullable=True)
    actor: Mapped[str] = mapped_column(String(64), default="worker")
    message: Mapped[str] = mapped_column(Text, default="")

    rma: Mapped[Rma] = relationship(back_populates="history")


#: What a processed delivery's ``outcome`` may be (None: not processed yet).
DELIVERY_OUTCOMES = tuple(Outcome)


class StoredDelivery(Base):
    """The inbox: one row per webhook delivery, stored before it is acknowledged."""
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("channel_id", "dedupe_key", name="uq_deliveries_dedupe"),
        Index("ix_deliveries_channel_outcome", "channel_id", "outcome", "received_at"),
        Index("ix_deliveries_order", "channel_id", "channel_order_id"),
        Index("ix_deliveries_claim", "channel_id", "state", "next_attempt_at"),
        # The claim's look for lapsed claims (core/worker.py): claims in flight by channel and
        # expiry, so the look reads only claims that lapsed, never each claim in flight nor the
        # index entries that rows leaving "processing" leave behind until they are vacuumed.
        Index("ix_deliveries_lapsed", "channel_id", "claimed_until",
              postgresql_where=text("state = 'processing'"),
              sqlite_where=text("state = 'processing'")),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id"))
    channel_type: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(DEDUPE_KEY_LENGTH))
    topic: Mapped[str | None] = mapped_column(String(TOPIC_LENGTH), nullable=True)
    channel_order_id: Mapped[str | None] = mapped_column(String(CHANNEL_ORDER_ID_LENGTH),
                                                         nullable=True)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Not indexed on its own: every insert pays for each index (WAL pages, lock time), and the
    # queries by age all start from a channel (ix_deliveries_channel_outcome, _claim).
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    #: The raw body, byte for byte; None once purged (retention) or redacted.
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    body_purged_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: A DeliveryState: pending (waiting, or waiting to be retried) | processing (claimed) | done
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    #: An Outcome, None until processed: applied | ignored | deferred | failed | dead
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    intents: Mapped[list | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deferred_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class PendingIntent(Base):
    """An intent held back: its order is UNPROCESSED or not imported yet."""
    __tablename__ = "pending_intents"
    __table_args__ = (Index("ix_pending_intents_order", "channel_id", "channel_order_id"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"))
    channel_order_id: Mapped[str] = mapped_column(String(CHANNEL_ORDER_ID_LENGTH))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"),
                                             index=True)
    intent: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Subscription(Base):
    """A webhook subscription the service keeps on a channel, as last seen."""
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("channel_id", "topic", name="uq_subscriptions_topic"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(128))
    destination: Mapped[str] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: active | failed (could not be created or repaired: see last_error)
    status: Mapped[str] = mapped_column(String(16), default="active")
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_action: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SubscriptionEvent(Base):
    """What a subscription check found and did (created, reactivated, recreated, deleted...)."""
    __tablename__ = "subscription_events"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"),
                                            index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    topic: Mapped[str | None] = mapped_column(String(128), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    remote_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class WorkerState(Base):
    """Small key/value rows shared by workers (e.g. when subscriptions were last checked)."""
    __tablename__ = "worker_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Alert(Base):
    """The alert outbox: a mail to send, written in the transaction of the change it reports
    and sent by the worker's alert sender (core.alerts)."""
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_due", "status", "next_attempt_at"),
                      Index("ix_alerts_channel_kind", "channel_id", "kind", "id"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    #: subscription.check | channel.deactivated | deliveries.dead | endpoint.disabled | ...
    kind: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("sales_channels.id"),
                                                   nullable=True)
    recipients: Mapped[list] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    #: What the alert reports, in a form the next one compares with (a subscription check's
    #: failing topics) or adds to (the dead deliveries of a batch).
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: pending (waiting, or waiting to be retried) | sending (claimed) | sent | failed (given up)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Event(Base):
    """One change orderhooks made, written in the same transaction as the change (an outbox).

    ``position`` is the feed's order: NULL when written, set by the sequencer
    (:func:`core.events.number`), which numbers the committed events and its own transaction's
    under one lock held until it commits, in the order they became visible — so a reader that
    saw position N has already seen every position below it, whatever order the writers
    committed in."""
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_position", "position", unique=True),
                      Index("ix_events_type_position", "type", "position"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    #: The stable public id (``evt_`` + 26 characters); the outbound webhook's ``webhook-id``.
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    channel_id: Mapped[int | None] = mapped_column(PK, nullable=True)
    #: What must reach a receiver in order (``order:<id>``): a later event with the same key is
    #: not sent before an earlier one; None: no order to keep.
    order_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The resource as it is after the change.
    data: Mapped[dict] = mapped_column(JSON)
    position: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WebhookEndpoint(Base):
    """Where events are POSTed (signed per Standard Webhooks)."""
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(200), default="")
    #: Event types sent (empty: every type); channel ids (empty: every channel).
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    channel_ids: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Encrypted (core.crypto). The previous secret signs too until previous_secret_until.
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: The feed position up to which events were turned into messages for this endpoint.
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Since when every attempt failed (None: the last one succeeded).
    failing_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: The sender process that holds this endpoint now (one sender per endpoint keeps order).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class WebhookMessage(Base):
    """One event to send to one endpoint, and what became of it.

    Messages and attempts name their endpoint, event and message by id without a foreign key:
    a key's check on PostgreSQL locks the parent row for every child written (``FOR KEY
    SHARE``), and at a few hundred events a second those checks were the server's largest cost
    (docs/performance.md). Only the fan-out makes messages (from events it has just read, in
    its transaction) and only the sender makes attempts (for the messages it sends); retention
    deletes attempts, then messages, then the events no message names, and deleting an
    endpoint deletes its attempts and messages first (core/endpoints.py)."""
    __tablename__ = "webhook_messages"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_messages"),
                      # the sender's due scan and the admin API's lists: an endpoint's
                      # messages in one state, in id order (core/sender.py)
                      Index("ix_webhook_messages_pending", "endpoint_id", "state", "id"),
                      # retention asks which events messages still refer to before it
                      # deletes any (core.retention)
                      Index("ix_webhook_messages_event", "event_id"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(PK)
    event_id: Mapped[int] = mapped_column(PK)
    order_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: pending (waiting or waiting to be retried) | delivered | failed (retries exhausted)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebhookAttempt(Base):
    """One POST of a message: its answer's status, latency and a bounded slice of its body
    (its endpoint and message by id, without foreign keys: see :class:`WebhookMessage`)."""
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(PK)
    message_id: Mapped[int] = mapped_column(PK, index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


#: Column limits of the product catalog: channel product and variant ids (64-bit integers,
#: kept as their digits), SKUs and decimal prices as the channel writes them.
PRODUCT_ID_LENGTH = 64
SKU_LENGTH = 255
PRICE_LENGTH = 32


class Product(Base):
    """A channel's product as last seen: kept after the channel deletes it (``deleted_at``), so
    its history and the order lines that name it stay readable."""
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("channel_id", "channel_product_id",
                                       name="uq_products_channel_product"),
                      Index("ix_products_channel_sku", "channel_id", "sku"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id"))
    channel_product_id: Mapped[str] = mapped_column(String(PRODUCT_ID_LENGTH))
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    sku: Mapped[str | None] = mapped_column(String(SKU_LENGTH), nullable=True)
    #: A decimal as the channel wrote it (never a float).
    price: Mapped[str | None] = mapped_column(String(PRICE_LENGTH), nullable=True)
    #: The channel's own status word (Shopify: active, draft, archived; BigCommerce: visible,
    #: hidden).
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: High-water mark: the channel's time of the newest state applied (its updated_at, or the
    #: deletion's time). Older deliveries never move the product back.
    channel_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    variants: Mapped[list["ProductVariantRow"]] = relationship(
        order_by="ProductVariantRow.id", back_populates="product", cascade="all, delete-orphan")
    history: Mapped[list["ProductChange"]] = relationship(order_by="ProductChange.id",
                                                          back_populates="product")


class ProductVariantRow(Base):
    """One variant of a product (a size, a colour): its own channel id, SKU and price."""
    __tablename__ = "product_variants"
    __table_args__ = (UniqueConstraint("product_id", "channel_variant_id",
                                       name="uq_product_variants_variant"),
                      Index("ix_product_variants_channel_variant", "channel_id",
                            "channel_variant_id"),
                      Index("ix_product_variants_channel_sku", "channel_id", "sku"))

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    #: The product's channel, so a SKU or variant id is found without the products table.
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id"))
    channel_variant_id: Mapped[str] = mapped_column(String(PRODUCT_ID_LENGTH))
    sku: Mapped[str | None] = mapped_column(String(SKU_LENGTH), nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    price: Mapped[str | None] = mapped_column(String(PRICE_LENGTH), nullable=True)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)

    product: Mapped[Product] = relationship(back_populates="variants")


class ProductChange(Base):
    """One line of a product's history, with the delivery that caused it."""
    __tablename__ = "product_changes"

    id: Mapped[int] = mapped_column(PK, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"),
                                            index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: created | updated | deleted | restored
    event: Mapped[str] = mapped_column(String(32))
    #: The channel's time of the state this change applied.
    channel_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(PK, nullable=True, index=True)
    #: What changed: field -> [old, new]; variants as counts added / removed / changed.
    changes: Mapped[dict] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")

    product: Mapped[Product] = relationship(back_populates="history")
