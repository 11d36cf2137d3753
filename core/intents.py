"""The generic vocabulary channel plugins speak.

A plugin turns one delivery from its channel into zero or more of these. The core then decides,
under the channel's status rules, what happens to the routed order. Intents are addressed by the
channel's own order id (``channel_order_id``), always a string.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from .models import (CHANNEL_ORDER_ID_LENGTH, MONEY_LENGTH, PRICE_LENGTH, PRODUCT_ID_LENGTH,
                     SKU_LENGTH, TEXT_LENGTH)


class InvalidIntent(ValueError):
    """An intent the service cannot hold, whatever it retries: e.g. an order id no order table
    can store. The delivery that led to it ends dead at once, with this message as its reason."""


def check_channel_order_id(value) -> str:
    """``value`` as a channel order id, or :class:`InvalidIntent`: a non-empty string of at most
    ``CHANNEL_ORDER_ID_LENGTH`` characters that the database can store (UTF-8, no NUL). One rule
    for intents and for the admin API's order ids; the intake's index column keeps at most the
    same length (its delivery is stored whole either way, and the worker applies this rule)."""
    try:
        text = "" if value is None else str(value)
    except ValueError:  # an integer too long for Python to write out
        raise InvalidIntent("the channel order id is a number too long to be an order id") from None
    if not text:
        raise InvalidIntent("the channel order id is empty")
    if len(text) > CHANNEL_ORDER_ID_LENGTH:
        raise InvalidIntent(f"the channel order id is {len(text)} characters long, more than "
                            f"the {CHANNEL_ORDER_ID_LENGTH} an order id may have: "
                            f"{text[:40]!r}...")
    if not _storable(text):
        raise InvalidIntent(f"the channel order id {text[:40]!r} has characters the database "
                            "cannot store")
    return text


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class ShipmentItem:
    """One line of a shipment: the channel's line/product reference and a quantity."""
    sku: str | None = None
    line_id: str | None = None
    quantity: int = 1


@dataclass(frozen=True)
class Shipment:
    """A parcel that left the warehouse. ``shipment_id`` is the channel's id, used to merge."""
    tracking_number: str | None = None
    carrier: str | None = None
    tracking_url: str | None = None
    items: tuple[ShipmentItem, ...] = ()
    shipment_id: str | None = None

    @property
    def key(self) -> str:
        """Identity used to merge shipments: the channel's id, else the tracking number."""
        return f"id:{self.shipment_id}" if self.shipment_id else f"tn:{self.tracking_number}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Shipment":
        items = tuple(ShipmentItem(**i) for i in data.get("items") or ())
        return cls(**{**data, "items": items})


@dataclass(frozen=True)
class Cancel:
    """The order was cancelled in the channel."""
    channel_order_id: str
    reason: str | None = None
    #: When the channel says this happened; used so an older event never overrides a newer one.
    occurred_at: datetime | None = None

    def __post_init__(self):
        check_channel_order_id(self.channel_order_id)


@dataclass(frozen=True)
class Fulfill:
    """The order shipped in the channel.

    ``complete=False`` means a partial shipment: the shipments are recorded on the order, but its
    status does not move to SHIPPED.
    """
    channel_order_id: str
    shipments: tuple[Shipment, ...] = ()
    complete: bool = True
    occurred_at: datetime | None = None

    def __post_init__(self):
        check_channel_order_id(self.channel_order_id)


@dataclass(frozen=True)
class DeactivateChannel:
    """The channel revoked us (e.g. the app was uninstalled): stop using its credentials."""
    reason: str


@dataclass(frozen=True)
class RedactPersonalData:
    """Remove personal data: one customer's (by ids/emails), or the whole channel's when
    ``everything`` is true. ``channel_order_ids`` narrows the orders concerned."""
    customer_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    channel_order_ids: tuple[str, ...] = ()
    everything: bool = False


@dataclass(frozen=True)
class Ignore:
    """Nothing to do for this delivery, and why (e.g. a topic the service does not act on)."""
    reason: str


