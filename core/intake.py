"""Webhook intake: read the raw body (capped), authenticate, store durably, acknowledge.

One status per failure: 404 unknown or inactive channel (never 410: senders disable endpoints on
410), 413 too large, 401 not authentic, 400 authentic but unreadable, 503 database unavailable (the
channel retries). 200 only once the delivery is committed; a duplicate gets 200 and no second row.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from . import metrics
from .channels import Delivery as IncomingDelivery, Headers
from .db import get_db
from .errors import AuthenticationError, InvalidDelivery
from .models import Delivery, SalesChannel, utcnow
from .rules import _naive
from .saleschannels import app_view

log = logging.getLogger("orderhooks.intake")
bp = Blueprint("webhooks", __name__)

#: Headers every delivery keeps besides the adapter's own (never secrets).
COMMON_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp")


class ChannelCache:
    """Channels by id for a few seconds, so intake does not read the channel row every time.
    Admin edits in this process clear it; other processes see them within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._entries: dict[int, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, channel_id: int, load):
        now = time.monotonic()
        entry = self._entries.get(channel_id)
        if entry and entry[0] > now:
            return entry[1]
        value = load()
        with self._lock:
            self._entries[channel_id] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def error(status: int, code: str, message: str, **extra):
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


@bp.post("/webhooks/<channel_type>/<channel_id>")
def receive(channel_type: str, channel_id: str):
    limit = current_app.config["MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        metrics.rejected(channel_type, "too_large")
        return error(413, "body_too_large", f"webhook bodies are limited to {limit} bytes")
    adapter = current_app.extensions["orderhooks.channels"].get(channel_type)
    if (adapter is None or not (channel_id.isascii() and channel_id.isdigit())
            or len(channel_id) > 18):
        metrics.rejected(channel_type, "unknown_channel")
        return error(404, "unknown_channel", f"no {channel_type} channel {channel_id} here")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        metrics.rejected(channel_type, "too_large")
        return error(413, "body_too_large", f"webhook bodies are limited to {limit} bytes")

    db = get_db()
    try:
        channel = current_app.extensions["orderhooks.channel_cache"].get(
            int(channel_id), lambda: _load_channel(db, int(channel_id)))
    except SQLAlchemyError:
        log.exception("intake.database_unavailable", extra={"channel_id": channel_id})
        metrics.rejected(channel_type, "database_unavailable")
        return _unavailable()
    delivery = IncomingDelivery(body=body, headers=Headers(request.headers.items()),
                                received_at=utcnow())
    if channel is None or channel.type != channel_type or not (
            channel.active or _accepted_while_inactive(adapter, delivery, channel)):
        metrics.rejected(channel_type, "unknown_channel")
        return error(404, "unknown_channel", f"no active {channel_type} channel {channel_id} here")
    try:
        adapter.authenticate(delivery, channel)
    except AuthenticationError as exc:
        log.info("intake.unauthenticated", extra={"channel_id": channel.id, "error": str(exc)})
        metrics.rejected(channel_type, "unauthenticated")
        return error(401, "unauthenticated", str(exc) or "the delivery's signature is not valid")
    except Exception as exc:  # noqa: BLE001 — a verifier choking on garbage is still a 401
        log.info("intake.unauthenticated", extra={"channel_id": channel.id, "error": repr(exc)})
        metrics.rejected(channel_type, "unauthenticated")
        return error(401, "unauthenticated", "the delivery's signature could not be verified")
    try:
        info = adapter.inspect(delivery, channel)
    except (InvalidDelivery, ValueError, TypeError, KeyError, AttributeError) as exc:
        metrics.rejected(channel_type, "invalid")
        return error(400, "invalid_delivery", f"the delivery cannot be read: {exc}")
    except Exception as exc:  # noqa: BLE001 — a reader choking on odd input is still a 400
        log.warning("intake.unreadable", extra={"channel_id": channel.id, "error": repr(exc)})
        metrics.rejected(channel_type, "invalid")
        return error(400, "invalid_delivery",
                     f"the delivery cannot be read ({type(exc).__name__})")
    from .api import unstorable_text
    if unstorable_text([info.key, info.topic, info.channel_order_id]):
        # NUL characters or lone surrogates: no database column takes them (PostgreSQL would
        # fail the insert, and the sender would retry a 503 for ever).
        metrics.rejected(channel_type, "invalid")
        return error(400, "invalid_delivery", "the delivery's identifiers are not valid text")

    keep = set(COMMON_HEADERS) | set(adapter.stored_headers)
    headers = {k: v.replace("\x00", "\ufffd") for k, v in delivery.headers.items() if k in keep}
    try:
        delivery_id, duplicate = store(db, channel, info, headers, body, delivery.received_at)
    except (DataError, IntegrityError) as exc:
        # The database refused the values themselves: sending it again will not help.
        log.warning("intake.unstorable", extra={"channel_id": channel.id, "error": str(exc.orig)})
        metrics.rejected(channel_type, "invalid")
        return error(400, "invalid_delivery", "the delivery's fields cannot be stored")
    except SQLAlchemyError:
        log.exception("intake.database_unavailable", extra={"channel_id": channel.id})
        metrics.rejected(channel_type, "database_unavailable")
        return _unavailable()
    if duplicate:
        log.info("intake.duplicate", extra={"channel_id": channel.id, "delivery_id": delivery_id,
                                            "dedupe_key": info.key})
        metrics.received(channel_type, "duplicate")
        return jsonify({"status": "duplicate", "delivery_id": delivery_id}), 200
    log.info("intake.stored", extra={"channel_id": channel.id, "delivery_id": delivery_id,
                                     "topic": info.topic})
    metrics.received(channel_type, "stored")
    return jsonify({"status": "accepted", "delivery_id": delivery_id}), 200


def _accepted_while_inactive(adapter, delivery, channel) -> bool:
    """An inactive channel still takes an authentic delivery its adapter asks for (e.g. Shopify's
    shop/redact, sent 48 h after an uninstall); anything else gets the usual 404."""
    try:
        adapter.authenticate(delivery, channel)
        return bool(adapter.accepts_when_inactive(delivery, channel))
    except Exception:  # noqa: BLE001 — not authentic (or no answer): the channel stays unknown
        return False


def _load_channel(db, channel_id: int):
    with db.Session() as session:
        row = session.get(SalesChannel, channel_id)
        return app_view(row) if row is not None else None


def store(db, channel, info, headers: dict, body: bytes, received_at) -> tuple[int, bool]:
    """Insert the delivery unless its key is known; commit. Returns (id, duplicate?)."""
    values = dict(channel_id=channel.id, channel_type=channel.type,
                  dedupe_key=_text(info.key, 255) or "sha256:" + hashlib.sha256(body).hexdigest(),
                  topic=_text(info.topic, 128),
                  channel_order_id=_text(info.channel_order_id, 128),
                  occurred_at=info.occurred_at and _naive(info.occurred_at),
                  received_at=received_at, headers=headers, body=body, state="pending",
                  attempts=0, next_attempt_at=received_at)
    statement = _insert_statement(db.is_sqlite)
    # A plain connection, not an ORM session: intake is the hot path.
    with db.engine.begin() as conn:
        new_id = conn.execute(statement, values).scalar()
        if new_id is not None:
            return new_id, False
        existing = conn.execute(select(Delivery.id).where(
            Delivery.channel_id == channel.id, Delivery.dedupe_key == values["dedupe_key"])).scalar()
        return existing, True


def _text(value, limit: int) -> str | None:
    """A stored text field from outside input: bounded, and without NUL (PostgreSQL refuses it
    in text columns; the raw body keeps the exact bytes)."""
    if value is None or value == "":
        return None
    return str(value).replace("\x00", "\ufffd")[:limit]


@functools.lru_cache(maxsize=2)
def _insert_statement(is_sqlite: bool):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id, built once (values are bound per call)."""
    if is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    table = Delivery.__table__
    return (insert(table).on_conflict_do_nothing(index_elements=["channel_id", "dedupe_key"])
            .returning(table.c.id))


def _unavailable():
    response = error(503, "database_unavailable",
                     "the delivery could not be stored; send it again later")
    response.headers["Retry-After"] = "30"
    return response
