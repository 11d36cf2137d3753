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

from .models import CHANNEL_ORDER_ID_LENGTH, PRICE_LENGTH, PRODUCT_ID_LENGTH, SKU_LENGTH


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


Intent = (Cancel | Fulfill | DeactivateChannel | RedactPersonalData | Ignore | UpsertProduct
          | DeleteProduct)


def to_dict(intent) -> dict:
    """A JSON-friendly form, tagged with the intent's kind (stored with deferred intents)."""
    if isinstance(intent, UpsertProduct):
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
    raise ValueError(f"cannot restore intent of kind {kind!r}")
