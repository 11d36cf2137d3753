"""The webhook edge: ``POST /webhooks/<channel_type>/<channel_id>`` — read the raw body
(capped), find the channel, authenticate, inspect, store through the inbox, answer.

One status per failure: 404 unknown or inactive channel (never 410: senders disable endpoints on
410), 413 too large, 400 a body that breaks HTTP framing (read before anything else), 401 not
authentic, 400 authentic but unreadable, 503 database unavailable (the channel retries). 200 only
once the delivery is committed; a duplicate gets 200 and no second row.

This is the service's hot path, so it is a plain WSGI app rather than a Flask view, mounted
beside Flask on ``/webhooks`` by werkzeug's ``DispatcherMiddleware`` (``create_app``): no
request context, no routing table, no ORM on the way in — the same work a hand-written receiver
does (``bench/baseline_m.py``), the rows written by the inbox (``core/inbox.py``). Adapters'
``authenticate`` and ``inspect`` run here, outside any Flask context, as the plugin contract
says.
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from . import answers, metrics
from .answers import SECURITY_HEADERS
from .adapters import Delivery, Headers
from .errors import AuthenticationError, InvalidDelivery
from .inbox import Unavailable, Unstorable
from .channel_store import view
from .clock import utcnow
from .models import SalesChannel
from .validation import unstorable_text

log = logging.getLogger("orderhooks.intake")

#: Where the edge is mounted (``create_app``); the paths it answers are below it.
MOUNT = "/webhooks"

_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
           404: "404 Not Found", 405: "405 Method Not Allowed",
           413: "413 Content Too Large", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}

#: Headers every delivery keeps besides the adapter's own (never secrets).
COMMON_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp")


class WebhookEdge:
    """The WSGI app mounted on ``/webhooks``: ``PATH_INFO`` is what follows the mount point,
    ``/<channel_type>/<channel_id>``; deliveries are stored through ``inbox``."""

    def __init__(self, app, inbox):
        self.config = app.config
        self.limit = int(app.config["MAX_BODY_BYTES"])
        self.channel_types = app.extensions["orderhooks.channel_types"]
        self.cache = app.extensions["orderhooks.channel_cache"]
        self.box = app.extensions["orderhooks.box"]
        self.db = app.extensions["orderhooks.db"]
        self.inbox = inbox
        # Headers stored with each delivery, by channel type (never secrets).
        self.kept = {channel_type: frozenset(h.lower() for h in (
            *COMMON_HEADERS, *self.channel_types.get(channel_type).stored_headers))
            for channel_type in self.channel_types.types}

    def __call__(self, environ, start_response):
        try:
            status, payload, extra = self.receive(environ, environ.get("PATH_INFO", "")[1:])
        except Exception:  # noqa: BLE001 — never a stack trace to a client; the log has it
            log.exception("intake.unexpected_error")
            status, payload, extra = answers.internal_error()
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
        """``(status, payload, headers)`` for one request: each step below either hands on
        what it found or refuses with the answer for its failure (:class:`_Refused`)."""
        try:
            channel_type, channel_id, adapter, label, length = self._route(environ, rest)
            body = self._read_body(environ, length, label)
            channel, delivery, sent = self._find_channel(environ, channel_type, channel_id,
                                                         adapter, label, body)
            self._authenticate(adapter, delivery, channel, label)
            info = self._inspect(adapter, delivery, channel, label)
            return self._store(channel, info, delivery, sent, label)
        except _Refused as refused:
            return refused.answer

    def _route(self, environ, rest: str):
        """The channel type and id from the path, the adapter of that type, the metric label
        and the announced body length (-1: none); refused before any byte of the body is
        read: a path that is not a channel's (404), a method other than POST (405), a
        Content-Length that is not a number (400) or above the cap (413)."""
        channel_type, _, channel_id = rest.partition("/")
        if not channel_type:  # the mount point itself, or a slash after it
            metrics.rejected("unknown", "unknown_channel")
            raise _refuse(404, "unknown_channel",
                          f"webhooks are posted to {MOUNT}/<channel_type>/<channel_id>")
        if environ.get("REQUEST_METHOD") != "POST":
            raise _refuse(405, "method_not_allowed", "webhooks are delivered with POST",
                          extra=(("Allow", "POST"),))
        adapter = self.channel_types.get(channel_type)
        # Metric labels come from the installed channel types only: a type taken from the URL
        # would add a time series per name anyone cares to send.
        label = channel_type if adapter is not None else "unknown"
        length = _length(environ)
        if length is None:
            raise _refuse(400, "invalid_request", "the Content-Length header is not a number")
        if length > self.limit:
            metrics.rejected(label, "too_large")
            raise _refuse(413, "body_too_large",
                          f"webhook bodies are limited to {self.limit} bytes")
        if (adapter is None or not (channel_id.isascii() and channel_id.isdigit())
                or len(channel_id) > 18):
            metrics.rejected(label, "unknown_channel")
            raise _refuse(404, "unknown_channel", f"no {channel_type} channel {channel_id} here")
        return channel_type, channel_id, adapter, label, length

    def _read_body(self, environ, length: int, label: str) -> bytes:
        """The whole body, at most the cap: a body that breaks HTTP framing or ends before its
        Content-Length is refused (400), one beyond the cap too (413)."""
        limit = self.limit
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
            raise _refuse(400, "malformed_body",
                          "the request body does not follow HTTP framing (chunked encoding or "
                          "Content-Length); send it again whole") from None
        if 0 < length != len(body):
            # The connection ended before the announced Content-Length: a truncated body is
            # not the delivery that was sent, so it is neither stored nor acknowledged.
            log.info("intake.incomplete_body", extra={"channel_type": label,
                                                      "announced": length,
                                                      "received": len(body)})
            metrics.rejected(label, "malformed_body")
            raise _refuse(400, "incomplete_body",
                          f"the body ended after {len(body)} of the {length} bytes its "
                          "Content-Length announced; send it again whole")
        if len(body) > limit:
            metrics.rejected(label, "too_large")
            raise _refuse(413, "body_too_large", f"webhook bodies are limited to {limit} bytes")
        return body

    def _find_channel(self, environ, channel_type: str, channel_id: str, adapter, label: str,
                      body: bytes):
        """The channel the path names (from the channel cache), the delivery as adapters see
        it and the request's headers. An unknown channel, one of another type, or an inactive
        one is 404 — unless its adapter takes this authentic delivery while inactive; a
        database that cannot be reached is 503."""
        try:
            number = int(channel_id)
            channel = self.cache.get(number, lambda: self._load_channel(number),
                                     self._highest_channel_id)
        except SQLAlchemyError:
            log.exception("intake.database_unavailable", extra={"channel_id": channel_id})
            metrics.rejected(label, "database_unavailable")
            raise _Refused(_unavailable()) from None
        sent = _headers(environ)
        delivery = Delivery(body=body, headers=Headers.from_lowercase(sent),
                            received_at=utcnow())
        if channel is None or channel.type != channel_type or not (
                channel.active or _accepted_while_inactive(adapter, delivery, channel)):
            metrics.rejected(label, "unknown_channel")
            raise _refuse(404, "unknown_channel",
                          f"no active {channel_type} channel {channel_id} here")
        return channel, delivery, sent

    @staticmethod
    def _authenticate(adapter, delivery, channel, label: str) -> None:
        """The adapter's verdict on the delivery's signature: anything but a pass is 401."""
        try:
            adapter.authenticate(delivery, channel)
        except AuthenticationError as exc:
            log.info("intake.unauthenticated", extra={"channel_id": channel.id, "error": str(exc)})
            metrics.rejected(label, "unauthenticated")
            raise _refuse(401, "unauthenticated",
                          str(exc) or "the delivery's signature is not valid") from None
        except Exception as exc:  # noqa: BLE001 — a verifier choking on garbage is still a 401
            log.info("intake.unauthenticated", extra={"channel_id": channel.id,
                                                      "error": repr(exc)})
            metrics.rejected(label, "unauthenticated")
            raise _refuse(401, "unauthenticated",
                          "the delivery's signature could not be verified") from None

    @staticmethod
    def _inspect(adapter, delivery, channel, label: str):
        """What the adapter reads from the authentic delivery (its key, topic, order id); a
        delivery it cannot read, or whose identifiers no column can store, is 400."""
        try:
            info = adapter.inspect(delivery, channel)
        except (InvalidDelivery, ValueError, TypeError, KeyError, AttributeError) as exc:
            metrics.rejected(label, "invalid")
            raise _refuse(400, "invalid_delivery",
                          f"the delivery cannot be read: {exc}") from None
        except Exception as exc:  # noqa: BLE001 — a reader choking on odd input is still a 400
            log.warning("intake.unreadable", extra={"channel_id": channel.id, "error": repr(exc)})
            metrics.rejected(label, "invalid")
            raise _refuse(400, "invalid_delivery",
                          f"the delivery cannot be read ({type(exc).__name__})") from None
        if unstorable_text([info.key, info.topic, info.channel_order_id]):
            # NUL characters or lone surrogates: no database column takes them (PostgreSQL would
            # fail the insert, and the sender would retry a 503 for ever).
            metrics.rejected(label, "invalid")
            raise _refuse(400, "invalid_delivery",
                          "the delivery's identifiers are not valid text")
        return info

    def _store(self, channel, info, delivery, sent: dict, label: str):
        """The delivery committed through the inbox with the headers its type keeps: 200
        accepted, or 200 duplicate with the first copy's id; values the database refuses are
        400, a database that cannot be reached 503."""
        kept = self.kept[channel.type]
        headers = {k: v.replace("\x00", "\ufffd") for k, v in sent.items() if k in kept}
        try:
            delivery_id, duplicate = self.inbox.store(channel, info, headers, delivery.body,
                                                      delivery.received_at)
        except Unstorable as exc:
            # The database refused the values themselves: sending it again will not help.
            log.warning("intake.unstorable", extra={"channel_id": channel.id, "error": str(exc)})
            metrics.rejected(label, "invalid")
            raise _refuse(400, "invalid_delivery",
                          "the delivery's fields cannot be stored") from None
        except Unavailable:
            log.exception("intake.database_unavailable", extra={"channel_id": channel.id})
            metrics.rejected(label, "database_unavailable")
            raise _Refused(_unavailable()) from None
        if duplicate:
            log.info("intake.duplicate", extra={"channel_id": channel.id,
                                                "delivery_id": delivery_id,
                                                "dedupe_key": info.key})
            metrics.received(channel.type, "duplicate")
            return 200, {"status": "duplicate", "delivery_id": delivery_id}, ()
        log.info("intake.stored", extra={"channel_id": channel.id, "delivery_id": delivery_id,
                                         "topic": info.topic})
        metrics.received(channel.type, "stored")
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


class _Refused(Exception):
    """A step of :meth:`WebhookEdge.receive` refusing the request: ``answer`` is the
    ``(status, payload, headers)`` to send."""

    def __init__(self, answer):
        super().__init__(answer[0])
        self.answer = answer


def _refuse(status: int, code: str, message: str, extra=()) -> _Refused:
    return _Refused(_error(status, code, message, extra))


def _error(status: int, code: str, message: str, extra=()):
    return status, answers.error_body(code, message), extra


def _unavailable():
    return answers.database_unavailable("the delivery could not be stored; send it again later")


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