def check_money(value, what: str) -> str | None:
    """``value`` as a decimal string (None stays None), or :class:`InvalidIntent`. Money travels
    as text from the channel's JSON to the database, never through a float: ``"19.99"`` stays
    ``"19.99"``. Numbers are accepted only as ints or Decimals (exact); a float is refused,
    since its digits are already rounded."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidIntent(f"{what} must be a decimal string, not a {type(value).__name__}")
    text = str(value).strip()
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InvalidIntent(f"{what} {text[:40]!r} is not a decimal amount") from None
    if not number.is_finite() or len(text) > MONEY_LENGTH:
        raise InvalidIntent(f"{what} {text[:40]!r} is not a decimal amount of at most "
                            f"{MONEY_LENGTH} characters")
    return text


def _short(value, what: str, length: int = TEXT_LENGTH) -> str | None:
    """An optional text field from the channel: None when absent or empty, else text the
    database can store, cut to ``length`` characters (names, SKUs and addresses are shown,
    never matched on, so a cut keeps the order importable)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isascii():  # ASCII encodes as UTF-8 whatever it holds: only NULs to drop
        return (text.replace("\x00", "") if "\x00" in text else text)[:length]
    text = text.replace("\x00", "")
    if not _storable(text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:length]


@dataclass(frozen=True)
class Customer:
    """The buyer, as the channel names them: personal data, blanked by privacy requests."""
    channel_customer_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None

    def __post_init__(self):
        for name in ("channel_customer_id", "name", "email", "phone"):
            object.__setattr__(self, name, _short(getattr(self, name), name))

    def to_record(self) -> dict:
        """As the order keeps it: ``id`` is the key privacy requests match on."""
        return {"id": self.channel_customer_id, "name": self.name, "email": self.email,
                "phone": self.phone}


@dataclass(frozen=True)
class Address:
    """A shipping or billing address (personal data, blanked by privacy requests)."""
    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    phone: str | None = None
    email: str | None = None

    def __post_init__(self):
        for name in ADDRESS_FIELDS:
            object.__setattr__(self, name, _short(getattr(self, name), name))

    def to_record(self) -> dict:
        return {name: getattr(self, name) for name in ADDRESS_FIELDS}


ADDRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Address))


@dataclass(frozen=True)
class OrderLine:
    """One line of an order. Ids are the channel's, as text (64-bit ids never pass through a
    float); ``unit_price`` a decimal string in the order's currency."""
    channel_line_id: str | None = None
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    name: str | None = None
    quantity: int = 1
    unit_price: str | None = None

    def __post_init__(self):
        for name in ("channel_line_id", "product_id", "variant_id"):
            object.__setattr__(self, name, _short(getattr(self, name), name, 64))
        object.__setattr__(self, "sku", _short(self.sku, "sku"))
        object.__setattr__(self, "name", _short(self.name, "name"))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or not (
                0 <= self.quantity < 2 ** 31):
            raise InvalidIntent(f"line {self.channel_line_id or '?'}: quantity "
                                f"{str(self.quantity)[:20]!r} is not a whole number of items")
        object.__setattr__(self, "unit_price", check_money(self.unit_price, "unit_price"))


#: The amounts an order may carry in ``CreateOrder.totals`` (decimal strings).
TOTALS = ("total", "subtotal", "tax", "shipping", "discount")


@dataclass(frozen=True)
class CreateOrder:
    """The channel created an order: import it as a routed order. Idempotent: an order that
    already exists is left as it is (its missing details filled in). ``paid`` decides the
    first status: ``UNPROCESSED`` when paid, ``AWAITING_PAYMENT`` when not."""
    channel_order_id: str
    order_number: str | None = None
    placed_at: datetime | None = None
    currency: str | None = None
    #: Decimal strings keyed by :data:`TOTALS` (missing ones are absent).
    totals: dict = dataclasses.field(default_factory=dict)
    paid: bool = False
    customer: Customer | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    lines: tuple[OrderLine, ...] = ()
    #: The channel's word for the payment state (e.g. Shopify's ``financial_status``).
    payment_status: str | None = None
    occurred_at: datetime | None = None

    def __post_init__(self):
        check_channel_order_id(self.channel_order_id)
        object.__setattr__(self, "order_number", _short(self.order_number, "order_number", 64))
        object.__setattr__(self, "currency", _short(self.currency, "currency", 8))
        object.__setattr__(self, "payment_status", _short(self.payment_status,
                                                          "payment_status", 32))
        unknown = set(self.totals or {}) - set(TOTALS)
        if unknown:
            raise InvalidIntent(f"unknown totals {sorted(unknown)}; known: {', '.join(TOTALS)}")
        object.__setattr__(self, "totals", {
            k: m for k, m in ((k, check_money(v, k)) for k, v in (self.totals or {}).items())
            if m is not None})
        object.__setattr__(self, "lines", tuple(self.lines))


