"""The product catalog: a channel's products kept in step with its product deliveries, and the
look-up that links an order line to its catalog entry.

Rules (docs/products.md):

* The channel's time decides. Each product keeps a high-water mark (``channel_updated_at``): the
  channel's ``updated_at`` of the state applied, or the time of its deletion. A state older than
  the mark is ignored, whatever order deliveries arrive in; a repeat of the state held changes
  nothing.
* A deletion keeps the product, its variants and its history, marked ``deleted_at``. At an equal
  time a deletion wins over an update; a state newer than the deletion brings the product back
  (``restored``).
* A deletion of a product the catalog never saw is kept as a deleted entry, so a late, older
  "created" cannot bring it to life.

Everything here runs inside the caller's transaction.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session, make_transient_to_detached, selectinload

from . import events
from .clock import naive_utc, utcnow
from .db import RawInsert
from .intents import DeleteProduct, UpsertProduct
from .models import Product, ProductChange, ProductVariantRow
from .outcomes import Outcome

#: The product fields a change is recorded for (variants are counted apart).
FIELDS = ("title", "sku", "price", "status", "active")
VARIANT_FIELDS = ("sku", "title", "price", "position")


def apply_intent(session: Session, channel_id: int, intent: UpsertProduct | DeleteProduct, *,
                 delivery_id: int | None, received_at: datetime) -> tuple[str, str]:
    """Carry out ``intent`` on the channel's catalog. Returns (outcome, reason) for the delivery.
    ``received_at`` stands in for the channel's time when the intent has none."""
    product = _find_locked(session, channel_id, intent.product_id)
    if isinstance(intent, UpsertProduct):
        when = naive_utc(intent.updated_at or received_at)
        return _upsert(session, channel_id, product, intent, when, delivery_id)
    when = naive_utc(intent.occurred_at or received_at)
    return _delete(session, channel_id, product, intent.product_id, when, delivery_id)


def _seen(session: Session) -> dict:
    """The products this transaction has found or created, by (channel, product id): a later
    delivery of the same batch finds a product created earlier without a flush (the worker
    records a batch without autoflush, and one flush per delivery would cost more than the
    rest of its work)."""
    return session.info.setdefault("orderhooks.products", {})


def prefetch(session: Session, batch) -> None:
    """Load the products a batch's intents name, with their variants, in one query per channel
    (locked on PostgreSQL, in id order), so applying each intent queries nothing more. ``batch``:
    (channel id, that delivery's result) pairs; results that are not lists of intents are
    skipped. On SQLite, whose transactions run one at a time, a product not found is known to
    be new; on PostgreSQL a missing one is looked for again under its lock (``_find_locked``)."""
    wanted: dict[int, set[str]] = {}
    for channel_id, result in batch:
        if isinstance(result, list):
            for intent in result:
                if isinstance(intent, (UpsertProduct, DeleteProduct)):
                    wanted.setdefault(channel_id, set()).add(intent.product_id)
    seen = _seen(session)
    serialised = session.get_bind().dialect.name != "postgresql"
    for channel_id, product_ids in wanted.items():
        query = (select(Product).where(Product.channel_id == channel_id,
                                       Product.channel_product_id.in_(product_ids))
                 .options(selectinload(Product.variants)).order_by(Product.id))
        found = {p.channel_product_id: p for p in session.scalars(query.with_for_update())}
        for product_id in product_ids:
            if product_id in found or serialised:
                seen[(channel_id, product_id)] = found.get(product_id)


