"""Events: one row per change orderhooks makes, written in the change's own transaction (a
transactional outbox), numbered into a feed by one sequencer at a time.

Writing: :func:`emit` writes the event in the caller's transaction, so the event and its change
commit together or not at all. Its ``position`` stays NULL.

Numbering: :func:`number` gives NULL positions the next numbers, in id order, under one lock
(PostgreSQL: an advisory transaction lock; SQLite: every write transaction is BEGIN IMMEDIATE),
in the caller's transaction (:func:`sequence`: in one of its own). Only committed rows and the
caller's own are visible to it, and the caller commits before the lock is released, so
positions follow the order in which events became visible, not the order their ids were drawn
in: a
transaction that drew a small id and commits late gets a large position. A reader that sees
position N therefore already sees every position below N — reading ``position > cursor`` never
skips an event, and never repeats one. Any process may run the sequencer (the worker at the end
of each batch's own transaction, the sender, the feed before reading): the lock makes them one.

Reading: :func:`read` answers a page of the feed and the cursor to continue from.
"""
from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, bindparam, func, select, text, update
from sqlalchemy.orm import Session, defer

from . import wakeup
from .clock import utcnow
from .db import DEFERRED_INSERTS, RawInsert
from .models import Event

#: Every event type orderhooks writes (docs/events.md has a sample of each).
TYPES = ("order.created", "order.paid", "order.cancelled", "order.shipped",
         "order.shipment_recorded", "order.ignored", "rma.created", "product.updated",
         "product.deleted", "channel.deactivated", "subscription.failed",
         "subscription.repaired", "endpoint.disabled")

#: The advisory lock key of the sequencer on PostgreSQL (any constant shared by every process).
SEQUENCER_LOCK = 0x6F72646572657673  # "orderevs"

#: Notified whenever events were numbered in this process: wakes its long polls and sender at
#: once (a sender in a process of its own hears the events bell: :func:`wake`, :func:`number`).
_numbered = threading.Condition()
_generation = 0


#: Base 32 in the event id's alphabet: ``base64.b32encode``'s output mapped onto it.
_BASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def new_event_id() -> str:
    """``evt_`` and 26 characters: 10 of time (milliseconds since the epoch, base 32, so ids
    sort roughly by time) and 16 random ones (80 bits from ``os.urandom``). Encoded by
    ``base64.b32encode`` rather than a character at a time: every event of a batch draws one."""
    millis = time.time_ns() // 1_000_000
    # 50 bits of milliseconds in the top of 80: the first 10 characters are the stamp.
    stamp = base64.b32encode((millis << 30).to_bytes(10, "big"))[:10]
    return "evt_" + (stamp + base64.b32encode(os.urandom(10))).translate(_BASE32).decode()


def emit(session: Session, type: str, data: dict, *, channel_id: int | None = None,
         order_key: str | None = None) -> Event:
    """Record that ``type`` happened, in the caller's transaction. ``data`` is the resource as
    it is after the change; ``order_key`` (e.g. ``order_key(order)``) names what outbound
    webhooks must deliver in order. Returns the event as written (not an object of the
    session); in a session that defers inserts (``core.db.defer_inserts``: a worker's batch)
    it is written with the batch's other events before the session's next statement, and
    the event returned has no ``id``."""
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}; add it to core.events.TYPES")
    row = {"event_id": new_event_id(), "type": type, "occurred_at": utcnow(),
           "channel_id": channel_id, "order_key": order_key, "data": data}
    # Written by RawInsert, not left to the ORM's flush: events of a transaction get ids in
    # the order they were emitted, and a batch writes hundreds.
    session.info["events_emitted"] = True
    if session.info.get(DEFERRED_INSERTS) is not None:
        _ADD_EVENT.add(session, row)
        return Event(id=None, **row)
    return Event(id=_INSERT_EVENT.one(session, row), **row)


