"""What a channel adapter is: the object a plugin registers through ``register_channels``.

The core talks only to these plain objects and to the small value types below; it never
imports channel code. Subclass :class:`ChannelAdapter` and override what your channel needs.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

import orjson
from marshmallow import Schema

try:  # reads a few fields of a large body without building it (see Delivery.fields)
    import simdjson
except ImportError:  # pragma: no cover — a platform without its wheel: Delivery.json instead
    simdjson = None

from .http import APIBaseURLs
from .errors import InvalidDelivery
from .intents import CreateOrder, Ignore, Intent
from . import webhooks as hooks


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of a delivery's HTTP headers."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data = {str(k).lower(): str(v) for k, v in pairs}

    @classmethod
    def from_lowercase(cls, data: dict[str, str]) -> "Headers":
        """Wrap a dict whose names are already lower-case (no copy)."""
        headers = cls.__new__(cls)
        headers._data = data
        return headers

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default=None):
        return self._data.get(key.lower(), default)

    def first(self, *names: str) -> str | None:
        """The first of ``names`` present (e.g. ``X-Shopify-Topic`` or ``Shopify-Topic``)."""
        for name in names:
            value = self._data.get(name.lower())
            if value is not None:
                return value
        return None


@dataclass
class Delivery:
    """One webhook delivery as the channel sent it: the raw body bytes and the headers."""
    body: bytes
    headers: Headers
    received_at: datetime | None = None
    #: The stored delivery's id (None during intake, before it is stored).
    id: int | None = None
    #: In the worker, on a channel with order creation on: whether the service held the order
    #: the delivery names (``DeliveryInfo.channel_order_id``) when the batch was claimed, so
    #: that a plugin knows which orders its reads may have to import (``read_order``). None:
    #: not looked up (order creation off, no order named, or outside the worker).
    order_known: bool | None = None
    _parsed: Any = field(default=None, repr=False)

    def json(self) -> Any:
        """The body parsed as JSON (from the raw bytes, never re-serialised). Raises ValueError."""
        if self._parsed is None:
            try:  # orjson: several times faster on a full order payload
                self._parsed = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                # What orjson refuses and the standard library reads (NaN, integers beyond 64
                # bits, lone surrogate escapes...): the same answer as ever, or its ValueError.
                self._parsed = json.loads(self.body)
        return self._parsed

    def fields(self, *keys: str) -> dict[str, Any] | None:
        """Some top-level fields of a JSON object body (missing ones are None), without
        building the whole document: for an adapter's ``inspect``, on the intake's hot path,
        where a full order payload's thousands of Python objects cost more than the rest of the
        request (docs/performance.md, "Measured choices on the hot paths", has the figure).
        The body is still validated whole (simdjson), and the answer is what :meth:`json`
        would give: anything simdjson does not read the same way (a repeated key, an integer
        beyond 64 bits, NaN...) is read by :meth:`json` instead. None if the body is JSON but
        not an object; ValueError if it is not JSON."""
        if self._parsed is None and simdjson is not None:
            found = _top_fields(self.body, keys)
            if found is not _UNREAD:
                return found
        payload = self.json()
        return {key: payload.get(key) for key in keys} if isinstance(payload, dict) else None

    def json_object(self, *keys: str) -> dict[str, Any]:
        """The body as a JSON object (a dict) — only ``keys`` of it when named, read the way
        :meth:`fields` reads them — or :class:`orderhooks.InvalidDelivery` saying what is wrong
        with it. The check every adapter's ``inspect`` starts with: a body that is not JSON, or
        JSON but not an object, is the channel's fault, never a 5xx."""
        try:
            payload = self.fields(*keys) if keys else self.json()
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidDelivery("the body is not JSON") from exc
        if not isinstance(payload, dict):
            raise InvalidDelivery("the body is not a JSON object")
        return payload


#: Each thread's simdjson parser (one document at a time per parser).
_parsers = threading.local()
_UNREAD = object()
#: A thread keeps its parser (and the buffers it grew) for bodies up to this size.
_KEEP_PARSER_BYTES = 256 * 1024


def _top_fields(body: bytes, keys: tuple[str, ...]):
    """``keys`` of a JSON object body through simdjson, None if the body is not an object, or
    _UNREAD where :meth:`Delivery.json` must decide."""
    kept = len(body) <= _KEEP_PARSER_BYTES  # a parser's buffers grow to its biggest document
    parser = getattr(_parsers, "parser", None) if kept else None
    if parser is None:
        parser = simdjson.Parser()
        if kept:
            _parsers.parser = parser
    try:
        doc = parser.parse(body)
    except RuntimeError:
        # A big integer, or a document of this thread's parser still referenced (an exception's
        # traceback can keep one): a fresh parser next time, and json() now.
        if kept:
            _parsers.parser = None
        return _UNREAD
    except ValueError:  # not JSON to simdjson (NaN, a lone surrogate...): json() decides
        return _UNREAD
    try:
        if not isinstance(doc, simdjson.Object):
            return None
        wanted = [key for key in doc.keys() if key in keys]
        if len(wanted) != len(set(wanted)):  # a repeated key: json() keeps the last one
            return _UNREAD
        found = {}
        for key in keys:
            value = doc.get(key)
            if isinstance(value, simdjson.Object):
                value = value.as_dict()
            elif isinstance(value, simdjson.Array):
                value = value.as_list()
            found[key] = value
        return found
    finally:
        del doc  # the parser can take the next document only once no proxy refers to this one


