"""pytest plugin for orderhooks and for channel plugin authors.

Enable it in your ``conftest.py``::

    pytest_plugins = ["core.testing"]

It gives: ``app`` (a fresh app on a fresh database: SQLite by default,
``ORDERHOOKS_TEST_DATABASE_URL`` for another), ``client``, ``admin`` (an admin API client that
sends the bearer token), ``worker`` (runs the worker in-process until idle), ``make_channel``,
``make_order``, ``deliver`` (posts a delivery to a channel's intake), and
:class:`AdapterContract`, a contract test any channel adapter runs against itself.

Builders for signed deliveries: :func:`json_body`, :func:`hmac_signature` (HMAC of the raw body,
base64 or hex), :class:`StandardWebhooksSigner` / :func:`standard_webhooks_headers` and
:func:`new_standard_webhooks_secret` (the ``standardwebhooks`` library). Helpers:
:func:`channel_view` (the decrypted channel a plugin sees), :func:`delivery_count`,
:func:`webhook_path`, :func:`utc`. See ``docs/plugins.md``.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

ADMIN_TOKEN = "test-admin-token"
#: A fixed Fernet key, for tests only (real keys come from ``orderhooks secrets generate-key``).
SECRET_KEY = "MqDvFf3M93ioP7o64p_e_cqu8Hjx9u3rtM1YZRK1Q1A="
PUBLIC_BASE_URL = "https://orderhooks.example.com"


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres_only: runs only against PostgreSQL")


def test_database_url() -> str | None:
    return os.environ.get("ORDERHOOKS_TEST_DATABASE_URL") or None


test_database_url.__test__ = False  # not a test


@pytest.fixture(scope="session")
def _schema(tmp_path_factory):
    """Migrate a database once per session: a template SQLite file, or the PostgreSQL schema
    dropped and re-created."""
    from .db import Database
    url = test_database_url()
    if url is None:
        template = tmp_path_factory.mktemp("db") / "template.db"
        db = Database(f"sqlite:///{template}")
        db.upgrade()
        db.dispose()
        return {"kind": "sqlite", "template": template}
    db = Database(url)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            raise pytest.UsageError("ORDERHOOKS_TEST_DATABASE_URL is for server databases")
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    db.dispose()
    return {"kind": "server", "url": url}


@pytest.fixture
def database_url(_schema, tmp_path) -> str:
    """A migrated, empty database for this test."""
    if _schema["kind"] == "sqlite":
        path = tmp_path / "orderhooks.db"
        shutil.copy(_schema["template"], path)
        return f"sqlite:///{path}"
    from .db import Database
    from .models import Base
    db = Database(_schema["url"])
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose()
    return _schema["url"]


@pytest.fixture
def app_config(database_url) -> dict:
    """Override to change settings; ``PLUGINS`` adds ``(name, plugin)`` pairs."""
    return {"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "SECRET_KEY": SECRET_KEY,
            "CHANNEL_CACHE_SECONDS": 0, "TESTING": True, "RETRY_BASE_SECONDS": 10.0,
            "LOG_LEVEL": "WARNING"}


@pytest.fixture
def app(app_config):
    from . import create_app
    app = create_app(app_config)
    yield app
    app.extensions["orderhooks.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class AdminClient:
    """The admin API with the bearer token; methods return the parsed JSON and check status."""

    def __init__(self, client):
        self.client = client
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def request(self, method: str, path: str, expect: int | None = None, **kwargs):
        response = self.client.open(f"/api/v1{path}", method=method, headers=self.headers,
                                    **kwargs)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.get_json())
        return response

    def get(self, path, expect=200, **kw):
        return self.request("GET", path, expect, **kw).get_json()

    def post(self, path, json=None, expect=201, **kw):
        return self.request("POST", path, expect, json=json, **kw).get_json()

    def patch(self, path, json=None, expect=200, **kw):
        return self.request("PATCH", path, expect, json=json, **kw).get_json()


@pytest.fixture
def admin(client) -> AdminClient:
    return AdminClient(client)


@pytest.fixture
def worker(app):
    """The worker, in-process: ``worker.run_until_idle()`` processes everything due."""
    from .worker import Worker
    return Worker(app, name="test-worker")


@pytest.fixture
def make_channel(admin):
    def make(type: str, credentials: dict, *, cancel=("AWAITING_SHIPMENT",),
             fulfill=("AWAITING_SHIPMENT",), name=None, expect=201) -> dict:
        return admin.post("/channels", {
            "type": type, "name": name or f"{type} test store", "credentials": credentials,
            "valid_cancellation_statuses": list(cancel),
            "valid_fulfillment_statuses": list(fulfill)}, expect=expect)
    return make


@pytest.fixture
def make_order(admin):
    def make(channel_id: int, channel_order_id, status="AWAITING_SHIPMENT", **extra) -> dict:
        return admin.post("/orders", {"channel_id": channel_id,
                                      "channel_order_id": str(channel_order_id),
                                      "status": status, **extra})
    return make


def channel_view(app, channel_id: int):
    """The decrypted :class:`core.channels.Channel` for ``channel_id`` (e.g. its secret)."""
    from .models import SalesChannel
    from .saleschannels import view
    with app.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, channel_id)
        return view(row, app.extensions["orderhooks.box"], app.config["PUBLIC_BASE_URL"])


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# -- signed deliveries ------------------------------------------------------------------------
#
# Builders for the signature schemes channels commonly use. A plugin's own tests build its
# channel's deliveries with these (or with its own helpers) and post them with ``deliver``.


def json_body(payload) -> bytes:
    """``payload`` as compact JSON bytes, the way most channels send it."""
    import json
    return json.dumps(payload, separators=(",", ":")).encode()


def hmac_signature(secret: str | bytes, body: bytes, *, digest: str = "sha256",
                   encoding: str = "base64") -> str:
    """HMAC of the raw body with ``secret``, as ``base64`` or ``hex`` — e.g. Shopify's
    ``X-Shopify-Hmac-Sha256`` is ``hmac_signature(client_secret, body)``."""
    import base64
    import hashlib
    import hmac
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, body, getattr(hashlib, digest)).digest()
    if encoding == "base64":
        return base64.b64encode(mac).decode()
    if encoding == "hex":
        return mac.hex()
    raise ValueError(f"encoding is 'base64' or 'hex', not {encoding!r}")


def new_standard_webhooks_secret() -> str:
    """A fresh random Standard Webhooks secret, ``whsec_<base64 of 24 bytes>``."""
    import base64
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


class StandardWebhooksSigner:
    """Signs bodies the way a Standard Webhooks sender does (the ``standardwebhooks`` library),
    producing the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers::

        signer = StandardWebhooksSigner("whsec_...")
        headers = signer.headers(body)                   # a new message id each call
        headers = signer.headers(body, msg_id="msg_1")  # a retry of msg_1
    """

    def __init__(self, secret: str):
        from standardwebhooks.webhooks import Webhook
        self.secret = secret
        self.webhook = Webhook(secret)
        self._count = 0

    def headers(self, body: bytes | str, *, msg_id: str | None = None,
                timestamp: datetime | int | float | None = None) -> dict[str, str]:
        import base64
        import hashlib
        import hmac
        if msg_id is None:
            self._count += 1
            msg_id = f"msg_{os.urandom(6).hex()}_{self._count}"
        if timestamp is None:
            timestamp = datetime.now(timezone.utc)
        elif not isinstance(timestamp, datetime):
            timestamp = datetime.fromtimestamp(timestamp, timezone.utc)
        raw = body.encode() if isinstance(body, str) else body
        try:
            signature = self.webhook.sign(msg_id=msg_id, timestamp=timestamp,
                                          data=raw.decode())
        except UnicodeDecodeError:
            # The library signs text; sign the raw bytes the same way (receivers will refuse
            # them as the library does, which is what a test of such a body wants to see).
            stamp = str(int(timestamp.timestamp())).encode()
            mac = hmac.new(self.webhook._whsecret, msg_id.encode() + b"." + stamp + b"." + raw,
                           hashlib.sha256).digest()
            signature = "v1," + base64.b64encode(mac).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": signature}


def standard_webhooks_headers(secret: str, body: bytes | str, *, msg_id: str | None = None,
                              timestamp: datetime | int | float | None = None) -> dict[str, str]:
    """One-off :meth:`StandardWebhooksSigner.headers`."""
    return StandardWebhooksSigner(secret).headers(body, msg_id=msg_id, timestamp=timestamp)


def webhook_path(channel) -> str:
    """The intake path of a channel (a :class:`core.channels.Channel` or an admin API dict)."""
    if isinstance(channel, dict):
        return f"/webhooks/{channel['type']}/{channel['id']}"
    return f"/webhooks/{channel.type}/{channel.id}"


@pytest.fixture
def deliver(client):
    """``deliver(channel, body, headers) -> response``: POST a delivery to the channel's intake
    (``channel`` a :class:`core.channels.Channel` or the admin API's channel dict)."""
    def send(channel, body: bytes | str, headers: dict | None = None):
        return client.post(webhook_path(channel), data=body, headers=dict(headers or {}))
    return send


def delivery_count(app, channel_id: int | None = None) -> int:
    """How many deliveries are stored (for ``channel_id``, or in all)."""
    from sqlalchemy import func, select
    from .models import Delivery
    query = select(func.count()).select_from(Delivery)
    if channel_id is not None:
        query = query.where(Delivery.channel_id == channel_id)
    with app.extensions["orderhooks.db"].Session() as session:
        return session.execute(query).scalar_one()


# -- the adapter contract ---------------------------------------------------------------------

#: Every intent a ``translate`` may yield.
INTENT_TYPES = ("Cancel", "Fulfill", "DeactivateChannel", "RedactPersonalData", "Ignore")


def _garble(value: str) -> str:
    """The same length and alphabet, every letter and digit changed (``""`` becomes ``"x"``)."""
    out = []
    for ch in value:
        if ch.isascii() and ch.isdigit():
            out.append(str((int(ch) + 3) % 10))
        elif ch.isascii() and ch.islower():
            out.append(chr((ord(ch) - 97 + 7) % 26 + 97))
        elif ch.isascii() and ch.isupper():
            out.append(chr((ord(ch) - 65 + 7) % 26 + 65))
        else:
            out.append(ch)
    garbled = "".join(out)
    return garbled if garbled != value else value + "x"


def _garbage_cases(body: bytes, seed: int, rounds: int) -> list[bytes]:
    """Bodies that are not a valid delivery: random bytes, other JSON, mutations of ``body``."""
    import json
    import random
    rng = random.Random(seed)
    cases = [b"", b"{", b"}", b"null", b"[]", b"{}", b"0", b'"x"', b"true", b"\xff\xfe\x00",
             b"NaN", b'{"a": NaN}', b"[" * 64 + b"]" * 64, b"[" * 50_000 + b"]" * 50_000,
             "{\"\u00e9\": \"\u2603\"}".encode(), b"\x00" * 64, b" " * 1000,
             body[: len(body) // 2], body + b"\x00", body.replace(b"{", b"[", 1)]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    odd_values = [None, True, False, 0, -1, 2**63, 10**30, 1.5e308, -1e308, "", "x" * 300,
                  "\u0000", "\ud83d\ude00", [], {}, [None], {"": None}, [[[]]]]

    def mutate(node, depth=0):
        """The same JSON with one value, somewhere, replaced by an odd one (or dropped)."""
        if isinstance(node, dict) and node and depth < 6:
            key = rng.choice(sorted(node))
            copy_ = dict(node)
            if rng.random() < 0.25:
                copy_.pop(key)
            elif rng.random() < 0.5 and isinstance(node[key], (dict, list)):
                copy_[key] = mutate(node[key], depth + 1)
            else:
                copy_[key] = rng.choice(odd_values)
            return copy_
        if isinstance(node, list) and node and depth < 6:
            copy_ = list(node)
            index = rng.randrange(len(node))
            copy_[index] = (mutate(node[index], depth + 1) if rng.random() < 0.5
                            else rng.choice(odd_values))
            return copy_
        return rng.choice(odd_values)

    for _ in range(rounds):
        kind = rng.random()
        if parsed is not None and kind < 0.6:
            cases.append(json.dumps(mutate(parsed)).encode())
        elif kind < 0.8:
            cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        else:
            mutated = bytearray(body)
            for _ in range(rng.randrange(1, 5)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(bytes(mutated))
    return cases


def _garbage_headers(headers: dict, seed: int, rounds: int) -> list[dict]:
    import random
    import string
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t" + "éß"
    cases = [{}, {"Content-Type": "application/json"},
             {k: "" for k in headers}, {k: _garble(v) for k, v in headers.items()},
             {k: v * 50 for k, v in headers.items()}]
    for _ in range(rounds):
        case = dict(headers)
        for key in list(case):
            roll = rng.random()
            if roll < 0.3:
                case[key] = "".join(rng.choice(alphabet)
                                    for _ in range(rng.randrange(0, 120))).strip()
            elif roll < 0.4:
                case.pop(key)
        case[f"X-Junk-{rng.randrange(1000)}"] = "".join(rng.choice(alphabet) for _ in range(20))
        cases.append(case)
    return cases


class AdapterContract:
    """The contract every channel adapter keeps, checked through the real app.

    Subclass it in your adapter's test module (the class name must start with ``Test``) and
    provide the fixtures below; every ``test_*`` method then runs against your adapter::

        pytest_plugins = ["core.testing"]          # in conftest.py

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
    headers)`` returning a correctly signed delivery for that :class:`core.channels.Channel`).

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
    def mock_channel_api(self):
        return None

    # -- fixtures the contract builds ----------------------------------------------------------

    @pytest.fixture
    def adapter(self, app):
        """The adapter the app loaded for ``channel_type``."""
        if not self.channel_type:
            pytest.fail(f"{type(self).__name__} must set channel_type")
        adapter = app.extensions["orderhooks.channels"].get(self.channel_type)
        if adapter is None:
            plugins = [p.to_dict() for p in app.extensions["orderhooks.channels"].plugins]
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

    @staticmethod
    def _incoming(body: bytes, headers: dict):
        from .channels import Delivery, Headers
        return Delivery(body=body, headers=Headers(headers), received_at=datetime.now(timezone.utc))

    # -- the contract --------------------------------------------------------------------------

    def test_type_name_is_valid_and_registered(self, app, adapter):
        from .channels import ChannelAdapter
        from .plugins import ENTRY_POINT_GROUP, TYPE_NAME
        from importlib import metadata
        assert isinstance(adapter, ChannelAdapter)
        assert adapter.type == self.channel_type
        assert TYPE_NAME.fullmatch(adapter.type), adapter.type
        assert isinstance(adapter.title, str) and adapter.title.strip(), "give the adapter a title"
        assert all(h == h.lower() for h in adapter.stored_headers)
        providers = [p for p in app.extensions["orderhooks.channels"].plugins
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
        from .models import Delivery
        with app.extensions["orderhooks.db"].Session() as session:
            row = session.get(Delivery, answer["delivery_id"])
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
        everything = {k: (v if k.lower() == "content-type" else _garble(v))
                      for k, v in headers.items()}
        response = self._send(client, contract_channel, body, everything)
        assert response.status_code == 401, response.get_json()
        assert response.get_json()["error"] == "unauthenticated"
        assert delivery_count(app) == 0
        refused = []
        for name in auth:
            for value in (_garble(headers[name]), ""):
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

        for index, garbage in enumerate(_garbage_cases(body, self.garbage_seed,
                                                       self.garbage_rounds)):
            check(f"body {index} with the valid headers", garbage, headers)
            check(f"body {index} without headers", garbage, {})
            if sign is not None:
                signed = {"Content-Type": "application/json",
                          **sign(contract_channel, garbage)}
                check(f"body {index}, signed", garbage, signed)
        for index, garbage in enumerate(_garbage_headers(headers, self.garbage_seed,
                                                         self.garbage_rounds)):
            check(f"headers {index}", body, garbage)
        assert not failures, failures[:5]

    def test_inspect_is_deterministic(self, adapter, contract_channel, valid_delivery):
        from .channels import DeliveryInfo
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
        from .channels import SubscriptionSpec
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
        from . import intents as intent_module
        from .intents import Fulfill, Shipment
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
        body, headers = valid_delivery(contract_channel)
        response = self._send(client, contract_channel, body, headers)
        assert response.status_code == 200, response.get_json()
        worker.run_until_idle()
        delivery = admin.get(f"/deliveries/{response.get_json()['delivery_id']}")
        assert delivery["state"] == "done", delivery
        assert delivery["outcome"] in ("applied", "ignored", "deferred"), delivery