_EVENT_COLUMNS = ("event_id", "type", "occurred_at", "channel_id", "order_key", "data")
_INSERT_EVENT = RawInsert(Event.__table__, _EVENT_COLUMNS, returning="id")
_ADD_EVENT = RawInsert(Event.__table__, _EVENT_COLUMNS)


def emitted(session: Session) -> bool:
    """Whether :func:`emit` added an event to ``session``: a transaction that wrote none need
    not take the sequencer's lock."""
    return bool(session.info.get("events_emitted"))


def order_key(order) -> str:
    return f"order:{order.id}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def order_view(order) -> dict:
    """An order as events carry it. The customer's personal data stays out: events are copied
    to receivers and kept, while a privacy request can only redact what orderhooks holds."""
    return {"id": order.id, "channel_id": order.channel_id,
            "channel_order_id": order.channel_order_id, "status": order.status,
            "order_number": order.order_number, "placed_at": _time(order.placed_at),
            "currency": order.currency, "totals": dict(order.totals or {}),
            "payments": list(order.payments or []),
            "shipments": list(order.shipments or []),
            "last_event_at": _time(order.last_event_at)}


def channel_view(row) -> dict:
    return {"id": row.id, "type": row.type, "name": row.name, "active": row.active}


def subscription_view(row) -> dict:
    return {"channel_id": row.channel_id, "topic": row.topic, "status": row.status,
            "remote_id": row.remote_id, "destination": row.destination,
            "last_action": row.last_action, "last_error": row.last_error,
            "last_checked_at": _time(row.last_checked_at)}


def public(event: Event) -> dict:
    """An event as the feed and the outbound webhooks show it."""
    return {"id": event.event_id, "type": event.type, "timestamp": _time(event.occurred_at),
            "channel_id": event.channel_id, "data": event.data}


# -- numbering -------------------------------------------------------------------------------

def sequence(db, limit: int = 5000) -> int:
    """Number the committed events that have no position yet (at most ``limit``), in id order,
    in a transaction of its own. Returns how many were numbered."""
    with db.session() as session:
        count = number(session, limit=limit)
    if count:
        wake(db)
    return count


@dataclass(frozen=True)
class Numbered:
    """What one numbering gave: the events it numbered, in position order (``rows``: id,
    position, type, channel_id, order_key), positions ``before + 1`` to ``top`` (both None
    when it numbered none)."""
    before: int | None
    rows: list

    @property
    def top(self) -> int | None:
        return self.rows[-1].position if self.rows else None

    def __len__(self) -> int:
        return len(self.rows)


def number(session: Session, limit: int = 5000) -> int:
    """:func:`number_events`, returning only how many events it numbered."""
    return len(number_events(session, limit))