@dataclass(frozen=True)
class Channel:
    """A configured sales channel as plugins see it (credentials decrypted)."""
    id: int
    type: str
    name: str
    active: bool
    credentials: Mapping[str, Any]
    #: Random per-channel secret the service generated; plugins may use it to authenticate.
    webhook_secret: str
    #: Where the channel must send deliveries: ``<public base url>/webhooks/<type>/<id>``.
    webhook_url: str
    valid_cancellation_statuses: tuple[str, ...] = ()
    valid_fulfillment_statuses: tuple[str, ...] = ()
    #: The webhooks the merchant ticked (``core.webhooks`` names); None: never chosen, so the
    #: status lists decide (see :attr:`enabled_webhooks`).
    webhooks: tuple[str, ...] | None = None
    #: Whether the channel's test orders are imported.
    import_test_orders: bool = False
    #: Whether RMA lines take the action the refund's restock data implies (else a person's).
    refund_restock_actions: bool = False

    @property
    def enabled_webhooks(self) -> tuple[str, ...]:
        """The webhooks the channel uses: its choice, or what its status lists imply."""
        return hooks.effective(self.webhooks, self.valid_cancellation_statuses,
                               self.valid_fulfillment_statuses)

    def uses(self, webhook: str) -> bool:
        """Whether the channel uses the webhook named ``webhook`` (``core.webhooks``)."""
        return webhook in self.enabled_webhooks

    @property
    def wants_cancellations(self) -> bool:
        return self.uses(hooks.CANCELLATION)

    @property
    def wants_fulfillments(self) -> bool:
        return self.uses(hooks.FULFILLMENT)


@dataclass(frozen=True)
class DeliveryInfo:
    """What the intake needs to know about a delivery before storing it."""
    #: De-duplication key, unique per channel: the same event delivered twice has the same key.
    key: str
    #: The channel's name for the event (e.g. ``store/order/statusUpdated``, ``orders/cancelled``).
    topic: str | None = None
    #: The channel's order id this delivery is about, when the delivery says so.
    channel_order_id: str | None = None
    #: When the channel says the event happened.
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class SubscriptionSpec:
    """A webhook subscription the channel needs, given its settings."""
    topic: str
    destination: str


@dataclass(frozen=True)
class RemoteSubscription:
    """A webhook subscription as it exists on the channel."""
    remote_id: str
    topic: str
    destination: str
    active: bool = True
    #: Why deliveries of this subscription would not be accepted or understood although it is
    #: active, e.g. its secret header is not the channel's current secret; None when nothing is
    #: wrong. The check repairs a subscription with a mismatch (``activate_subscription``).
    mismatch: str | None = None


