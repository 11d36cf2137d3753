"""The inbox: storing deliveries durably, many threads' deliveries in one commit.

The webhook edge hands each authentic delivery to :meth:`Writer.store`, which returns only once
the row is committed (the edge answers 2xx only then). The worker reads the rows from there.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from operator import itemgetter

from sqlalchemy.exc import SQLAlchemyError

from . import metrics, wakeup
from .db import WritersQueue
from .models import (CHANNEL_ORDER_ID_LENGTH, DEDUPE_KEY_LENGTH, TOPIC_LENGTH,
                     StoredDelivery)
from .outcomes import DeliveryState
from .clock import naive_utc

log = logging.getLogger("orderhooks.intake")


class Unavailable(Exception):
    """The database could not take the delivery now (down, locked, connection lost)."""


class Unstorable(Exception):
    """The database refused the delivery's values themselves."""


def _text(value, limit: int) -> str | None:
    """A stored text field from outside input: bounded, and without NUL (PostgreSQL refuses it
    in text columns; the raw body keeps the exact bytes)."""
    if value is None or value == "":
        return None
    return str(value).replace("\x00", "\ufffd")[:limit]


#: Rows per INSERT statement (SQLite allows 32,766 parameters, PostgreSQL 65,535).
_CHUNK = 64

#: Columns the worker fills as it processes a delivery: NULL when the inbox stores it.
PROCESSING_COLUMNS = frozenset({"body_purged_at", "outcome", "reason", "intents",
                                "deferred_until", "claimed_by", "claimed_until", "processed_at"})

#: The INSERT's columns: every column of the model but its key and the worker's. A column added
#: to the model is written here unless it is the worker's, and ``_row`` must give its value.
COLUMNS = tuple(column.name for column in StoredDelivery.__table__.columns
                if not column.primary_key and column.name not in PROCESSING_COLUMNS)
_in_insert_order = itemgetter(*COLUMNS)
_PENDING = DeliveryState.PENDING.value  # a plain str: what every driver binds as text


def _row(channel, info, key: str, headers: dict, body: bytes, received_at) -> dict:
    """A new delivery's values, by column: what the sender sent, and pending (due now)."""
    return {"channel_id": channel.id, "channel_type": channel.type, "dedupe_key": key,
            "topic": _text(info.topic, TOPIC_LENGTH),
            "channel_order_id": _text(info.channel_order_id, CHANNEL_ORDER_ID_LENGTH),
            "occurred_at": info.occurred_at and naive_utc(info.occurred_at),
            "received_at": received_at, "headers": headers, "body": body,
            "state": _PENDING, "attempts": 0, "next_attempt_at": received_at}


class _Slot:
    """One delivery waiting for the next group commit, and what became of it. ``ready`` is a
    lock taken at creation: the slot's thread blocks on it, whichever thread commits the slot
    releases it (a plain lock, the cheapest thing a thread can block on: this is per delivery)."""
    __slots__ = ("values", "channel_id", "key", "result", "error", "ready", "lead")

    def __init__(self, values, channel_id, key):
        self.values, self.channel_id, self.key = values, channel_id, key
        self.result = self.error = None
        self.ready = threading.Lock()
        self.ready.acquire()
        self.lead = False


