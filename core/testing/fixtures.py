"""The fixtures: a fresh app on a fresh, migrated database, its clients and builders, and the
helpers that read what the app stored.

Every setting the test app gets is a constant at the top of this module, or ``app_config``."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

#: The admin API's bearer token in the test app (the ``admin`` fixture sends it).
ADMIN_TOKEN = "test-admin-token"
PUBLIC_BASE_URL = "https://orderhooks.example.com"
#: ``ORDERHOOKS_SECRET_KEY`` of the test app: credentials are encrypted with it (a fixed Fernet
#: key, for tests only; real keys come from ``orderhooks secrets generate-key``).
SECRET_KEY = "MqDvFf3M93ioP7o64p_e_cqu8Hjx9u3rtM1YZRK1Q1A="


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres_only: runs only against PostgreSQL")


def test_database_url() -> str | None:
    return os.environ.get("ORDERHOOKS_TEST_DATABASE_URL") or None


test_database_url.__test__ = False  # not a test


@pytest.fixture(scope="session")
def _schema(tmp_path_factory):
    """Migrate a database once per session: a template SQLite file, or the PostgreSQL schema
    dropped and re-created."""
    from core.db import Database
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
    from core.db import Database
    from core.models import Base
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
    from core import create_app
    app = create_app(app_config)
    yield app
    app.extensions["orderhooks.inbox"].close()
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
    from core.worker import Worker
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
    """The decrypted :class:`core.adapters.Channel` for ``channel_id`` (e.g. its secret)."""
    from core.models import SalesChannel
    from core.channel_store import view
    with app.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, channel_id)
        return view(row, app.extensions["orderhooks.box"], app.config["PUBLIC_BASE_URL"])


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)



def webhook_path(channel) -> str:
    """The intake path of a channel (a :class:`core.adapters.Channel` or an admin API dict)."""
    if isinstance(channel, dict):
        return f"/webhooks/{channel['type']}/{channel['id']}"
    return f"/webhooks/{channel.type}/{channel.id}"


@pytest.fixture
def deliver(client):
    """``deliver(channel, body, headers) -> response``: POST a delivery to the channel's intake
    (``channel`` a :class:`core.adapters.Channel` or the admin API's channel dict)."""
    def send(channel, body: bytes | str, headers: dict | None = None):
        return client.post(webhook_path(channel), data=body, headers=dict(headers or {}))
    return send


def delivery_count(app, channel_id: int | None = None) -> int:
    """How many deliveries are stored (for ``channel_id``, or in all)."""
    from sqlalchemy import func, select
    from core.models import StoredDelivery
    query = select(func.count()).select_from(StoredDelivery)
    if channel_id is not None:
        query = query.where(StoredDelivery.channel_id == channel_id)
    with app.extensions["orderhooks.db"].Session() as session:
        return session.execute(query).scalar_one()


