"""Reading values out of Shopify JSON: ids (64-bit, exact), text, numbers, lists, times, prices
and money. Each reader answers None (or a default) for a value of the wrong kind instead of
raising: an odd field never stops a delivery, the intent decides what it can take.

The names keep their leading underscore: they are this package's readers, not part of any
plugin surface.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation


def _id(value) -> str | None:
    """Shopify ids are 64-bit integers (parsed exactly from the raw JSON); digit strings too."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # "gid://shopify/Order/123" → "123"
        return text.rsplit("/", 1)[-1] if text.startswith("gid://") else text
    return None


def _text(value) -> str | None:
    """A string field as text (numbers too); None for empty, missing or structured values."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value).strip() or None
    return None


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC); None if unreadable.
    Shopify's X-Shopify-Triggered-At has nanoseconds and a Z: both are handled."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _shopify_id(value, kind: str) -> str | None:
    """A Shopify id (a positive 64-bit integer, its digits, or ``gid://shopify/<kind>/<n>``)
    as digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < 2 ** 64 else None
    if isinstance(value, str):
        text = value.strip()
        prefix = f"gid://shopify/{kind}/"
        if text.startswith(prefix):
            text = text[len(prefix):]
        if text.isascii() and text.isdigit() and len(text) <= 20 and int(text) > 0:
            return text
    return None


def _domain(value) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def _quote(value) -> str:
    """An outside value in a message: bounded."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _string(value) -> str | None:
    return value if isinstance(value, str) else None


def _price(value) -> str | None:
    """A price as decimal text ("19.99"); None when it is not one (a malformed variant keeps
    its place in the catalog, without a price)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    try:
        return text if len(text) <= 32 and Decimal(text).is_finite() else None
    except InvalidOperation:
        return None


def _money(value):
    """Shopify's amounts are strings; an integer is exact too. Anything else is handed on as
    it is, and the intent refuses it (a float's digits are already rounded)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