class Writer:
    """Stores deliveries through one DBAPI connection per process, kept out of the pool (made by
    the engine, so it has the same pragmas and settings), with one prepared multi-row INSERT ... ON
    CONFLICT DO NOTHING RETURNING per batch. A connection that fails is dropped; the next delivery opens a new one.

    **Group commit.** The threads of a process (gunicorn's ``gthread`` workers) do not each open
    a transaction: a delivery joins a queue, and one thread at a time (the leader) takes every
    delivery queued so far, inserts them in one transaction and commits once — one lock hand-off,
    one WAL write and one fsync for the lot — then wakes their threads and hands the lead to the
    next one waiting. Nobody is answered before the commit that holds their row (2xx only once
    durable). Under light load a batch is one delivery and nothing waits; under load batches
    grow by themselves while the previous commit is on disk (no timer, no added latency). If the
    database refuses one delivery's values, the batch is rolled back and each delivery is tried
    alone, so one bad delivery costs only itself.

    On SQLite, writers from every web process queue on an ``flock`` of a file beside the
    database before ``BEGIN IMMEDIATE``: the kernel hands the lock to the next waiter the moment
    it is released, where SQLite's busy handler would have each waiter sleep and poll (1, 2, 5
    ... 100 ms), leaving the database idle between writes and the slowest waiters with a
    tail of hundreds of milliseconds. The worker's and the sender's write transactions queue on
    the same file (``Database.session``). SQLite's own locking still guards correctness (a
    writer that takes no place in the queue meets its busy timeout as before)."""

    def __init__(self, db):
        self.db = db
        self.sqlite = db.is_sqlite
        dbapi = db.engine.dialect.dbapi
        self.refused = (dbapi.DataError, dbapi.IntegrityError)
        self.errors = dbapi.Error
        # PostgreSQL: psycopg's RawCursor with the server's own $n placeholders. With %s, psycopg
        # parses the query text again on every execute once it has more than 50 parameters (its
        # cache of parsed queries skips those), which every batch of five rows or more has
        # (docs/performance.md has the cost). psycopg 3.2 and later; another driver keeps %s.
        # Set on the writer's own connection only.
        self.raw_cursor = None if self.sqlite else getattr(dbapi, "RawCursor", None)
        # Each column's value as the ORM would bind it (SQLite's DATETIME text, JSON, bytes...):
        # SQLAlchemy's own processors for this dialect, so the rows read back alike.
        dialect, columns = db.engine.dialect, StoredDelivery.__table__.c
        self.processors = [
            (index, processor) for index, name in enumerate(COLUMNS)
            if (processor := columns[name].type.dialect_impl(dialect).bind_processor(dialect))]
        self._inserts: dict[int, str] = {}
        self.existing = (f"SELECT id FROM deliveries WHERE channel_id = {self._mark(1)} "
                         f"AND dedupe_key = {self._mark(2)}")
        database = db.engine.url.database if self.sqlite else None
        self.writers = WritersQueue(database)
        self._conn = None
        self.doorbell = wakeup.Doorbell(db)
        self._pid = None
        # The group-commit queue: deliveries waiting, and whether a leader is at work.
        self._mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._leading = False
        # A child forked while a thread of ours was committing must not inherit its queue
        # (whose threads do not exist there) nor a held mutex.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (w := ref()) and w._forked())

    def _mark(self, number: int) -> str:
        """The placeholder of the ``number``-th parameter (from 1)."""
        return "?" if self.sqlite else f"${number}" if self.raw_cursor else "%s"

    def _forked(self) -> None:
        self._mutex = threading.Lock()
        self._queue, self._leading = [], False

    @property
    def lock_path(self) -> str | None:
        """The writers' queue file (None: SQLite's busy handler alone)."""
        return self.writers.path

    def connection(self):
        """This process's connection (opened on first use, and again after a fork)."""
        conn = self._conn
        if conn is None or self._pid != os.getpid():  # none yet, or inherited through a fork
            fairy = self.db.engine.raw_connection()
            fairy.detach()  # ours for good: the pool neither counts nor recycles it
            conn = self._conn = fairy.dbapi_connection
            if self.raw_cursor is not None:
                conn.cursor_factory = self.raw_cursor
            self._pid = os.getpid()
        return conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 — it is being thrown away
                pass

    def close(self) -> None:
        """The connection and this process's handle on the writers' queue (an app torn down:
        each app opens its own)."""
        self.drop()
        self.writers.close()

    def _insert(self, rows: int) -> str:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING for ``rows`` rows (one text per batch
        size, so the database's and the driver's statement caches keep each prepared)."""
        sql = self._inserts.get(rows)
        if sql is None:
            width = len(COLUMNS)
            values = ", ".join(
                "(" + ", ".join(self._mark(row * width + col + 1) for col in range(width)) + ")"
                for row in range(rows))
            sql = self._inserts[rows] = (
                f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES {values} "
                "ON CONFLICT (channel_id, dedupe_key) DO NOTHING "
                "RETURNING id, channel_id, dedupe_key")
        return sql

    def store(self, channel, info, headers: dict, body: bytes, received_at):
        """Insert the delivery unless its key is known; commit. Returns (id, duplicate?)."""
        key = _text(info.key, DEDUPE_KEY_LENGTH) or "sha256:" + hashlib.sha256(body).hexdigest()
        values = list(_in_insert_order(_row(channel, info, key, headers, body, received_at)))
        for index, processor in self.processors:
            if values[index] is not None:
                values[index] = processor(values[index])
        slot = _Slot(values, channel.id, key)
        with self._mutex:
            self._queue.append(slot)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            slot.ready.acquire()  # until the leader has committed it, or hands the lead over
            lead = slot.lead
        if lead:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self) -> None:
        """Commit everything queued, answer its threads, hand the lead on (or put it down)."""
        batch: list[_Slot] = []
        try:
            with self._mutex:
                batch, self._queue = self._queue, []
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.ready.release()
                else:
                    self._leading = False
            for slot in batch:
                if slot.result is None and slot.error is None:  # interrupted half-way
                    slot.error = Unavailable("the delivery's transaction did not finish")
                slot.ready.release()  # held since the slot was made (or re-taken by a successor)

    def _commit(self, batch: list[_Slot]) -> None:
        """Store the batch; each slot gets its answer only once its transaction committed."""
        try:
            results = self._transaction(batch)
        except _Refused:
            # One delivery's values were refused: each on its own, so it fails alone.
            for slot in batch:
                try:
                    slot.result = self._transaction([slot])[0]
                except _Refused as exc:
                    slot.error = Unstorable(str(exc.__cause__))
                except Exception as exc:  # noqa: BLE001 — reaches the request's thread
                    slot.error = exc
            return
        except Exception as exc:  # noqa: BLE001 — every thread of the batch gets the error
            for slot in batch:
                slot.error = exc
            return
        for slot, result in zip(batch, results):
            slot.result = result

    def _transaction(self, batch: list[_Slot]) -> list[tuple[int, bool]]:
        """One transaction for the batch; each slot's (id, duplicate?), in the batch's order."""
        try:
            conn = self.connection()
        except (SQLAlchemyError, self.errors) as exc:  # raw_connection() does not wrap them
            raise Unavailable(str(exc)) from exc
        # Rows in key order: two processes' batches sharing keys (a delivery sent twice) then
        # wait for each other in the same order, never in a cycle (a PostgreSQL deadlock).
        ordered = sorted(batch, key=_slot_order) if len(batch) > 1 else batch
        answers: dict[_Slot, tuple[int, bool]] = {}
        queued = self.sqlite and self.writers.take()
        try:
            if self.sqlite:
                conn.execute("BEGIN IMMEDIATE")
            cursor = conn.cursor()
            try:
                # One multi-row INSERT per chunk of the batch: a single statement and round trip
                # (less client CPU than psycopg's pipelined executemany). RETURNING names each
                # new row by its key; a key missing from it was a duplicate.
                new: dict[tuple[int, str], int] = {}
                for start in range(0, len(ordered), _CHUNK):
                    chunk = ordered[start:start + _CHUNK]
                    cursor.execute(self._insert(len(chunk)),
                                   [value for slot in chunk for value in slot.values])
                    for row_id, channel_id, key in cursor.fetchall():
                        new[(channel_id, key)] = row_id
                known: dict[tuple[int, str], int] = {}  # ids of the keys answered so far
                for slot in ordered:
                    ident = (slot.channel_id, slot.key)
                    row_id = new.pop(ident, None)
                    if row_id is not None:  # the first of the batch with its key: stored
                        known[ident] = row_id
                        answers[slot] = row_id, False
                        continue
                    if ident not in known:  # stored before this batch
                        cursor.execute(self.existing, ident)
                        known[ident] = cursor.fetchone()[0]
                    answers[slot] = known[ident], True
                fresh = any(not duplicate for _, duplicate in answers.values())
                if fresh and not self.sqlite:  # new rows: the workers' doorbell, at commit
                    cursor.execute(wakeup.NOTIFY_SQL)
            finally:
                cursor.close()
            if self.sqlite:
                conn.execute("COMMIT")
                if fresh:
                    self.doorbell.ring()
            else:
                conn.commit()
            metrics.COMMIT_BATCH.observe(len(batch))
            return [answers[slot] for slot in batch]
        except self.refused as exc:
            self._rollback(conn)
            raise _Refused() from exc
        except self.errors as exc:
            self.drop()
            raise Unavailable(str(exc)) from exc
        except BaseException as exc:
            # Anything else half-way (a bug, an interruption): the transaction must not stay
            # open (SQLite's write lock; rows a later commit would carry) — drop the connection.
            self.drop()
            if isinstance(exc, Exception):
                raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            if queued:
                self.writers.leave()

    def _rollback(self, conn) -> None:
        try:
            if self.sqlite:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.rollback()
        except self.errors:
            self.drop()


def _slot_order(slot: _Slot):
    return slot.channel_id, slot.key


class _Refused(Exception):
    """The database refused a value of the batch (raised from its DBAPI error)."""