def _find_locked(session: Session, channel_id: int, product_id: str) -> Product | None:
    seen = _seen(session)
    if (channel_id, product_id) in seen:
        return seen[(channel_id, product_id)]
    query = select(Product).where(Product.channel_id == channel_id,
                                  Product.channel_product_id == product_id)
    product = session.scalars(query.with_for_update()).first()
    if product is None and session.get_bind().dialect.name == "postgresql":
        # Two workers may both find a new product missing: the one that waits on this lock
        # sees the other's insert once it commits, instead of failing on the unique key.
        digest = hashlib.sha256(f"orderhooks:product:{channel_id}:{product_id}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest.digest()[:8], "big", signed=True)})
        product = session.scalars(query.with_for_update()).first()
    seen[(channel_id, product_id)] = product
    return product


_INSERT_PRODUCT = RawInsert(Product.__table__, (
    "channel_id", "channel_product_id", *FIELDS, "deleted_at", "channel_updated_at",
    "created_at", "updated_at"), returning="id")
_INSERT_VARIANTS = RawInsert(ProductVariantRow.__table__, (
    "product_id", "channel_id", "channel_variant_id", *VARIANT_FIELDS))
_INSERT_CHANGE = RawInsert(ProductChange.__table__, (
    "product_id", "at", "event", "channel_updated_at", "delivery_id", "changes", "message"))


def _create(session: Session, channel_id: int, intent: UpsertProduct, when: datetime,
            delivery_id: int | None) -> Product:
    """A product the catalog has not seen: the product, its variants and its history line
    written at once (core.db.RawInsert), with no ORM objects but the product, attached to the
    session as if loaded (its variants and history load if a later delivery of the batch
    needs them). A batch creates products by the hundred, and flushing an ORM object per row
    costs more than the rest of their work. What is recorded is what :func:`_set_fields` and
    :func:`_set_variants` record for a product starting from nothing."""
    now = utcnow()
    row = {"channel_id": channel_id, "channel_product_id": intent.product_id,
           **{field: getattr(intent, field) for field in FIELDS}, "deleted_at": None,
           "channel_updated_at": when, "created_at": now, "updated_at": now}
    product_id = _INSERT_PRODUCT.one(session, row)
    # a repeated variant id: the last one counts, in the place of the first
    wanted = {variant.variant_id: variant for variant in intent.variants}
    variants = [{"channel_variant_id": variant_id,
                 **{field: getattr(variant, field) for field in VARIANT_FIELDS}}
                for variant_id, variant in wanted.items()]
    _INSERT_VARIANTS.many(session, [{"product_id": product_id, "channel_id": channel_id,
                                     **variant} for variant in variants])
    changes = {field: [None, row[field]] for field in FIELDS
               if field != "active" and row[field] is not None}
    if variants:
        changes["variants"] = {"added": len(variants), "removed": 0, "changed": 0}
    product = Product(id=product_id, **row)
    make_transient_to_detached(product)
    session.add(product)
    _seen(session)[(channel_id, intent.product_id)] = product
    _INSERT_CHANGE.one(session, {"product_id": product_id, "at": utcnow(), "event": "created",
                                 "channel_updated_at": when, "delivery_id": delivery_id,
                                 "changes": changes,
                                 "message": f"created with {len(variants)} variant(s)"})
    _emit(session, product, "created", changes, delivery_id, variants)
    return product


def _new(session: Session, channel_id: int, product_id: str, **values) -> Product:
    product = Product(channel_id=channel_id, channel_product_id=product_id, variants=[],
                      history=[], **values)
    session.add(product)
    _seen(session)[(channel_id, product_id)] = product
    return product


def _upsert(session: Session, channel_id: int, product: Product | None, intent: UpsertProduct,
            when: datetime, delivery_id: int | None) -> tuple[str, str]:
    name = f"product {intent.product_id}"
    if product is None:
        _create(session, channel_id, intent, when, delivery_id)
        return Outcome.APPLIED, f"{name}: created"
    if product.deleted_at is not None and when <= product.deleted_at:
        return Outcome.IGNORED, (f"{name}: this state (updated {_iso(when)}) is not newer than "
                                 f"its deletion ({_iso(product.deleted_at)}); it stays deleted")
    mark = product.channel_updated_at
    if mark is not None and when < mark:
        return Outcome.IGNORED, (f"{name}: this state (updated {_iso(when)}) is older than the "
                                 f"one held ({_iso(mark)}); the catalog keeps the newer")
    restoring = product.deleted_at is not None
    changes = _set_fields(product, intent)
    changes.update(_set_variants(product, intent))
    product.channel_updated_at = when
    if restoring:
        product.deleted_at = None
        _record(session, product, "restored", when, delivery_id, changes,
                "back in the channel after its deletion")
        return Outcome.APPLIED, f"{name}: restored (created again after its deletion)"
    if not changes:
        return Outcome.IGNORED, f"{name}: no change to the catalog"
    _record(session, product, "updated", when, delivery_id, changes,
            "changed: " + ", ".join(sorted(changes)))
    return Outcome.APPLIED, f"{name}: updated ({', '.join(sorted(changes))})"


def _delete(session: Session, channel_id: int, product: Product | None, product_id: str,
            when: datetime, delivery_id: int | None) -> tuple[str, str]:
    name = f"product {product_id}"
    if product is None:
        product = _new(session, channel_id, product_id, active=False, deleted_at=when,
                       channel_updated_at=when)
        _record(session, product, "deleted", when, delivery_id, {},
                "deleted before the catalog saw it: kept as deleted, so an older state "
                "arriving late cannot bring it back")
        return Outcome.APPLIED, f"{name}: deleted (not seen before)"
    if product.deleted_at is not None:
        return Outcome.IGNORED, f"{name}: already deleted ({_iso(product.deleted_at)})"
    mark = product.channel_updated_at
    if mark is not None and when < mark:
        return Outcome.IGNORED, (f"{name}: this deletion ({_iso(when)}) is older than the state "
                                 f"held (updated {_iso(mark)}); the catalog keeps the newer")
    changes = {"active": [product.active, False]} if product.active else {}
    product.deleted_at, product.active, product.channel_updated_at = when, False, when
    _record(session, product, "deleted", when, delivery_id, changes,
            "deleted in the channel; kept with its variants and history")
    return Outcome.APPLIED, f"{name}: deleted"


def _set_fields(product: Product, intent: UpsertProduct) -> dict:
    changes = {}
    for field in FIELDS:
        old, new = getattr(product, field), getattr(intent, field)
        if old != new:
            changes[field] = [old, new]
            setattr(product, field, new)
    return changes


def _set_variants(product: Product, intent: UpsertProduct) -> dict:
    """The product's variants become the intent's (by channel variant id; a repeated id: the
    last one counts). Returns the counts of what changed, when anything did."""
    existing = {row.channel_variant_id: row for row in product.variants}
    wanted = {variant.variant_id: variant for variant in intent.variants}
    added = changed = 0
    for variant_id, variant in wanted.items():
        row = existing.pop(variant_id, None)
        if row is None:
            product.variants.append(ProductVariantRow(
                channel_id=product.channel_id, channel_variant_id=variant_id,
                **{f: getattr(variant, f) for f in VARIANT_FIELDS}))
            added += 1
            continue
        differs = False
        for field in VARIANT_FIELDS:
            if getattr(row, field) != getattr(variant, field):
                setattr(row, field, getattr(variant, field))
                differs = True
        changed += differs
    removed = list(existing.values()) if intent.variants_complete else []
    for row in removed:
        product.variants.remove(row)
    counts = {"added": added, "removed": len(removed), "changed": changed}
    return {"variants": counts} if any(counts.values()) else {}


def _record(session: Session, product: Product, event: str, when: datetime,
            delivery_id: int | None, changes: dict, message: str) -> None:
    # Through the relationship: the product may not be flushed yet (no id), and setting the
    # change's side does not load the product's whole history.
    session.add(ProductChange(product=product, at=utcnow(), event=event,
                              channel_updated_at=when, delivery_id=delivery_id,
                              changes=changes, message=message))
    _emit(session, product, event, changes, delivery_id)


def _emit(session: Session, product: Product, event: str, changes: dict,
          delivery_id: int | None, variants: list[dict] | None = None) -> None:
    events.emit(session, "product.deleted" if event == "deleted" else "product.updated",
                {"product": product_view(product, variants), "change": event,
                 "changes": changes, "delivery_id": delivery_id}, channel_id=product.channel_id)


def product_view(product: Product, variants: list[dict] | None = None) -> dict:
    """A product as events carry it: the catalog entry and its variants after the change
    (``variants``: as :func:`_create` wrote them, else the product's)."""
    if variants is None:
        variants = [{"channel_variant_id": row.channel_variant_id,
                     **{f: getattr(row, f) for f in VARIANT_FIELDS}} for row in product.variants]
    return {"channel_id": product.channel_id, "channel_product_id": product.channel_product_id,
            **{field: getattr(product, field) for field in FIELDS},
            "active": product.active, "deleted": product.deleted_at is not None,
            "deleted_at": _iso(product.deleted_at) if product.deleted_at else None,
            "channel_updated_at": (_iso(product.channel_updated_at)
                                   if product.channel_updated_at else None),
            "variants": variants}


def _iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


@dataclass(frozen=True)
class CatalogEntry:
    """What an order line links to: a product and, when known, the variant."""
    product: Product
    variant: ProductVariantRow | None = None


def find_product(session: Session, channel_id: int, product_id=None, variant_id=None,
                 sku: str | None = None) -> CatalogEntry | None:
    """The catalog entry an order line names: by the channel's variant id, else its product id,
    else its SKU (a variant's or the product's). A live product is preferred to a deleted one
    sharing the SKU, then the most recently changed."""
    return link_lines(session, channel_id, [_LineKeys(product_id, variant_id, sku)])[0]


@dataclass(frozen=True)
class _LineKeys:
    product_id: object = None
    variant_id: object = None
    sku: str | None = None


def link_lines(session: Session, channel_id: int, lines) -> list[CatalogEntry | None]:
    """The catalog entry of each order line (objects with ``product_id``, ``variant_id`` and
    ``sku``) by the rule of :func:`find_product`, in at most four queries whatever the number of
    lines: an order may have hundreds."""
    lines = list(lines)
    live_first = (Product.deleted_at.is_not(None), Product.updated_at.desc())
    variant_ids = {str(line.variant_id) for line in lines if line.variant_id}
    product_ids = {str(line.product_id) for line in lines if line.product_id}
    skus = {line.sku for line in lines if line.sku}
    by_variant: dict[str, ProductVariantRow] = {}
    if variant_ids:
        for row in session.scalars(select(ProductVariantRow).join(Product).where(
                ProductVariantRow.channel_id == channel_id,
                ProductVariantRow.channel_variant_id.in_(variant_ids)).order_by(*live_first)):
            by_variant.setdefault(row.channel_variant_id, row)
    by_product: dict[str, Product] = {}
    if product_ids:
        for product in session.scalars(select(Product).where(
                Product.channel_id == channel_id, Product.channel_product_id.in_(product_ids))):
            by_product.setdefault(product.channel_product_id, product)
    variant_by_sku: dict[str, ProductVariantRow] = {}
    product_by_sku: dict[str, Product] = {}
    if skus:
        for row in session.scalars(select(ProductVariantRow).join(Product).where(
                ProductVariantRow.channel_id == channel_id,
                ProductVariantRow.sku.in_(skus)).order_by(*live_first)):
            variant_by_sku.setdefault(row.sku, row)
        for product in session.scalars(select(Product).where(
                Product.channel_id == channel_id, Product.sku.in_(skus)).order_by(*live_first)):
            product_by_sku.setdefault(product.sku, product)
    found: list[CatalogEntry | None] = []
    for line in lines:
        row = by_variant.get(str(line.variant_id)) if line.variant_id else None
        product = by_product.get(str(line.product_id)) if line.product_id else None
        if row is not None:
            found.append(CatalogEntry(row.product, row))
        elif product is not None:
            found.append(CatalogEntry(product, _variant_of(product, line.variant_id, line.sku)))
        elif line.sku and line.sku in variant_by_sku:
            found.append(CatalogEntry(variant_by_sku[line.sku].product, variant_by_sku[line.sku]))
        elif line.sku and line.sku in product_by_sku:
            found.append(CatalogEntry(product_by_sku[line.sku]))
        else:
            found.append(None)
    return found


def _variant_of(product: Product, variant_id, sku) -> ProductVariantRow | None:
    for row in product.variants:
        if (variant_id is not None and row.channel_variant_id == str(variant_id)) or (
                variant_id is None and sku and row.sku == sku):
            return row
    return None


def sku_filter(sku: str):
    """Products having ``sku``: their own, or one of their variants' (the admin API's list)."""
    return or_(Product.sku == sku, Product.id.in_(
        select(ProductVariantRow.product_id).where(ProductVariantRow.sku == sku)))
