"""Time as the service stores it: every timestamp in the database is naive UTC."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now, as naive UTC (the form every timestamp column holds)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC, so aware and naive datetimes compare alike (a naive one is UTC
    already)."""
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment
