"""Product bodies as intents: products/create and products/update become UpsertProduct."""
from __future__ import annotations

from datetime import datetime

from orderhooks import ProductVariant, UpsertProduct

from .values import _list, _price, _shopify_id, _string, _text, parse_time


#: The Shopify product statuses that count as active (``draft``, ``archived``, ``unlisted`` don't).
ACTIVE_PRODUCT_STATUSES = frozenset({"active"})


def product_intent(product: dict, when: datetime | None):
    """A products/create or products/update body (shape already checked) as UpsertProduct. The
    body's own times (signed, unlike the triggered-at header) order its states.
    Variants without a Shopify variant id are left out; when ``variant_gids`` names more
    variants than ``variants`` carries, the list is taken as partial (none is removed)."""
    variants, seen = [], 0
    for entry in _list(product.get("variants")):
        if not isinstance(entry, dict):
            continue
        seen += 1
        variant_id = _shopify_id(entry.get("id"), "ProductVariant")
        if variant_id is None:
            continue
        position = entry.get("position")
        variants.append(ProductVariant(
            variant_id, sku=_text(entry.get("sku")), title=_string(entry.get("title")),
            price=_price(entry.get("price")),
            position=position if isinstance(position, int) and not isinstance(position, bool)
            and abs(position) < 2 ** 31 else None))
    gids = product.get("variant_gids")
    status = _string(product.get("status"))
    return UpsertProduct(
        _shopify_id(product.get("id"), "Product"), title=_string(product.get("title")),
        status=status[:32] if status else None,
        active=status is None or status.lower() in ACTIVE_PRODUCT_STATUSES,
        variants=tuple(variants),
        variants_complete=not (isinstance(gids, list) and len(gids) > seen),
        updated_at=_product_time(product, gids) or when)


def _product_time(product: dict, gids) -> datetime | None:
    """When this state of the product was made: the latest of its ``updated_at`` and its
    variants' (``variant_gids``), since a variant's edit need not move the product's own."""
    moments = [parse_time(product.get("updated_at"))]
    if isinstance(gids, list):
        moments += [parse_time(g.get("updated_at")) for g in gids if isinstance(g, dict)]
    moments = [m for m in moments if m is not None]
    return max(moments) if moments else None