def number_events(session: Session, limit: int = 5000) -> Numbered:
    """The sequencer's step, in the caller's transaction, which must commit before anyone else
    numbers: on PostgreSQL it takes the advisory lock until then (so the caller touches
    nothing after it that another lock holder could be waiting on: events, endpoints and
    their messages only); on SQLite the caller's transaction (BEGIN IMMEDIATE) is the only
    writer from its start to its commit. Either way the caller's own events are numbered with
    the committed ones. Call :func:`wake` after the commit. On PostgreSQL the sender's bell
    (core/wakeup.py) is rung here, delivered by the server at the commit.

    One statement numbers: the NULL positions, in id order, get the numbers after the feed's
    newest, and come back (a worker's batch of one pays one round trip for it, and fans out
    from what it returns without reading the events again)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    # A transaction with events of its own numbers at least those: its bell goes with the lock
    # (a NOTIFY is delivered at the commit either way), saving the round trip after.
    rung = postgres and emitted(session)
    if postgres:
        session.execute(_LOCK_AND_RING if rung else _LOCK, {"key": SEQUENCER_LOCK})
    rows = sorted(session.execute(_NUMBER, {"limit": limit}).all(), key=lambda row: row.position)
    if rows and postgres and not rung:
        session.execute(text(wakeup.EVENTS_NOTIFY_SQL))
    return Numbered(rows[0].position - 1 if rows else None, rows)


_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_LOCK_AND_RING = text(f"SELECT pg_advisory_xact_lock(:key), pg_notify('{wakeup.EVENTS}', '')")
# The events without a position, in id order, numbered after the newest position, read under
# the lock in the same statement (the window runs before the LIMIT, so the first ``limit`` ids
# get 1..limit past it).
_NEWEST = select(func.coalesce(func.max(Event.position), 0)).scalar_subquery()
_TODO = (select(Event.id.label("id"),
                (func.row_number().over(order_by=Event.id) + _NEWEST).label("position"))
         .where(Event.position.is_(None)).order_by(Event.id)
         .limit(bindparam("limit", type_=Integer)).cte("todo"))
_NUMBER = (update(Event.__table__).where(Event.__table__.c.id == _TODO.c.id)
           .values(position=_TODO.c.position)
           .returning(Event.__table__.c.id, Event.__table__.c.position, Event.__table__.c.type,
                      Event.__table__.c.channel_id, Event.__table__.c.order_key))


def wake(db=None) -> None:
    """Tell this process's long polls and sender that numbered events wait; with ``db`` on
    SQLite, also a sender process's bell (core/wakeup.py; PostgreSQL's rang at the commit)."""
    global _generation
    with _numbered:
        _generation += 1
        _numbered.notify_all()
    path = wakeup.socket_path(db, wakeup.EVENTS) if db is not None else None
    if path is not None:
        bell = _bells.get(path) or _bells.setdefault(path, wakeup.Doorbell(db, wakeup.EVENTS))
        bell.ring()


#: SQLite events bell path -> its doorbell (one socket per process and database).
_bells: dict[str, "wakeup.Doorbell"] = {}


def generation() -> int:
    """A token for :func:`wait_numbered`: take it before looking at the feed."""
    return _generation


def wait_numbered(since: int, timeout: float) -> bool:
    """Wait until events are numbered in this process after ``since`` was taken, at most
    ``timeout`` seconds; True if they were."""
    with _numbered:
        return _numbered.wait_for(lambda: _generation != since, timeout)


def newest_position(session: Session) -> int:
    return session.scalar(select(func.max(Event.position))) or 0


def unnumbered(session: Session) -> bool:
    """Whether a committed event waits for its position (an index probe)."""
    return session.scalar(select(Event.id).where(Event.position.is_(None)).limit(1)) is not None


# -- the feed ----------------------------------------------------------------------------------

def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(b"pos:%d" % position).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; ValueError for anything this API did not give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):
        raise ValueError("not a cursor") from None
    kind, _, number = raw.partition(b":")
    if kind != b"pos" or not number.isdigit() or len(number) > 18:
        raise ValueError("not a cursor")
    return int(number)


def read(session: Session, after: int, *, types=(), channel_id: int | None = None,
         limit: int = 100, with_data: bool = True) -> tuple[list[Event], int]:
    """Events past position ``after`` matching the filters, oldest first, and the position to
    continue from. ``top`` is read first: every position up to it is committed (see the module
    docstring), and the page is read after it, so when the page is not full the reader may skip
    to ``top`` — events filtered out are not scanned again. ``with_data=False`` leaves each
    event's resource unread (decoding its JSON is most of a page's cost) for a reader that
    needs only ids, types and keys."""
    top = session.scalar(select(func.max(Event.position))) or 0
    if top <= after:
        return [], after
    query = select(Event).where(Event.position > after, Event.position <= top)
    if not with_data:
        query = query.options(defer(Event.data))
    if types:
        query = query.where(Event.type.in_(list(types)))
    if channel_id is not None:
        query = query.where(Event.channel_id == channel_id)
    rows = session.scalars(query.order_by(Event.position).limit(limit)).all()
    if len(rows) == limit:
        return rows, rows[-1].position
    return rows, top
