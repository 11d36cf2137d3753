"""BigCommerce: thin deliveries, so the order's current state is read from the API.

Status rule (documented in README and docs/plugins.md):

* 5 Cancelled → Cancel.
* 2 Shipped, 10 Completed → Fulfill with the order's shipments.
* 3 Partially Shipped → the shipments are recorded (Fulfill ``complete=False``, the order keeps its
  status) unless every item has shipped (``items_shipped >= items_total``), which counts as
  fulfilled.
* Any other status → ignored, with the status named.
* ``store/order/created`` (order creation on) → CreateOrder from the order, its products and
  shipping addresses (three calls); status 0 (Incomplete) is not imported until its
  statusUpdated out of 0 (then imported the same way); 5 is imported and then cancelled.
* ``statusUpdated`` out of Awaiting Payment (7) into a paid status (order payment on) →
  RecordPayment as well.
* A cancellation, fulfilment or payment of an order the service does not know yet (order
  creation on): the worker imports it first (``read_order``) from the order read to translate
  the delivery, so a new order costs three calls however it arrives (a shipped one adds its
  shipments). The three are held in the store's rate-limit window before the order is read
  (``client.StorePacer.reserve``): when they do not fit, the delivery waits for the next
  window without a call, so the window never cuts an import after its read.

The current state is trusted over the payload's ``new_status_id``: retries arrive late and out of
order, so a stale "cancelled" for an order that was re-opened must not cancel it.

Products (docs/products.md): ``store/product/created`` and ``updated`` (and ``store/sku/*``, which
name their product) carry only the id, so the product is read —
``GET /v3/catalog/products/{id}?include=variants`` — and becomes UpsertProduct with its
``date_modified``; a 404 means it is gone: DeleteProduct at the time of the read.
``store/product/deleted`` → DeleteProduct at the delivery's ``created_at``. Like orders, the
deliveries of one batch for the same product cost one read.

This module is the adapter (intake, coalescing, subscriptions); ``reads.py`` holds the kinds of
read and what each answer means.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from urllib.parse import urlparse

from marshmallow import Schema, fields, validate

from orderhooks import (AuthenticationError, Channel, ChannelAdapter, Delivery, DeliveryInfo,
                        Ignore, RemoteSubscription, SubscriptionSpec, hookimpl)

from . import client as api
from .client import BigCommerceClient
from .reads import (CREATED_SCOPE, IMPORT_CALLS, ORDER_SCOPE, READ_KINDS, REFUND_SCOPE, Batch,
                    RecentOrders, delivery_time, import_intents, missing_order, parse_payload,
                    read_group, unread)

#: The header the service puts in every hook it creates, carrying the channel's secret.
SECRET_HEADER = "X-Orderhooks-Secret"
#: Each webhook a merchant may tick (core.webhooks names) and the scopes that carry it.
#: BigCommerce has no paid scope: a payment is a status change out of Awaiting Payment (7).
#: Refunds have one scope for POS and online; a product edit may come as a product or a SKU.
WEBHOOK_SCOPES = {
    "order_creation": (CREATED_SCOPE,),
    "order_payment": (ORDER_SCOPE,),
    "cancellation": (ORDER_SCOPE,),
    "fulfillment": (ORDER_SCOPE,),
    "refund_pos": (REFUND_SCOPE,),
    "refund_ecommerce": (REFUND_SCOPE,),
    "product_update": ("store/product/created", "store/product/updated",
                       "store/sku/updated"),
    "product_deletion": ("store/product/deleted",),
}
#: The webhooks translated today (and so subscribed).
TRANSLATED_WEBHOOKS = frozenset({"order_creation", "order_payment", "cancellation",
                                 "fulfillment", "product_update", "product_deletion",
                                 "refund_pos", "refund_ecommerce"})


class CredentialsSchema(Schema):
    store_hash = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9]{1,64}$", error="a BigCommerce store hash is letters and digits"))
    access_token = fields.String(required=True, validate=validate.Length(min=1, max=512))
    client_secret = fields.String(validate=validate.Length(min=1, max=512))
    api_base_url = fields.Url(require_tld=False, schemes={"http", "https"})


class BigCommerceAdapter(ChannelAdapter):
    type = "bigcommerce"
    title = "BigCommerce"
    credentials_schema = CredentialsSchema
    stored_headers = ("webhook-signature",)
    destination_credentials = ("api_base_url", "store_hash")
    sent_credentials = ("access_token",)
    webhook_topics = WEBHOOK_SCOPES
    translated_webhooks = TRANSLATED_WEBHOOKS

    #: Orders of one batch read at once (each a call or two, waiting on the network): the
    #: store's pacer still sees every response, and keeps ``client.RESERVE`` calls in hand for
    #: those in flight.
    concurrency = 4

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._pool: ThreadPoolExecutor | None = None
        self._clients: OrderedDict[tuple, BigCommerceClient] = OrderedDict()
        self._clients_lock = threading.Lock()
        self.recent_orders = RecentOrders()

    #: Stores whose API client (and its kept-alive HTTPS connections) is kept between batches.
    kept_clients = 256

    def client(self, channel: Channel) -> BigCommerceClient:
        """The store's API client, kept between batches so its connections are reused (a TLS
        handshake per batch otherwise); a change of credentials or timeout makes a new one."""
        key = (channel.id, self.timeout, tuple(self.allowed_api_base_urls.allowed), tuple(sorted(
            (k, str(v)) for k, v in channel.credentials.items())))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._clients[key] = BigCommerceClient(
                dict(channel.credentials), timeout=self.timeout,
                allowed=self.allowed_api_base_urls)
            # The channel's older clients (edited credentials), then the least recently used.
            dropped = [self._clients.pop(k) for k in list(self._clients)
                       if k[0] == channel.id and k != key]
            while len(self._clients) > self.kept_clients:
                dropped.append(self._clients.popitem(last=False)[1])
        for old in dropped:
            old.http.session.close()
        return client

    def api_base_url(self, credentials) -> str:
        return api.api_base_url(credentials)

    def own_api_base_urls(self, credentials) -> tuple[str, ...]:
        return (api.DEFAULT_API_BASE_URL,)

    # -- intake -----------------------------------------------------------------------------

    def check_destination(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "https" or parsed.port not in (None, 443):
            raise ValueError(f"BigCommerce delivers only to https on port 443, not to {url}")

    def authenticate(self, delivery: Delivery, channel: Channel) -> None:
        given = delivery.headers.get(SECRET_HEADER)
        if not given or not hmac.compare_digest(given.encode(), channel.webhook_secret.encode()):
            raise AuthenticationError(f"missing or wrong {SECRET_HEADER} header")
        # A channel that has the app's client secret can check Standard Webhooks signatures,
        # so it requires one on every delivery: were an unsigned delivery let through, leaving
        # the signature out would skip its timestamp check, and a capture of any age would pass.
        client_secret = channel.credentials.get("client_secret")
        if client_secret:
            verify_standard_webhook(delivery, client_secret)

    def inspect(self, delivery: Delivery, channel: Channel) -> DeliveryInfo:
        payload = parse_payload(delivery)
        scope = payload["scope"]
        data = payload.get("data") or {}
        order_id = data.get("orderId") if data.get("type") == "shipment" else data.get("id")
        if scope.startswith(("store/product/", "store/sku/")):
            order_id = None  # a product's id, not an order's
        digest = payload.get("hash") or hashlib.sha1(delivery.body).hexdigest()
        webhook_id = delivery.headers.get("webhook-id")
        created = payload.get("created_at")
        return DeliveryInfo(
            key=f"{scope}:{digest}" if payload.get("hash") or not webhook_id
            else f"webhook-id:{webhook_id}",
            topic=scope, channel_order_id=str(order_id) if order_id is not None else None,
            occurred_at=delivery_time(created))

    # -- worker -----------------------------------------------------------------------------

    def translate(self, delivery: Delivery, channel: Channel):
        result = self.translate_many([delivery], channel)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def translate_many(self, deliveries: list[Delivery], channel: Channel):
        """Coalesce: the deliveries of a batch that name the same object — an order (status
        updated, shipment created, order created...), a product, an order's refunds — cost one
        read of it, not one per delivery: they all get its current state anyway. Each kind of
        read (``reads.READ_KINDS``) says how a delivery names its object, how it is read and
        what the answer means; different objects are read at once (``concurrency``)."""
        batch = Batch(self.client(channel), channel, self.recent_orders)
        # What the channel's last batch kept for its imports is spent or no longer wanted.
        self.recent_orders.drop(channel.id)
        results: list = [None] * len(deliveries)
        #: (kind, object id) -> the (index, (scope, data)) of each delivery that needs it read
        groups: dict[tuple, list[tuple[int, tuple[str, dict]]]] = {}
        for index, delivery in enumerate(deliveries):
            try:
                payload = parse_payload(delivery)
                scope, data = payload["scope"], payload.get("data") or {}
                kind = next((k for k in READ_KINDS if k.takes(scope)), None)
                key = unread(scope) if kind is None else kind.key(scope, data, payload, channel)
                if isinstance(key, str):
                    groups.setdefault((kind, key), []).append((index, (scope, data)))
                else:
                    results[index] = key
            except Exception as exc:  # noqa: BLE001
                results[index] = exc

        def read(key: tuple):
            kind, object_id = key
            return read_group(batch, kind, object_id, [item for _, item in groups[key]],
                              new=any(deliveries[index].order_known is not True
                                      for index, _ in groups[key]))

        keys = list(groups)
        if len(keys) > 1 and self.concurrency > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency,
                                                thread_name_prefix="bigcommerce-read")
            outcomes = list(self._pool.map(read, keys))
        else:
            outcomes = [read(key) for key in keys]
        for key, outcome in zip(keys, outcomes):
            for position, (index, _) in enumerate(groups[key]):
                results[index] = outcome if isinstance(outcome, Exception) else outcome[position]
        return results

    # -- subscriptions ----------------------------------------------------------------------

    def list_subscriptions(self, channel: Channel) -> list[RemoteSubscription]:
        return [_remote(h, channel) for h in self.client(channel).hooks()]

    def create_subscription(self, channel: Channel, spec: SubscriptionSpec) -> RemoteSubscription:
        hook = self.client(channel).create_hook({
            "scope": spec.topic, "destination": spec.destination, "is_active": True,
            "headers": {SECRET_HEADER: channel.webhook_secret}})
        return _remote(hook, channel)

    def activate_subscription(self, channel: Channel,
                              remote: RemoteSubscription) -> RemoteSubscription:
        """Also the repair of a hook whose secret header is stale: the update puts the channel's
        current secret on it."""
        hook = self.client(channel).update_hook(remote.remote_id, {
            "is_active": True, "headers": {SECRET_HEADER: channel.webhook_secret}})
        return _remote(hook, channel)

    def delete_subscription(self, channel: Channel, remote: RemoteSubscription) -> None:
        self.client(channel).delete_hook(remote.remote_id)

    def read_order(self, channel: Channel, channel_order_id: str):
        """The order, its products and shipping addresses (three calls, held together in the
        store's window, paced per store like every read), as a CreateOrder; an Ignore when
        BigCommerce does not know it (404) or it is incomplete. The order read while translating
        the delivery that named it is used again (``reads.RecentOrders``), with the two calls
        held for the rest: the products and addresses are then the only calls."""
        if not api.is_order_id(str(channel_order_id)):
            return Ignore(f"order {channel_order_id!r} is not a BigCommerce order id")
        client = self.client(channel)
        kept = self.recent_orders.take(channel.id, str(channel_order_id))
        if kept is None:
            hold = client.reserve(IMPORT_CALLS)  # the three calls fit in the window, or none
            order = None
        else:
            order, hold = kept
            hold = hold or client.reserve(IMPORT_CALLS - 1)
        with hold:
            if order is None:
                order = client.order(channel_order_id, hold)
            if missing_order(order, channel_order_id):
                return Ignore(f"order {channel_order_id} could not be imported: GET "
                              f"/v2/orders/{channel_order_id} answered 404 (or the order is "
                              "deleted)")
            return import_intents(client, channel_order_id, order, hold)[0]



def _remote(hook: dict, channel: Channel) -> RemoteSubscription:
    return RemoteSubscription(remote_id=str(hook.get("id")), topic=hook.get("scope", ""),
                              destination=hook.get("destination", ""),
                              active=bool(hook.get("is_active", True)),
                              mismatch=_secret_mismatch(hook, channel))


def _secret_mismatch(hook: dict, channel: Channel) -> str | None:
    """Whether the hook's deliveries would pass :meth:`BigCommerceAdapter.authenticate`: its
    secret header must be the channel's current secret (a restored database, or a channel that
    adopted an old hook, leaves another one there). Compared in constant time; never quoted."""
    headers = hook.get("headers")
    given = next((v for k, v in headers.items() if str(k).lower() == SECRET_HEADER.lower()),
                 None) if isinstance(headers, dict) else None
    if not isinstance(given, str) or not given:
        return f"the hook has no {SECRET_HEADER} header: every delivery would be refused"
    if not hmac.compare_digest(given.encode("utf-8", "replace"), channel.webhook_secret.encode()):
        return (f"the hook's {SECRET_HEADER} header is not the channel's current secret: every "
                "delivery would be refused")
    return None



def verify_standard_webhook(delivery: Delivery, client_secret: str) -> None:
    """Standard Webhooks signature, keyed with base64 of the app's client secret: the
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers are all required, the
    timestamp within the library's tolerance (5 minutes) and the signature over the raw body."""
    headers = {name: delivery.headers.get(name) or "" for name in STANDARD_HEADERS}
    missing = [name for name, value in headers.items() if not value.strip()]
    if missing:
        raise AuthenticationError(
            "this channel verifies Standard Webhooks signatures (it has the app's client "
            f"secret): the {', '.join(missing)} header{'s' if len(missing) > 1 else ''} "
            f"{'are' if len(missing) > 1 else 'is'} missing")
    try:
        _verifier(client_secret).verify(delivery.body, headers, json_parse=False)
    except Exception as exc:  # noqa: BLE001 — the verifier raises several types on garbage
        raise AuthenticationError(f"Standard Webhooks signature rejected: {exc}") from exc


#: The headers of a Standard Webhooks delivery, all required to verify it.
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@lru_cache(maxsize=256)
def _verifier(client_secret: str):
    """The library's verifier for one client secret (kept: it decodes the key once)."""
    from standardwebhooks.webhooks import Webhook
    return Webhook(base64.b64encode(client_secret.encode()).decode())


@hookimpl
def register_channels(register):
    register(BigCommerceAdapter())