@dataclass(frozen=True)
class RecordPayment:
    """The channel says the order was paid. An order awaiting payment moves on to
    ``UNPROCESSED``; in any other status the payment is recorded and changes nothing."""
    channel_order_id: str
    amount: str | None = None
    currency: str | None = None
    #: The channel's word for it (``paid``, ``Awaiting Fulfillment (11)``...).
    status: str | None = None
    occurred_at: datetime | None = None

    def __post_init__(self):
        check_channel_order_id(self.channel_order_id)
        object.__setattr__(self, "amount", check_money(self.amount, "amount"))
        object.__setattr__(self, "currency", _short(self.currency, "currency", 8))
        object.__setattr__(self, "status", _short(self.status, "status", 64))


def check_product_id(value, what: str = "product id") -> str:
    """A channel product or variant id as its decimal digits, or :class:`InvalidIntent`. Ids are
    64-bit integers: kept as text (or exact ints), never through a float."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidIntent(f"the {what} is not an id: {str(value)[:40]!r}")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise InvalidIntent(f"the {what} {text[:40]!r} is not a positive integer of at most "
                            "20 digits")
    return text


def _check_text(value, what: str, limit: int | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidIntent(f"the {what} is not text")
    if limit is not None and len(value) > limit:
        raise InvalidIntent(f"the {what} is {len(value)} characters long, more than the "
                            f"{limit} it may have: {value[:40]!r}...")
    if not _storable(value):
        raise InvalidIntent(f"the {what} {value[:40]!r} has characters the database cannot "
                            "store")


def _check_price(value) -> None:
    """A price is a finite decimal written as text (``"19.99"``), as the channel wrote it."""
    if value is None:
        return
    _check_text(value, "price", PRICE_LENGTH)
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidIntent(f"the price {value[:40]!r} is not a decimal number") from None
    if not number.is_finite():
        raise InvalidIntent(f"the price {value[:40]!r} is not a finite number")


@dataclass(frozen=True)
class ProductVariant:
    """One variant of a product (a size, a colour) with its channel id, SKU and price."""
    variant_id: str
    sku: str | None = None
    title: str | None = None
    #: A decimal as text, e.g. "19.99".
    price: str | None = None
    position: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "variant_id", check_product_id(self.variant_id, "variant id"))
        _check_text(self.sku, "SKU", SKU_LENGTH)
        _check_text(self.title, "variant title")
        _check_price(self.price)


@dataclass(frozen=True)
class UpsertProduct:
    """The channel's product as it is now (created or updated). ``updated_at`` is the channel's
    time of this state: the catalog never takes a state older than the one it holds."""
    product_id: str
    title: str | None = None
    sku: str | None = None
    price: str | None = None
    #: The channel's status word (Shopify ``active``/``draft``/``archived``; BigCommerce
    #: ``visible``/``hidden``) and whether it counts as active.
    status: str | None = None
    active: bool = True
    variants: tuple[ProductVariant, ...] = ()
    #: False when the delivery may list only some of the variants: those it leaves out are
    #: kept, not removed.
    variants_complete: bool = True
    updated_at: datetime | None = None

    def __post_init__(self):
        object.__setattr__(self, "product_id", check_product_id(self.product_id))
        _check_text(self.title, "title")
        _check_text(self.sku, "SKU", SKU_LENGTH)
        _check_text(self.status, "status", 32)
        _check_price(self.price)


@dataclass(frozen=True)
class DeleteProduct:
    """The product was deleted in the channel. ``occurred_at``: when (None: the delivery's
    receipt time stands in, see docs/products.md)."""
    product_id: str
    occurred_at: datetime | None = None

    def __post_init__(self):
        object.__setattr__(self, "product_id", check_product_id(self.product_id))


#: What becomes of a returned line (an RMA line's action); None: a person chooses.
REINSERT = "Reinsert"
WRITE_OFF = "Write Off"
RESTOCK_ACTIONS = (REINSERT, WRITE_OFF)


@dataclass(frozen=True)
class RefundLine:
    """One refunded line: the order line it refunds (the channel's line id, as text), its SKU,
    how many items, the amount refunded (a decimal string) and the action the channel's restock
    data implies (:data:`REINSERT`, :data:`WRITE_OFF`, or None when the channel does not say)."""
    channel_line_id: str | None = None
    sku: str | None = None
    quantity: int = 1
    amount: str | None = None
    action: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "channel_line_id", _short(self.channel_line_id,
                                                           "channel_line_id", 64))
        object.__setattr__(self, "sku", _short(self.sku, "sku"))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or not (
                0 <= self.quantity < 2 ** 31):
            raise InvalidIntent(f"refund line {self.channel_line_id or '?'}: quantity "
                                f"{str(self.quantity)[:20]!r} is not a whole number of items")
        object.__setattr__(self, "amount", check_money(self.amount, "amount"))
        if self.action is not None and self.action not in RESTOCK_ACTIONS:
            raise InvalidIntent(f"refund line {self.channel_line_id or '?'}: action "
                                f"{str(self.action)[:20]!r} is none of "
                                f"{', '.join(RESTOCK_ACTIONS)} (or unset)")


@dataclass(frozen=True)
class RecordRefund:
    """The channel refunded (part of) an order: an RMA is opened for the refunded lines when
    the order is SHIPPED. Idempotent per ``channel_refund_id``: a refund already recorded
    creates nothing new. The lines' actions are kept only on channels with
    ``refund_restock_actions`` on; elsewhere a person chooses them."""
    channel_order_id: str
    channel_refund_id: str
    lines: tuple[RefundLine, ...] = ()
    note: str | None = None
    occurred_at: datetime | None = None

    def __post_init__(self):
        check_channel_order_id(self.channel_order_id)
        # Never cut: a cut id could match another refund's and be taken for a duplicate.
        refund_id = _short(self.channel_refund_id, "channel_refund_id", 10 ** 4)
        if refund_id is None:
            raise InvalidIntent("the refund has no id")
        if len(refund_id) > 64:
            raise InvalidIntent(f"the refund id is {len(refund_id)} characters long, more than "
                                f"the 64 a refund id may have: {refund_id[:40]!r}...")
        object.__setattr__(self, "channel_refund_id", refund_id)
        object.__setattr__(self, "note", _short(self.note, "note", 2000))
        lines = tuple(RefundLine(**line) if isinstance(line, dict) else line
                      for line in self.lines or ())
        object.__setattr__(self, "lines", lines)


Intent = (Cancel | Fulfill | CreateOrder | RecordPayment | RecordRefund | DeactivateChannel
          | RedactPersonalData | Ignore | UpsertProduct | DeleteProduct)
#: Intents addressed to one order (they carry ``channel_order_id``).
ORDER_INTENTS = (Cancel, Fulfill, CreateOrder, RecordPayment, RecordRefund)


_REFUND_LINE_FIELDS = tuple(f.name for f in dataclasses.fields(RefundLine))


def to_dict(intent) -> dict:
    """A JSON-friendly form, tagged with the intent's kind (stored with deferred intents and on
    the delivery). An imported order is summarised: the order keeps its lines, and its customer
    and addresses are personal data a privacy request must find in one place (the order)."""
    if isinstance(intent, CreateOrder):
        data = {"channel_order_id": intent.channel_order_id,
                "order_number": intent.order_number, "placed_at": intent.placed_at,
                "currency": intent.currency, "totals": dict(intent.totals),
                "paid": intent.paid, "payment_status": intent.payment_status,
                "lines": len(intent.lines), "occurred_at": intent.occurred_at}
    elif isinstance(intent, RecordRefund):
        # dataclasses.asdict's form, without its deep copy of every line
        data = {"channel_order_id": intent.channel_order_id,
                "channel_refund_id": intent.channel_refund_id,
                "lines": [{name: getattr(line, name) for name in _REFUND_LINE_FIELDS}
                          for line in intent.lines],
                "note": intent.note, "occurred_at": intent.occurred_at}
    elif isinstance(intent, UpsertProduct):
        # A product's variants are in the delivery's body (and may be 2,048): its record of
        # intents names how many, not each.
        data = {f.name: getattr(intent, f.name) for f in dataclasses.fields(intent)}
        data["variants"] = len(intent.variants)
    else:
        data = dataclasses.asdict(intent)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return {"kind": type(intent).__name__, **data}


def from_dict(data: dict):
    data = dict(data)
    kind = data.pop("kind")
    if data.get("occurred_at"):
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
    if kind == "Cancel":
        return Cancel(**data)
    if kind == "Fulfill":
        data["shipments"] = tuple(Shipment.from_dict(s) for s in data.get("shipments") or ())
        return Fulfill(**data)
    if kind == "RecordPayment":
        return RecordPayment(**data)
    if kind == "RecordRefund":
        return RecordRefund(**data)
    raise ValueError(f"cannot restore intent of kind {kind!r}")