class ChannelAdapter:
    """Base class for channel adapters. ``type`` names the channel in URLs and the admin API."""

    #: URL-safe name, e.g. ``"bigcommerce"``.
    type: str = ""
    #: Human-readable name, e.g. ``"BigCommerce"``.
    title: str = ""
    #: marshmallow schema validating ``credentials`` in the admin API (unknown keys are refused).
    credentials_schema: type[Schema] | None = None
    #: Delivery headers worth storing with the body (lower-case); others are dropped.
    stored_headers: tuple[str, ...] = ()
    #: Credential fields that decide where the channel's API calls go (an ``api_base_url``, a
    #: store hash, a shop domain). The admin API changes one only when the same request sends
    #: ``sent_credentials`` again: stored credentials never follow a new destination on their own.
    destination_credentials: tuple[str, ...] = ()
    #: Credential fields sent to the channel's API with its calls (access tokens).
    sent_credentials: tuple[str, ...] = ()
    #: Base URLs besides the channel's own that its API calls may use, from
    #: ``ORDERHOOKS_ALLOWED_API_BASE_URLS`` (set by the app). Hand it to ``core.http.ChannelHTTP``.
    allowed_api_base_urls: APIBaseURLs = APIBaseURLs()

    def api_base_url(self, credentials: Mapping[str, Any]) -> str | None:
        """The base URL the channel's API calls go to with these credentials; None when the
        channel has no API. The admin API refuses credentials whose base URL is neither one of
        :meth:`own_api_base_urls` nor allowed by the operator (422)."""
        return None

    def own_api_base_urls(self, credentials: Mapping[str, Any]) -> tuple[str, ...]:
        """The channel's real API base URLs for these credentials (https only): the ones usable
        without the operator's allowance."""
        return ()

    def check_destination(self, url: str) -> None:
        """Raise ValueError (with a message for the operator) if the channel cannot deliver to
        ``url``. Called before subscriptions are created."""

    def authenticate(self, delivery: Delivery, channel: Channel) -> None:
        """Raise :class:`orderhooks.AuthenticationError` unless the delivery is authentic.

        Runs on the raw body before anything is parsed or stored. Compare secrets in constant
        time (``hmac.compare_digest``)."""
        raise NotImplementedError

    def accepts_when_inactive(self, delivery: Delivery, channel: Channel) -> bool:
        """Whether an *inactive* channel still takes this (authenticated) delivery — e.g. a
        privacy request that arrives days after the app was uninstalled. The worker then still
        translates it. Default: no (an inactive channel answers 404 and translates nothing)."""
        return False

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        """Name the delivery: its de-duplication key, topic and order. Runs at intake after
        :meth:`authenticate`; must not call the channel's API. Raise
        :class:`orderhooks.InvalidDelivery` for a body that makes no sense."""
        raise NotImplementedError

    def translate(self, delivery: Delivery, channel: Channel) -> Iterable[Intent]:
        """Turn a stored delivery into intents (``orderhooks.Cancel``, ``Fulfill``...). Runs in
        the worker and may call the channel's API. Raise :class:`orderhooks.RetryLater` when
        throttled and :class:`orderhooks.ChannelAPIError` when the API fails."""
        raise NotImplementedError

    def translate_many(self, deliveries: list[Delivery],
                       channel: Channel) -> list[list[Intent] | Exception]:
        """Translate a batch of one channel's deliveries; one result per delivery, in order: its
        intents, or the exception that stopped it. The worker calls this, not :meth:`translate`.

        The default calls :meth:`translate` for each. Override it to coalesce: e.g. when several
        deliveries concern the same order, read that order from the API once for all of them."""
        results: list[list[Intent] | Exception] = []
        for delivery in deliveries:
            try:
                results.append(list(self.translate(delivery, channel)))
            except Exception as exc:  # noqa: BLE001 — handed to the worker, per delivery
                results.append(exc)
        return results

    #: Each webhook name (``core.webhooks``) the channel offers, mapped to the topics (scopes)
    #: that carry it on the channel. Names missing here are refused for the channel (422).
    webhook_topics: Mapping[str, tuple[str, ...]] = {}
    #: Topics subscribed whenever any webhook is (e.g. the app's uninstall notice).
    lifecycle_topics: tuple[str, ...] = ()
    #: Names the plugin translates today: only these are subscribed (a ticked name outside it
    #: is kept in the settings, and subscribed once the plugin translates it).
    translated_webhooks: frozenset[str] | None = None

    def desired_subscriptions(self, channel: Channel) -> list[SubscriptionSpec]:
        """The subscriptions the channel needs: the topics of every webhook it uses (and
        translates), each once, plus :attr:`lifecycle_topics` when there is any; none when it
        uses none. Override for anything the mapping cannot say."""
        topics: list[str] = []
        for name in channel.enabled_webhooks:
            if self.translated_webhooks is not None and name not in self.translated_webhooks:
                continue
            topics += [t for t in self.webhook_topics.get(name, ()) if t not in topics]
        if topics:
            topics += [t for t in self.lifecycle_topics if t not in topics]
        return [SubscriptionSpec(topic, channel.webhook_url) for topic in topics]

    def read_order(self, channel: Channel, channel_order_id: str) -> CreateOrder | Ignore | None:
        """Read one order from the channel's API, as a :class:`orderhooks.CreateOrder` to
        import it, or an :class:`orderhooks.Ignore` saying why it cannot be (the API does not
        know it: 404; an incomplete order...). The worker calls it for a cancellation,
        fulfilment or payment of an order it does not know, on a channel with order creation
        on. None: the channel has no API to read orders from (the intent waits for the order,
        as without order creation). Raise RetryLater / ChannelAPIError as ``translate`` does."""
        return None

    def list_subscriptions(self, channel: Channel) -> list[RemoteSubscription]:
        """The subscriptions that exist on the channel for this service."""
        return []

    def create_subscription(self, channel: Channel, spec: SubscriptionSpec) -> RemoteSubscription:
        raise NotImplementedError

    def activate_subscription(self, channel: Channel,
                              remote: RemoteSubscription) -> RemoteSubscription:
        """Re-activate an inactive subscription, or repair one with a ``mismatch`` (e.g. put the
        channel's current secret back on it); channels that have no such notion re-create it.
        Returns the subscription as it is now."""
        raise NotImplementedError

    def delete_subscription(self, channel: Channel, remote: RemoteSubscription) -> None:
        raise NotImplementedError
