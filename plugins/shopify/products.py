"""Product bodies as intents: products/create and products/update become UpsertProduct, from the
delivered body or, when its variants are only some of the product's, from the product as the
Admin API reads it (:meth:`plugins.shopify.client.ShopifyClient.product`)."""
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
    variants than ``variants`` carries, the list is taken as partial (``variants_complete`` is
    false: none is removed, and the adapter reads the product whole)."""
    variants, seen = [], 0
    for entry in _list(product.get("variants")):
        if not isinstance(entry, dict):
            continue
        seen += 1
        variant = _variant(entry)
        if variant is not None:
            variants.append(variant)
    gids = product.get("variant_gids")
    status = _string(product.get("status"))
    return UpsertProduct(
        _shopify_id(product.get("id"), "Product"), title=_string(product.get("title")),
        status=status[:32] if status else None,
        active=status is None or status.lower() in ACTIVE_PRODUCT_STATUSES,
        variants=tuple(variants),
        variants_complete=not (isinstance(gids, list) and len(gids) > seen),
        updated_at=_product_time(product, gids) or when)


def product_from_api(product_id: str, product: dict, delivered_at: datetime | None):
    """The product as the Admin API read it (every variant) as UpsertProduct: the current state
    wins over the delivered body's fields. Its time is the latest of the product's and its
    variants' ``updatedAt`` and of the delivered body's own (``delivered_at``): the read came
    after the delivery was made, so it is at least as new."""
    status = _string(product.get("status"))
    status = status.lower()[:32] if status else None
    variants = [v for v in map(_variant, _list(product.get("variants"))) if v is not None]
    moments = [parse_time(product.get("updatedAt")), delivered_at,
               *(parse_time(v.get("updatedAt")) for v in _list(product.get("variants"))
                 if isinstance(v, dict))]
    moments = [m for m in moments if m is not None]
    return UpsertProduct(
        product_id, title=_string(product.get("title")), status=status,
        active=status is None or status in ACTIVE_PRODUCT_STATUSES, variants=tuple(variants),
        variants_complete=True, updated_at=max(moments) if moments else None)


def _variant(entry) -> ProductVariant | None:
    """A variant of a products/* body or of the Admin API (``id`` a number or a
    ``gid://shopify/ProductVariant/<n>``); None without a Shopify variant id."""
    if not isinstance(entry, dict):
        return None
    variant_id = _shopify_id(entry.get("id"), "ProductVariant")
    if variant_id is None:
        return None
    position = entry.get("position")
    return ProductVariant(
        variant_id, sku=_text(entry.get("sku")), title=_string(entry.get("title")),
        price=_price(entry.get("price")),
        position=position if isinstance(position, int) and not isinstance(position, bool)
        and abs(position) < 2 ** 31 else None)


def _product_time(product: dict, gids) -> datetime | None:
    """When this state of the product was made: the latest of its ``updated_at`` and its
    variants' (``variant_gids``), since a variant's edit need not move the product's own."""
    moments = [parse_time(product.get("updated_at"))]
    if isinstance(gids, list):
        moments += [parse_time(g.get("updated_at")) for g in gids if isinstance(g, dict)]
    moments = [m for m in moments if m is not None]
    return max(moments) if moments else None
