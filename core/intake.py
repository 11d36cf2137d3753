"""Webhook intake: read the raw body (capped), authenticate, store durably, acknowledge.

One status per failure: 404 unknown or inactive channel (never 410: senders disable endpoints on
410), 413 too large, 400 a body that breaks HTTP framing (read before anything else), 401 not
authentic, 400 authentic but unreadable, 503 database unavailable (the channel retries). 200 only
once the delivery is committed; a duplicate gets 200 and no second row.

This is the service's hot path, so it is a thin WSGI layer in front of the Flask app
(:class:`Intake`, installed by ``create_app``) rather than a Flask view: no request context, no
routing table, no ORM — one dedicated DBAPI connection per process and one prepared INSERT per
batch of deliveries, the same work a hand-written receiver does (``bench/baseline_m.py``), with the commits of a
process's threads shared (group commit, :class:`Writer`). Everything else (admin API,
health, metrics) is Flask as usual. Adapters' ``authenticate`` and ``inspect`` run here, outside
any Flask context, as the plugin contract says.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from . import metrics
from .validation import unstorable_text
from .adapters import Delivery, Headers
from .errors import AuthenticationError, InvalidDelivery
from .models import (CHANNEL_ORDER_ID_LENGTH, DEDUPE_KEY_LENGTH, TOPIC_LENGTH, StoredDelivery,
                     SalesChannel, utcnow)
from .clock import naive_utc as _naive
from .channel_store import view

log = logging.getLogger("orderhooks.intake")

#: On every response, the admin API's included (``core/__init__.py`` adds them there).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'"))
_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
           404: "404 Not Found", 405: "405 Method Not Allowed",
           413: "413 Content Too Large", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
PREFIX = "/webhooks/"

#: Headers every delivery keeps besides the adapter's own (never secrets).
COMMON_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp")


_UNLOADED = object()
#: Channel ids up to this many above the highest one are looked up (see ChannelCache).
MIN_REACH = 1024


class ChannelCache:
    """Channels by id for a few seconds, so intake does not read the channel row every time.
    Admin edits in this process clear it; other processes see them within ``ttl`` seconds.

    When an entry expires, one thread reloads it while the others go on with the value it
    replaces (stale by the few milliseconds of that query): every thread of a busy process
    arriving at once used to query the database together (likely past the pool's size, so
    with connections opened and closed again), which showed as latency spikes every ``ttl``
    seconds under load (up to 173 ms on PostgreSQL at 650 req/s, measured).

    Ids come from unauthenticated URLs, so what they can cost is bounded:

    * at most ``size`` channels and, apart, at most ``missing_size`` "no such channel" answers,
      each table dropping its least recently used entry first: ids made up by a stranger never
      push a real channel out;
    * an id beyond the reach of the highest channel id (twice it, and at least 1,024 more; the
      highest is read at most once every ``ceiling_interval`` seconds — 1, or ``ttl`` if
      shorter) is no channel, answered without a query and without an entry. The margin lets
      channels created in other processes since be found at once. An id within reach that
      names no channel costs one primary-key read, at most once per ``ttl`` while its answer
      stays among the ``missing_size`` kept."""

    def __init__(self, ttl: float = 5.0, size: int = 4096, missing_size: int = 1024,
                 ceiling_interval: float | None = None):
        self.ttl = ttl
        self.size, self.missing_size = size, missing_size
        self.ceiling_interval = min(1.0, ttl) if ceiling_interval is None else ceiling_interval
        self._entries: OrderedDict[int, tuple[float, object]] = OrderedDict()
        self._missing: OrderedDict[int, tuple[float, None]] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: set[int] = set()
        self._generation = 0  # clear() bumps it: a load that began before is not kept
        self._reach = MIN_REACH
        self._ceiling_due = float("-inf")  # when the highest id may be read again
        self._ceiling_loading = False

    def __len__(self) -> int:
        return len(self._entries) + len(self._missing)

    def get(self, channel_id: int, load, highest=None):
        """The channel ``channel_id`` (None when there is none), from ``load()`` when it is
        not cached; with ``highest`` (a function returning the highest channel id), ids beyond
        its reach are None without calling ``load``."""
        now = time.monotonic()
        entry = self._entries.get(channel_id) or self._missing.get(channel_id)
        if entry is not None and entry[0] > now:
            try:
                (self._missing if entry[1] is None else self._entries).move_to_end(channel_id)
            except KeyError:  # dropped by another thread meanwhile
                pass
            return entry[1]
        if entry is None and highest is not None and channel_id > self._reach \
                and not self._within_reach(highest, now, channel_id):
            return None
        with self._lock:
            if entry is not None and channel_id in self._refreshing:
                return entry[1]  # another thread is reloading it
            self._refreshing.add(channel_id)
            generation = self._generation
        value = _UNLOADED
        try:
            value = load()
            return value
        finally:
            with self._lock:
                self._refreshing.discard(channel_id)
                if value is not _UNLOADED and generation == self._generation:
                    keep, other, bound = ((self._missing, self._entries, self.missing_size)
                                          if value is None else
                                          (self._entries, self._missing, self.size))
                    other.pop(channel_id, None)
                    keep[channel_id] = (now + self.ttl, value)
                    keep.move_to_end(channel_id)
                    while len(keep) > bound:
                        keep.popitem(last=False)

    def _within_reach(self, highest, now: float, channel_id: int) -> bool:
        """Whether ``channel_id`` is within reach of the highest channel id, reading that id
        again if it is due (one thread at a time; the others keep the reach it replaces)."""
        with self._lock:
            if self._ceiling_loading or now < self._ceiling_due:
                return channel_id <= self._reach
            self._ceiling_loading = True
            generation = self._generation
        reach = None
        try:
            ceiling = int(highest() or 0)
            reach = ceiling + max(MIN_REACH, ceiling)
        finally:
            with self._lock:
                self._ceiling_loading = False
                if reach is not None:
                    self._reach = reach
                    if generation == self._generation:
                        self._ceiling_due = now + self.ceiling_interval
        return channel_id <= self._reach

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._missing.clear()
            self._generation += 1
            self._ceiling_due = float("-inf")


class Intake:
    """``POST /webhooks/<channel_type>/<channel_id>``, as a WSGI layer: requests under
    ``/webhooks/`` are answered here, every other one goes on to ``next_app`` (Flask)."""

    def __init__(self, app, next_app):
        self.next_app = next_app
        self.config = app.config
        self.limit = int(app.config["MAX_BODY_BYTES"])
        self.channels = app.extensions["orderhooks.channels"]
        self.cache = app.extensions["orderhooks.channel_cache"]
        self.box = app.extensions["orderhooks.box"]
        self.db = app.extensions["orderhooks.db"]
        self.writer = Writer(self.db)
        # Headers stored with each delivery, by channel type (never secrets).
        self.kept = {channel_type: frozenset(h.lower() for h in (
            *COMMON_HEADERS, *self.channels.get(channel_type).stored_headers))
            for channel_type in self.channels.types}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.next_app(environ, start_response)
        try:
            status, payload, extra = self.receive(environ, path[len(PREFIX):])
        except Exception:  # noqa: BLE001 — never a stack trace to a client; the log has it
            log.exception("intake.unexpected_error")
            status, payload, extra = 500, {
                "error": "internal_error",
                "message": "something went wrong on our side; it has been logged"}, ()
        if status == 200:  # the hot path: the same bytes json.dumps would give
            body = b'{"status": "%s", "delivery_id": %d}\n' % (payload["status"].encode(),
                                                               payload["delivery_id"])
        else:
            body = json.dumps(payload).encode() + b"\n"
        start_response(_STATUS[status], [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            *SECURITY_HEADERS, *extra])
        if status != 200:
            length = _length(environ)
            if length is not None and 0 < length <= max(8 * self.limit, 1 << 20):
                return _Drained(body, environ["wsgi.input"], length)
        return [body]

    def receive(self, environ, rest: str):
        channel_type, _, channel_id = rest.partition("/")
        if environ.get("REQUEST_METHOD") != "POST":
            return _error(405, "method_not_allowed", "webhooks are delivered with POST",
                          extra=(("Allow", "POST"),))
        adapter = self.channels.get(channel_type)
        # Metric labels come from the installed channel types only: a type taken from the URL
        # would add a time series per name anyone cares to send.
        label = channel_type if adapter is not None else "unknown"
        limit = self.limit
        length = _length(environ)
        if length is None:
            return _error(400, "invalid_request", "the Content-Length header is not a number")
        if length > limit:
            metrics.rejected(label, "too_large")
            return _error(413, "body_too_large", f"webhook bodies are limited to {limit} bytes")
        if (adapter is None or not (channel_id.isascii() and channel_id.isdigit())
                or len(channel_id) > 18):
            metrics.rejected(label, "unknown_channel")
            return _error(404, "unknown_channel", f"no {channel_type} channel {channel_id} here")
        stream = environ["wsgi.input"]
        try:
            if length >= 0:
                body = stream.read(length) if length else b""
            elif environ.get("wsgi.input_terminated"):  # chunked: read no more than the cap
                body = stream.read(limit + 1)
            else:
                body = b""
        except Exception as exc:  # noqa: BLE001 — see below
            # Whatever the server's reader raises here (gunicorn's bad chunk size or
            # terminator, a body cut short, a reset) is the sender breaking HTTP framing: a
            # 400 and one line, before any lookup. The server closes the connection, since
            # where the next request would start is unknown.
            log.info("intake.malformed_body", extra={"channel_type": label,
                                                     "error": type(exc).__name__})
            metrics.rejected(label, "malformed_body")
            return _error(400, "malformed_body",
                          "the request body does not follow HTTP framing (chunked encoding or "
                          "Content-Length); send it again whole")
        if 0 < length != len(body):
            # The connection ended before the announced Content-Length: a truncated body is
            # not the delivery that was sent, so it is neither stored nor acknowledged.
            log.info("intake.incomplete_body", extra={"channel_type": label,
                                                      "announced": length,
                                                      "received": len(body)})
            metrics.rejected(label, "malformed_body")
            return _error(400, "incomplete_body",
                          f"the body ended after {len(body)} of the {length} bytes its "
                          "Content-Length announced; send it again whole")
        if len(body) > limit:
            metrics.rejected(label, "too_large")
            return _error(413, "body_too_large", f"webhook bodies are limited to {limit} bytes")

        try:
            number = int(channel_id)
            channel = self.cache.get(number, lambda: self._load_channel(number),
                                     self._highest_channel_id)
        except SQLAlchemyError:
            log.exception("intake.database_unavailable", extra={"channel_id": channel_id})
            metrics.rejected(label, "database_unavailable")
            return _unavailable()
        sent = _headers(environ)
        delivery = Delivery(body=body, headers=Headers.from_lowercase(sent),
                                    received_at=utcnow())
        if channel is None or channel.type != channel_type or not (
                channel.active or _accepted_while_inactive(adapter, delivery, channel)):
            metrics.rejected(label, "unknown_channel")
            return _error(404, "unknown_channel",
                          f"no active {channel_type} channel {channel_id} here")
        try:
            adapter.authenticate(delivery, channel)
        except AuthenticationError as exc:
            log.info("intake.unauthenticated", extra={"channel_id": channel.id, "error": str(exc)})
            metrics.rejected(label, "unauthenticated")
            return _error(401, "unauthenticated",
                          str(exc) or "the delivery's signature is not valid")
        except Exception as exc:  # noqa: BLE001 — a verifier choking on garbage is still a 401
            log.info("intake.unauthenticated", extra={"channel_id": channel.id,
                                                      "error": repr(exc)})
            metrics.rejected(label, "unauthenticated")
            return _error(401, "unauthenticated", "the delivery's signature could not be verified")
        try:
            info = adapter.inspect(delivery, channel)
        except (InvalidDelivery, ValueError, TypeError, KeyError, AttributeError) as exc:
            metrics.rejected(label, "invalid")
            return _error(400, "invalid_delivery", f"the delivery cannot be read: {exc}")
        except Exception as exc:  # noqa: BLE001 — a reader choking on odd input is still a 400
            log.warning("intake.unreadable", extra={"channel_id": channel.id, "error": repr(exc)})
            metrics.rejected(label, "invalid")
            return _error(400, "invalid_delivery",
                          f"the delivery cannot be read ({type(exc).__name__})")
        if unstorable_text([info.key, info.topic, info.channel_order_id]):
            # NUL characters or lone surrogates: no database column takes them (PostgreSQL would
            # fail the insert, and the sender would retry a 503 for ever).
            metrics.rejected(label, "invalid")
            return _error(400, "invalid_delivery", "the delivery's identifiers are not valid text")

        kept = self.kept[channel_type]
        headers = {k: v.replace("\x00", "\ufffd") for k, v in sent.items() if k in kept}
        try:
            delivery_id, duplicate = self.writer.store(channel, info, headers, body,
                                                       delivery.received_at)
        except Unstorable as exc:
            # The database refused the values themselves: sending it again will not help.
            log.warning("intake.unstorable", extra={"channel_id": channel.id, "error": str(exc)})
            metrics.rejected(label, "invalid")
            return _error(400, "invalid_delivery", "the delivery's fields cannot be stored")
        except Unavailable:
            log.exception("intake.database_unavailable", extra={"channel_id": channel.id})
            metrics.rejected(label, "database_unavailable")
            return _unavailable()
        if duplicate:
            log.info("intake.duplicate", extra={"channel_id": channel.id,
                                                "delivery_id": delivery_id,
                                                "dedupe_key": info.key})
            metrics.received(channel_type, "duplicate")
            return 200, {"status": "duplicate", "delivery_id": delivery_id}, ()
        log.info("intake.stored", extra={"channel_id": channel.id, "delivery_id": delivery_id,
                                         "topic": info.topic})
        metrics.received(channel_type, "stored")
        return 200, {"status": "accepted", "delivery_id": delivery_id}, ()

    def _highest_channel_id(self) -> int:
        with self.db.Session() as session:
            return session.scalar(select(func.max(SalesChannel.id))) or 0

    def _load_channel(self, channel_id: int):
        with self.db.Session() as session:
            row = session.get(SalesChannel, channel_id)
            return (view(row, self.box, self.config["PUBLIC_BASE_URL"])
                    if row is not None else None)


class _Drained(list):
    """A refused request's answer whose ``close`` (called by the server once the answer is
    sent) reads and drops what is left of the announced body. A server that closes with
    unread bytes on the socket sends a TCP reset, which can destroy the answer before the client
    reads it (seen with a 2 MB body on keep-alive: "connection aborted" instead of the 413), and
    gunicorn drains 64 KB at most. Only announced lengths up to 8 x the body limit: a bigger or
    unannounced (chunked) body is not read, and the connection closes after the answer."""

    def __init__(self, body: bytes, stream, left: int):
        super().__init__((body,))
        self.stream, self.left = stream, left

    def close(self) -> None:
        try:
            while self.left > 0:
                chunk = self.stream.read(min(65536, self.left))
                if not chunk:
                    return
                self.left -= len(chunk)
        except Exception:  # noqa: BLE001 — a client that went away: nothing more to do
            return


def _error(status: int, code: str, message: str, extra=()):
    return status, {"error": code, "message": message}, extra


def _unavailable():
    return _error(503, "database_unavailable",
                  "the delivery could not be stored; send it again later",
                  extra=(("Retry-After", "30"),))


def _length(environ) -> int | None:
    """The announced body length (-1 when none is), or None when it is not a number."""
    try:
        return int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return None


def _headers(environ) -> dict[str, str]:
    """The request's headers from the WSGI environ (names lower-cased, as ``Headers`` keeps them)."""
    data = {key[5:].lower().replace("_", "-"): value for key, value in environ.items()
            if key[:5] == "HTTP_"}
    if "CONTENT_TYPE" in environ:
        data["content-type"] = environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ:
        data["content-length"] = environ["CONTENT_LENGTH"]
    return data


