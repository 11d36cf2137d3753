"""Security: the admin token compared in constant time; channel credentials and
webhook secrets encrypted at rest (rotation included) and never returned or logged; the Standard
Webhooks timestamp tolerance; no stack trace or SQL to a client; security headers."""
from __future__ import annotations

import base64
import io
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import MetaData, select

from core.crypto import Box
from core.logs import JsonFormatter
from core.models import SalesChannel
from core.testing import ADMIN_TOKEN, SECRET_KEY, channel_view
from tests.conftest import BC_STORE

ACCESS_TOKEN = "bc-access-token-PLAINTEXT-9f27c1"
CLIENT_SECRET = "bc-client-secret-PLAINTEXT-44d0aa"
OLD_KEY, NEW_KEY = ("8Vp1fyEetqbNK82Ac57BrnfNFzg6mUfs0Fp9iwiinhY=",
                    "ZiKeYgIOAJWObU-QkBiSZYRQO5JGq_eJaQRVtsMjMN8=")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                    "Content-Security-Policy": "default-src 'none'"}


@pytest.fixture
def json_logs():
    """Everything the orderhooks loggers write, as the JSON lines production writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("orderhooks")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _dump_database(app) -> str:
    """Every row of every table, as text."""
    engine = app.extensions["orderhooks.db"].engine
    meta = MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(repr(tuple(row)))
    return "\n".join(out)


# -- the admin token ----------------------------------------------------------------------------

def test_admin_token_is_compared_in_constant_time(client, monkeypatch):
    import core.api as api
    calls = []
    real = api.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(api.hmac, "compare_digest", spy)
    for header, status in [(f"Bearer {ADMIN_TOKEN}", 200), (f"bearer {ADMIN_TOKEN}", 200),
                           ("Bearer wrong", 401), (f"Bearer {ADMIN_TOKEN}x", 401),
                           (f"Bearer {ADMIN_TOKEN[:-1]}", 401), ("Bearer ", 401),
                           (f"Basic {ADMIN_TOKEN}", 401), (ADMIN_TOKEN, 401),
                           ("Bearer é😀", 401)]:
        response = client.get("/api/v1/statuses", headers={"Authorization": header})
        assert response.status_code == status, header
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/statuses").status_code == 401
    # every token that got as far as a comparison was compared with compare_digest
    assert calls and all(b == ADMIN_TOKEN.encode() for _a, b in calls)
    assert len(calls) >= 7


def test_admin_api_is_closed_without_a_configured_token(app, client):
    app.config["ADMIN_TOKEN"] = ""
    for header in ("Bearer ", "Bearer anything", ""):
        assert client.get("/api/v1/channels",
                          headers={"Authorization": header}).status_code == 401


def test_webhook_secret_is_compared_in_constant_time(bc, monkeypatch):
    import plugins.bigcommerce.plugin as plugin
    bc.create()
    calls = []
    real = plugin.hmac.compare_digest
    monkeypatch.setattr(plugin.hmac, "compare_digest",
                        lambda a, b: calls.append(1) or real(a, b))
    assert bc.send(secret="wrong-secret").status_code == 401
    assert bc.send().status_code == 200
    assert len(calls) == 2


# -- secrets at rest ------------------------------------------------------------------------------

def test_credentials_and_webhook_secrets_are_encrypted_at_rest_never_returned_or_logged(
        bc, app, admin, make_order, worker, api, json_logs):
    channel = bc.create(access_token=ACCESS_TOKEN, client_secret=CLIENT_SECRET)
    secret = bc.secret
    make_order(channel["id"], 250)
    api.upsert(responses.GET, f"{BC_STORE}/v2/orders/250", status=500, json={})
    body = json.dumps(bc.payload(order_id=250)).encode()
    assert bc.send(body=body, headers=_signed(body, datetime.now(timezone.utc))).status_code == 200
    assert bc.send(order_id=251, secret="wrong").status_code == 401
    worker.run_until_idle()  # a failed API call: errors are logged
    admin.patch(f"/channels/{channel['id']}", {"credentials": {
        "access_token": ACCESS_TOKEN + "-2"}})

    stored = _dump_database(app)
    for plaintext in (ACCESS_TOKEN, CLIENT_SECRET, secret, "store_hash"):
        assert plaintext not in stored, f"{plaintext} is stored in clear"
    with app.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, channel["id"])
        assert row.credentials_sealed.startswith("gAAAA")  # Fernet tokens
        assert Box(SECRET_KEY).open(row.credentials_sealed)["access_token"] == \
            ACCESS_TOKEN + "-2"

    answers = json.dumps([admin.get("/channels"), admin.get(f"/channels/{channel['id']}"),
                          admin.get(f"/channels/{channel['id']}/history"),
                          admin.get(f"/channels/{channel['id']}/subscriptions"),
                          admin.get("/deliveries"),
                          admin.get("/deliveries/1")])
    logged = json_logs.getvalue()
    assert logged  # something was logged
    for plaintext in (ACCESS_TOKEN, CLIENT_SECRET, secret):
        assert plaintext not in answers
        assert plaintext not in logged
    assert "X-Orderhooks-Secret" not in json.dumps(admin.get("/deliveries/1")["headers"])


def test_secret_rotation_re_encrypts_everything_with_the_first_key(make_channel, app_config,
                                                                    api, tmp_path):
    from core import create_app
    from core.cli import main
    api.add(responses.GET, f"{BC_STORE}/v3/hooks", json={"data": [], "meta": {}})
    api.add(responses.POST, f"{BC_STORE}/v3/hooks", json={"data": {"id": 1}, "meta": {}})
    old = create_app({**app_config, "SECRET_KEY": OLD_KEY})
    client = old.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    channel = client.post("/api/v1/channels", headers=headers, json={
        "type": "bigcommerce", "name": "rotating", "credentials": {
            "store_hash": "abc123", "access_token": ACCESS_TOKEN, "api_base_url":
            "https://bc.test"}, "valid_cancellation_statuses": ["AWAITING_SHIPMENT"]}).get_json()
    secret = channel_view(old, channel["id"]).webhook_secret
    with old.extensions["orderhooks.db"].Session() as session:
        before = session.get(SalesChannel, channel["id"]).credentials_sealed
    old.extensions["orderhooks.db"].dispose()

    env = {"ORDERHOOKS_DATABASE_URL": app_config["DATABASE_URL"],
           "ORDERHOOKS_SECRET_KEY": f"{NEW_KEY},{OLD_KEY}", "ORDERHOOKS_LOG_LEVEL": "ERROR"}
    result = CliRunner().invoke(main, ["secrets", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    assert "re-encrypted the secrets of 1 channel" in result.output

    new = create_app({**app_config, "SECRET_KEY": NEW_KEY})  # the old key is gone
    view = channel_view(new, channel["id"])
    assert view.credentials["access_token"] == ACCESS_TOKEN and view.webhook_secret == secret
    with new.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, channel["id"])
        assert row.credentials_sealed != before
        with pytest.raises(ValueError):
            Box(OLD_KEY).open(row.credentials_sealed)
        with pytest.raises(ValueError):
            Box(OLD_KEY).open(row.webhook_secret_sealed)
    answer = new.test_client().post(f"/webhooks/bigcommerce/{channel['id']}",
                                    headers={"X-Orderhooks-Secret": secret},
                                    data=json.dumps({"scope": "store/order/statusUpdated",
                                                     "data": {"type": "order", "id": 1},
                                                     "hash": "h1"}))
    assert answer.status_code == 200
    new.extensions["orderhooks.db"].dispose()


def test_a_wrong_key_fails_loudly_not_silently():
    sealed = Box(OLD_KEY).seal({"access_token": "x"})
    with pytest.raises(ValueError, match="ORDERHOOKS_SECRET_KEY"):
        Box(NEW_KEY).open(sealed)
    assert Box(f"{NEW_KEY},{OLD_KEY}").open(sealed) == {"access_token": "x"}


# -- Standard Webhooks timestamps -------------------------------------------------------------------

def _signed(body: bytes, when: datetime, secret: str = CLIENT_SECRET) -> dict:
    from standardwebhooks.webhooks import Webhook
    hook = Webhook(base64.b64encode(secret.encode()).decode())
    return {"webhook-id": "msg_2b", "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": hook.sign("msg_2b", when, body.decode())}


def test_standard_webhooks_timestamp_tolerance_is_enforced(bc):
    bc.create(client_secret=CLIENT_SECRET)
    now = datetime.now(timezone.utc)
    cases = [(now, 200), (now - timedelta(minutes=4), 200), (now + timedelta(minutes=4), 200),
             (now - timedelta(minutes=6), 401), (now + timedelta(minutes=6), 401),
             (now - timedelta(days=400), 401)]
    for n, (when, status) in enumerate(cases):
        body = json.dumps(bc.payload(order_id=600 + n)).encode()
        answer = bc.send(body=body, headers=_signed(body, when))
        assert answer.status_code == status, (when, answer.get_json())
        if status == 401:
            assert "Standard Webhooks" in answer.get_json()["message"]
    body = json.dumps(bc.payload(order_id=700)).encode()
    tampered = _signed(body, now)
    assert bc.send(body=body.replace(b"700", b"701"), headers=tampered).status_code == 401
    assert bc.send(body=body, headers=_signed(body, now, "another-secret")).status_code == 401


# -- what reaches a client ----------------------------------------------------------------------

def _no_internals(response):
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "File \"", "SELECT", "INSERT", "sqlalchemy", "psycopg",
                 "sqlite3", "boom-internal"):
        assert leak not in text, (leak, text[:500])
    data = response.get_json()
    assert set(data) >= {"error", "message"}


def test_no_stack_trace_or_sql_reaches_a_client(bc, admin, monkeypatch):
    from sqlalchemy.exc import OperationalError, ProgrammingError

    import core.api.orders as orders_api
    channel = bc.create()
    body = {"channel_id": channel["id"], "channel_order_id": "1"}

    def fail(exc):
        def raiser(*_a, **_k):
            raise exc
        return raiser
    for exc, status in [(RuntimeError("boom-internal"), 500),
                        (ProgrammingError("SELECT secret FROM boom-internal", {}, Exception("x")),
                         500),
                        (OperationalError("SELECT 1 /* boom-internal */", {},
                                          Exception("server closed the connection")), 503)]:
        monkeypatch.setattr(orders_api.orders, "find_order", fail(exc))
        response = admin.request("POST", "/orders", json=body)
        assert response.status_code == status
        _no_internals(response)
        if status == 503:
            assert response.headers["Retry-After"]
    monkeypatch.undo()
    for method, path in [("GET", "/api/v1/nothing"), ("DELETE", "/api/v1/statuses"),
                         ("GET", "/api/v1/orders/99999999999999999999"),
                         ("POST", "/api/v1/orders")]:
        response = admin.client.open(path, method=method, headers=admin.headers,
                                     data="{not json", content_type="application/json")
        assert 400 <= response.status_code < 500, (path, response.status_code)
        _no_internals(response)
    for body in (b"{", b"[" * 50_000, b'{"scope": "store/order/statusUpdated", '
                                       b'"created_at": 1e400, "data": {"id": 1}}'):
        response = bc.send(body=body)
        assert response.status_code in (200, 400)  # an odd timestamp may just be dropped
        if response.status_code == 400:
            _no_internals(response)


def test_security_headers_on_every_kind_of_response(bc, client, admin, monkeypatch):
    channel = bc.create()
    responses_ = [
        client.get("/healthz"), client.get("/readyz"), client.get("/metrics"),
        client.get("/api/v1/openapi.json"), client.get("/api/v1/statuses"),
        admin.client.get("/api/v1/statuses", headers=admin.headers),
        admin.client.get("/api/v1/orders/424242", headers=admin.headers),
        admin.client.post("/api/v1/orders", headers=admin.headers, json={}),
        bc.send(), bc.send(secret="wrong"), client.post("/webhooks/bigcommerce/99999"),
        client.post(f"/webhooks/bigcommerce/{channel['id']}", data=b"x" * (2 * 2**20)),
        client.get("/no/such/page"), client.put("/healthz")]
    import core.api.meta as meta
    monkeypatch.setattr(meta.statuses, "STATUSES", None)  # a 500
    responses_.append(admin.client.get("/api/v1/statuses", headers=admin.headers))
    statuses = sorted({r.status_code for r in responses_})
    assert statuses == [200, 401, 404, 405, 413, 422, 500], statuses
    for response in responses_:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.status_code, name)
