"""The adapter contract: a test class every channel adapter runs against itself, through the
real app (see :class:`AdapterContract`)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from core.outcomes import DeliveryState, Outcome

from .fixtures import channel_view, delivery_count, webhook_path
from .fuzz import garbage_bodies, garbage_headers, garble

#: Every intent a ``translate`` may yield.
INTENT_TYPES = ("Cancel", "Fulfill", "CreateOrder", "RecordPayment", "RecordRefund",
                "DeactivateChannel", "RedactPersonalData", "Ignore", "UpsertProduct",
                "DeleteProduct")


class AdapterContract:
    """The contract every channel adapter keeps, checked through the real app.

    Subclass it in your adapter's test module (the class name must start with ``Test``) and
    provide the fixtures below; every ``test_*`` method then runs against your adapter::

        pytest_plugins = ["orderhooks.testing"]    # in conftest.py

        class TestManualContract(AdapterContract):
            channel_type = "manual"

            @pytest.fixture
            def channel_credentials(self):
                return {"signing_secret": SECRET}

            @pytest.fixture
            def valid_delivery(self):
                def build(channel):
                    body = json_body({"type": "order.cancelled", "order_id": "1"})
                    return body, {"Content-Type": "application/json",
                                  **standard_webhooks_headers(SECRET, body)}
                return build

    Required: ``channel_type`` and the fixtures ``channel_credentials`` (a dict the adapter's
    ``credentials_schema`` accepts) and ``valid_delivery`` (a function ``channel -> (body,
    headers)`` returning a correctly signed delivery for that :class:`core.adapters.Channel`).

    Optional: ``sign`` (a function ``(channel, body) -> headers`` that signs any body: the
    garbage checks then also send *authentic* garbage, which reaches ``inspect``),
    ``mock_channel_api`` (stands in for the channel's API while the contract's channel is created
    — subscriptions — and while ``translate`` runs), ``plugin_name`` (the entry point or
    ``PLUGINS`` name expected to provide the type), ``signs_body = False`` for channels whose
    authentication does not cover the body (a static secret header), the statuses selected on
    the contract's channel, ``garbage_rounds`` and ``garbage_seed``.
    """

    channel_type: str = ""
    plugin_name: str | None = None
    signs_body: bool = True
    cancellation_statuses: tuple[str, ...] = ("AWAITING_SHIPMENT",)
    fulfillment_statuses: tuple[str, ...] = ("AWAITING_SHIPMENT",)
    garbage_rounds: int = 40
    garbage_seed: int = 20240611

    # -- fixtures a subclass provides ----------------------------------------------------------

    @pytest.fixture
    def channel_credentials(self) -> dict:
        pytest.fail(f"{type(self).__name__} must provide the 'channel_credentials' fixture")

    @pytest.fixture
    def valid_delivery(self):
        pytest.fail(f"{type(self).__name__} must provide the 'valid_delivery' fixture: "
                    "a function channel -> (body: bytes, headers: dict)")

    @pytest.fixture
    def sign(self):
        return None

    @pytest.fixture
    def product_delivery(self):
        """Optional: a function channel -> (body, headers) for a delivery that creates or
        updates a product (its channel API, if read, stood in by ``mock_channel_api``)."""
        return None

    @pytest.fixture
    def mock_channel_api(self):
        return None

    @pytest.fixture
    def order_delivery(self):
        """Optional: a function channel -> (body, headers) of a delivery that creates an order
        on a channel with order creation on (with ``mock_channel_api`` answering what it
        reads). None: the channel does not import orders, and the order-creation checks are
        skipped."""
        return None

    # -- fixtures the contract builds ----------------------------------------------------------

    @pytest.fixture
    def adapter(self, app):
        """The adapter the app loaded for ``channel_type``."""
        if not self.channel_type:
            pytest.fail(f"{type(self).__name__} must set channel_type")
        adapter = app.extensions["orderhooks.channel_types"].get(self.channel_type)
        if adapter is None:
            plugins = [p.to_dict() for p in app.extensions["orderhooks.channel_types"].plugins]
            pytest.fail(f"no plugin provides channel type {self.channel_type!r}; "
                        f"plugins: {plugins}")
        return adapter

    @pytest.fixture
    def contract_channel(self, app, make_channel, channel_credentials, mock_channel_api):
        """A channel of the type, created through the admin API, as the adapter sees it."""
        created = make_channel(self.channel_type, dict(channel_credentials),
                               cancel=self.cancellation_statuses,
                               fulfill=self.fulfillment_statuses)
        return channel_view(app, created["id"])

    def _send(self, client, channel, body, headers):
        return client.post(webhook_path(channel), data=body, headers=dict(headers))

    def _processed(self, client, admin, worker, channel, body, headers) -> dict:
        """Deliver, let the worker process everything due, and read the delivery back."""
        response = self._send(client, channel, body, headers)
        assert response.status_code == 200, response.get_json()
        worker.run_until_idle()
        return admin.get(f"/deliveries/{response.get_json()['delivery_id']}")

    @staticmethod
    def _incoming(body: bytes, headers: dict):
        from core.adapters import Delivery, Headers
        return Delivery(body=body, headers=Headers(headers), received_at=datetime.now(timezone.utc))

    # -- the contract --------------------------------------------------------------------------

    def test_type_name_is_valid_and_registered(self, app, adapter):
        from core.adapters import ChannelAdapter
        from core.plugins import ENTRY_POINT_GROUP, TYPE_NAME
        from importlib import metadata
        assert isinstance(adapter, ChannelAdapter)
        assert adapter.type == self.channel_type
        assert TYPE_NAME.fullmatch(adapter.type), adapter.type
        assert isinstance(adapter.title, str) and adapter.title.strip(), "give the adapter a title"
        assert all(h == h.lower() for h in adapter.stored_headers)
        providers = [p for p in app.extensions["orderhooks.channel_types"].plugins
                     if adapter.type in p.channel_types]
        assert len(providers) == 1, providers
        provider = providers[0]
        assert provider.status == "loaded" and provider.error is None
        names = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        names |= {name for name, _ in app.config.get("PLUGINS", ())}
        assert provider.name in names, f"{provider.name} is neither an entry point nor in PLUGINS"
        if self.plugin_name is not None:
            assert provider.name == self.plugin_name

    def test_unknown_channel_is_404(self, client, contract_channel, valid_delivery):
        body, headers = valid_delivery(contract_channel)
        response = client.post(f"/webhooks/{self.channel_type}/{contract_channel.id + 1000}",
                               data=body, headers=headers)
        assert response.status_code == 404
        assert response.get_json()["error"] == "unknown_channel"

    def test_valid_delivery_is_accepted_and_stored(self, app, client, adapter, contract_channel,
                                                   valid_delivery):
        body, headers = valid_delivery(contract_channel)
        assert isinstance(body, bytes) and isinstance(headers, dict)
        response = self._send(client, contract_channel, body, headers)
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["status"] == "accepted" and isinstance(answer["delivery_id"], int)
        assert delivery_count(app, contract_channel.id) == 1
        from core.models import StoredDelivery
        with app.extensions["orderhooks.db"].Session() as session:
            row = session.get(StoredDelivery, answer["delivery_id"])
            assert bytes(row.body) == body, "the raw body is stored as received"
            info = adapter.inspect(self._incoming(body, headers), contract_channel)
            assert row.dedupe_key == info.key[:255]

    def test_same_delivery_twice_is_stored_once(self, app, client, contract_channel,
                                                valid_delivery):
        body, headers = valid_delivery(contract_channel)
        first = self._send(client, contract_channel, body, headers)
        second = self._send(client, contract_channel, body, headers)
        assert first.status_code == second.status_code == 200, second.get_json()
        assert second.get_json() == {"status": "duplicate",
                                     "delivery_id": first.get_json()["delivery_id"]}
        assert delivery_count(app, contract_channel.id) == 1

    def test_missing_authentication_is_401(self, app, client, contract_channel, valid_delivery):
        body, headers = valid_delivery(contract_channel)
        bare = {k: v for k, v in headers.items() if k.lower() == "content-type"}
        response = self._send(client, contract_channel, body, bare)
        assert response.status_code == 401
        assert response.is_json and response.get_json()["error"] == "unauthenticated"
        assert delivery_count(app) == 0

    def test_garbled_authentication_is_401(self, app, client, contract_channel, valid_delivery):
        body, headers = valid_delivery(contract_channel)
        auth = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        assert auth, "valid_delivery returns no authentication headers"
        everything = {k: (v if k.lower() == "content-type" else garble(v))
                      for k, v in headers.items()}
        response = self._send(client, contract_channel, body, everything)
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["error"] == "unauthenticated"
        assert delivery_count(app) == 0
        refused = []
        for name in auth:
            for value in (garble(headers[name]), ""):
                before = delivery_count(app)
                response = self._send(client, contract_channel, body, {**headers, name: value})
                assert response.status_code in (200, 400, 401), (name, response.status_code)
                assert response.is_json
                if response.status_code == 401:
                    refused.append(name)
                    assert delivery_count(app) == before, f"stored despite a 401 ({name})"
        assert refused, "no single garbled header was refused: what authenticates a delivery?"

    def test_changed_body_is_401(self, app, client, contract_channel, valid_delivery):
        if not self.signs_body:
            pytest.skip(f"{self.channel_type} authentication does not cover the body")
        import json
        body, headers = valid_delivery(contract_channel)
        changed = [body + b" ", body.replace(b"1", b"2", 1) if b"1" in body else body + b"\n"]
        try:
            reserialised = json.dumps(json.loads(body), indent=1).encode()
            if reserialised != body:
                changed.append(reserialised)
        except ValueError:
            pass
        for other in changed:
            response = self._send(client, contract_channel, other, headers)
            assert response.status_code == 401, (other[:80], response.get_json())
        assert delivery_count(app) == 0

    def test_garbage_never_5xx(self, app, client, contract_channel, valid_delivery, sign):
        body, headers = valid_delivery(contract_channel)
        failures = []

        def check(what, b, h):
            response = self._send(client, contract_channel, b, h)
            if response.status_code >= 500 or not response.is_json:
                failures.append((what, response.status_code, b[:80], h))

        for index, garbage in enumerate(garbage_bodies(body, self.garbage_seed,
                                                       self.garbage_rounds)):
            check(f"body {index} with the valid headers", garbage, headers)
            check(f"body {index} without headers", garbage, {})
            if sign is not None:
                signed = {"Content-Type": "application/json",
                          **sign(contract_channel, garbage)}
                check(f"body {index}, signed", garbage, signed)
        for index, garbage in enumerate(garbage_headers(headers, self.garbage_seed,
                                                         self.garbage_rounds)):
            check(f"headers {index}", body, garbage)
        assert not failures, failures[:5]

    def test_inspect_is_deterministic(self, adapter, contract_channel, valid_delivery):
        from core.adapters import DeliveryInfo
        body, headers = valid_delivery(contract_channel)
        first = adapter.inspect(self._incoming(body, headers), contract_channel)
        second = adapter.inspect(self._incoming(body, headers), contract_channel)
        assert isinstance(first, DeliveryInfo)
        assert isinstance(first.key, str) and first.key, "the de-duplication key is empty"
        assert len(first.key) <= 255
        assert first == second
        assert first.channel_order_id is None or isinstance(first.channel_order_id, str)

    def test_no_subscriptions_without_selected_statuses(self, adapter, contract_channel):
        import dataclasses
        nothing = dataclasses.replace(contract_channel, valid_cancellation_statuses=(),
                                      valid_fulfillment_statuses=())
        assert list(adapter.desired_subscriptions(nothing)) == []

    def test_subscriptions_deliver_to_the_channels_webhook_url(self, adapter, contract_channel):
        import dataclasses
        from core.adapters import SubscriptionSpec
        for cancel, fulfill in ((("AWAITING_SHIPMENT",), ()), ((), ("AWAITING_SHIPMENT",)),
                                (("AWAITING_SHIPMENT",), ("AWAITING_SHIPMENT",))):
            channel = dataclasses.replace(contract_channel, valid_cancellation_statuses=cancel,
                                          valid_fulfillment_statuses=fulfill)
            specs = list(adapter.desired_subscriptions(channel))
            assert all(isinstance(s, SubscriptionSpec) for s in specs), specs
            assert all(s.destination == channel.webhook_url for s in specs), specs
            assert all(isinstance(s.topic, str) and s.topic for s in specs), specs
            topics = [s.topic for s in specs]
            assert len(topics) == len(set(topics)), f"a topic is wanted twice: {topics}"

    def test_webhook_names_are_the_cores(self, adapter, contract_channel):
        import dataclasses
        from core.webhooks import WEBHOOKS
        unknown = set(adapter.webhook_topics) - set(WEBHOOKS)
        assert not unknown, f"webhook_topics names {unknown}; the names are {list(WEBHOOKS)}"
        for name, topics in adapter.webhook_topics.items():
            assert isinstance(topics, tuple) and all(isinstance(t, str) and t for t in topics), (
                name, topics)
        nothing = dataclasses.replace(contract_channel, webhooks=())
        assert list(adapter.desired_subscriptions(nothing)) == [], (
            "a channel that ticks no webhook needs no subscription")

    def test_order_creation_imports_one_order(self, app, client, admin, worker, adapter,
                                              contract_channel, order_delivery,
                                              mock_channel_api):
        from decimal import Decimal
        from core import webhooks
        from core.intents import CreateOrder
        if order_delivery is None:
            pytest.skip(f"{self.channel_type} does not import orders (no order_delivery)")
        offered = [n for n in (webhooks.ORDER_CREATION, webhooks.ORDER_PAYMENT,
                               webhooks.CANCELLATION, webhooks.FULFILLMENT)
                   if not adapter.webhook_topics or n in adapter.webhook_topics]
        assert webhooks.ORDER_CREATION in offered, "offer order_creation in webhook_topics"
        admin.patch(f"/channels/{contract_channel.id}", {"webhooks": offered})
        channel = channel_view(app, contract_channel.id)
        body, headers = order_delivery(channel)
        produced = list(adapter.translate(self._incoming(body, headers), channel))
        creations = [i for i in produced if isinstance(i, CreateOrder)]
        assert len(creations) == 1, f"an order delivery gives one CreateOrder: {produced}"
        order = creations[0]
        for amount in [*order.totals.values(), *(line.unit_price for line in order.lines)]:
            assert amount is None or (isinstance(amount, str) and Decimal(amount).is_finite())
        for line in order.lines:
            for value in (line.channel_line_id, line.product_id, line.variant_id):
                assert value is None or isinstance(value, str), "ids are text, never numbers"
        response = self._send(client, channel, body, headers)
        assert response.status_code == 200, response.get_json()
        worker.run_until_idle()
        found = admin.get(f"/orders?channel_id={channel.id}"
                          f"&channel_order_id={order.channel_order_id}")
        assert len(found) == 1, found
        assert found[0]["status"] in ("AWAITING_PAYMENT", "UNPROCESSED", "CANCELLED")
        detail = admin.get(f"/orders/{found[0]['id']}")
        assert len(detail["lines"]) == len(order.lines)
        # the same order again (translated afresh, as a replay would): still one order
        delivery_id = response.get_json()["delivery_id"]
        admin.post(f"/deliveries/{delivery_id}/replay", expect=202)
        worker.run_until_idle()
        assert len(admin.get(f"/orders?channel_id={channel.id}")) == 1

    def test_credentials_schema_refuses_bad_credentials(self, admin, adapter,
                                                        channel_credentials):
        assert adapter.credentials_schema is not None, (
            "declare a credentials_schema: the admin API then refuses bad credentials")
        for credentials in ({}, {**channel_credentials, "not_a_credential_field": "x"}):
            response = admin.request("POST", "/channels", json={
                "type": self.channel_type, "name": "contract", "credentials": credentials,
                "valid_cancellation_statuses": [], "valid_fulfillment_statuses": []})
            assert response.status_code == 422, (credentials, response.get_json())
            answer = response.get_json()
            assert answer["error"] and answer["message"]
        assert admin.get("/channels") == []

    def test_translate_returns_only_intents(self, adapter, contract_channel, valid_delivery,
                                            mock_channel_api):
        from core import intents as intent_module
        from core.intents import (Fulfill, ProductVariant, RecordRefund, RefundLine, Shipment,
                                  UpsertProduct)
        body, headers = valid_delivery(contract_channel)
        result = adapter.translate(self._incoming(body, headers), contract_channel)
        assert result is not None, "translate returns an iterable of intents (maybe empty)"
        produced = list(result)
        kinds = tuple(getattr(intent_module, name) for name in INTENT_TYPES)
        for intent in produced:
            assert isinstance(intent, kinds), f"{intent!r} is not a core.intents intent"
            if hasattr(intent, "channel_order_id"):
                assert isinstance(intent.channel_order_id, str) and intent.channel_order_id
            if isinstance(intent, Fulfill):
                assert isinstance(intent.shipments, tuple)
                assert all(isinstance(s, Shipment) for s in intent.shipments)
            if isinstance(intent, UpsertProduct):
                assert isinstance(intent.variants, tuple)
                assert all(isinstance(v, ProductVariant) for v in intent.variants)
            elif isinstance(intent, RecordRefund):
                assert isinstance(intent.channel_refund_id, str) and intent.channel_refund_id
                assert all(isinstance(line, RefundLine) for line in intent.lines)
        # the worker calls translate_many: one result (a list of intents) per delivery, in order
        batch = [self._incoming(body, headers), self._incoming(body, headers)]
        results = adapter.translate_many(batch, contract_channel)
        assert isinstance(results, list) and len(results) == len(batch), results
        for result in results:
            assert isinstance(result, list), f"translate_many gave {result!r} for a valid delivery"
            assert all(isinstance(intent, kinds) for intent in result), result

    def test_worker_processes_a_valid_delivery(self, app, client, admin, worker,
                                               contract_channel, valid_delivery,
                                               mock_channel_api):
        delivery = self._processed(client, admin, worker, contract_channel,
                                   *valid_delivery(contract_channel))
        assert delivery["state"] == DeliveryState.DONE, delivery
        assert delivery["outcome"] in (Outcome.APPLIED, Outcome.IGNORED,
                                       Outcome.DEFERRED), delivery

    def test_a_product_delivery_reaches_the_catalog(self, adapter, client, admin, worker,
                                                    contract_channel, product_delivery,
                                                    mock_channel_api):
        """With ``product_delivery``: it is stored, translated into UpsertProduct (with
        ProductVariant tuples) and applied, and the product is listed for the channel."""
        if product_delivery is None:
            pytest.skip("the plugin gives no product_delivery")
        from core.intents import ProductVariant, UpsertProduct
        body, headers = product_delivery(contract_channel)
        intents = list(adapter.translate(self._incoming(body, headers), contract_channel))
        assert [type(i) for i in intents] == [UpsertProduct], intents
        assert isinstance(intents[0].variants, tuple)
        assert all(isinstance(v, ProductVariant) for v in intents[0].variants)
        delivery = self._processed(client, admin, worker, contract_channel, body, headers)
        assert delivery["outcome"] == Outcome.APPLIED, delivery
        assert [i["kind"] for i in delivery["intents"]] == ["UpsertProduct"], delivery
        listed = admin.get("/products", query_string={"channel_id": contract_channel.id})
        assert [p["channel_product_id"] for p in listed] == [
            delivery["intents"][0]["product_id"]], listed