def _accepted_while_inactive(adapter, delivery, channel) -> bool:
    """An inactive channel still takes an authentic delivery its adapter asks for (e.g. Shopify's
    shop/redact, sent 48 h after an uninstall); anything else gets the usual 404."""
    try:
        adapter.authenticate(delivery, channel)
        return bool(adapter.accepts_when_inactive(delivery, channel))
    except Exception:  # noqa: BLE001 — not authentic (or no answer): the channel stays unknown
        return False


def _text(value, limit: int) -> str | None:
    """A stored text field from outside input: bounded, and without NUL (PostgreSQL refuses it
    in text columns; the raw body keeps the exact bytes)."""
    if value is None or value == "":
        return None
    return str(value).replace("\x00", "\ufffd")[:limit]


class Unavailable(Exception):
    """The database could not take the delivery now (down, locked, connection lost)."""


class Unstorable(Exception):
    """The database refused the delivery's values themselves."""


#: Rows per INSERT statement (SQLite allows 32,766 parameters, PostgreSQL 65,535).
_CHUNK = 64

_COLUMNS = ("channel_id", "channel_type", "dedupe_key", "topic", "channel_order_id",
            "occurred_at", "received_at", "headers", "body", "state", "attempts",
            "next_attempt_at")


class _Slot:
    """One delivery waiting for the next group commit, and what became of it. ``ready`` is a
    lock taken at creation: the slot's thread blocks on it, whichever thread commits the slot
    releases it (a plain lock: an Event costs ten times as much, and this is per delivery)."""
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
    tail of hundreds of milliseconds. SQLite's own locking still guards correctness (other
    writers, such as the worker, do not take this lock; its busy timeout still applies)."""

    def __init__(self, db):
        self.db = db
        self.sqlite = db.is_sqlite
        dbapi = db.engine.dialect.dbapi
        self.refused = (dbapi.DataError, dbapi.IntegrityError)
        self.errors = dbapi.Error
        # PostgreSQL: psycopg's RawCursor with the server's own $n placeholders. With %s, psycopg
        # parses the query text again on every execute once it has more than 50 parameters (its
        # cache of parsed queries skips those): ~8 % of the intake's CPU under load (py-spy), and
        # 31 vs 60 us of client CPU per row for 8-row batches, 23 vs 51 for 16 (measured).
        # (psycopg 3.2 and later; another driver keeps %s.) Set on the writer's own connection.
        self.raw_cursor = None if self.sqlite else getattr(dbapi, "RawCursor", None)
        # Each column's value as the ORM would bind it (SQLite's DATETIME text, JSON, bytes...):
        # SQLAlchemy's own processors for this dialect, so the rows read back alike.
        dialect, columns = db.engine.dialect, StoredDelivery.__table__.c
        self.processors = [
            (index, processor) for index, name in enumerate(_COLUMNS)
            if (processor := columns[name].type.dialect_impl(dialect).bind_processor(dialect))]
        self._inserts: dict[int, str] = {}
        self.existing = (f"SELECT id FROM deliveries WHERE channel_id = {self._mark(1)} "
                         f"AND dedupe_key = {self._mark(2)}")
        database = db.engine.url.database if self.sqlite else None
        self.lock_path = (f"{database}-intake.lock"
                          if database and database != ":memory:" else None)
        self._conn = self._lock_fd = None
        self._pid = self._lock_pid = None
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

    def _lock(self):
        """This process's handle on the writers' queue (its own open file: flock excludes open
        files, not processes), or None without one. Only the leader uses it."""
        if self.lock_path is None:
            return None
        if self._lock_fd is None or self._lock_pid != os.getpid():
            try:
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # e.g. a read-only directory: SQLite's busy handler alone
                log.warning("intake.no_writer_queue", extra={"path": self.lock_path,
                                                             "error": str(exc)})
                self.lock_path = None
                return None
            self._lock_pid = os.getpid()
        return self._lock_fd

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

    def _insert(self, rows: int) -> str:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING for ``rows`` rows (one text per batch
        size, so the database's and the driver's statement caches keep each prepared)."""
        sql = self._inserts.get(rows)
        if sql is None:
            width = len(_COLUMNS)
            values = ", ".join(
                "(" + ", ".join(self._mark(row * width + col + 1) for col in range(width)) + ")"
                for row in range(rows))
            sql = self._inserts[rows] = (
                f"INSERT INTO deliveries ({', '.join(_COLUMNS)}) VALUES {values} "
                "ON CONFLICT (channel_id, dedupe_key) DO NOTHING "
                "RETURNING id, channel_id, dedupe_key")
        return sql

    def store(self, channel, info, headers: dict, body: bytes, received_at):
        """Insert the delivery unless its key is known; commit. Returns (id, duplicate?)."""
        key = _text(info.key, DEDUPE_KEY_LENGTH) or "sha256:" + hashlib.sha256(body).hexdigest()
        values = [channel.id, channel.type, key, _text(info.topic, TOPIC_LENGTH),
                  _text(info.channel_order_id, CHANNEL_ORDER_ID_LENGTH),
                  info.occurred_at and _naive(info.occurred_at), received_at, headers, body,
                  "pending", 0, received_at]
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
        lock = self._lock() if self.sqlite else None
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if self.sqlite:
                conn.execute("BEGIN IMMEDIATE")
            cursor = conn.cursor()
            try:
                # One multi-row INSERT per chunk of the batch: a single statement and round trip
                # (half the client CPU of psycopg's pipelined executemany, measured). RETURNING
                # names each new row by its key; a key missing from it was a duplicate.
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
            finally:
                cursor.close()
            if self.sqlite:
                conn.execute("COMMIT")
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
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
