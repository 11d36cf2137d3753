"""Checks on values from outside before they are stored, shared by the webhook intake and the
admin API."""
from __future__ import annotations


def unstorable_text(value, limit: int = 100_000) -> str | None:
    """The first string (key or value) in ``value`` that the database cannot store, if any."""
    stack, seen = [value], 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            if "\x00" in item:
                return item
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item.encode("utf-8", "backslashreplace").decode()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None
