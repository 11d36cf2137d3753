"""Webhook intake: POST /webhooks/<type>/<id> — 401, 404, 413, 400, 503, duplicates."""
import base64
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker
from standardwebhooks.webhooks import Webhook
from werkzeug.test import EnvironBuilder, run_wsgi_app

from core import hookimpl
from core.adapters import ChannelAdapter, DeliveryInfo
from core.db import Database
from core.models import StoredDelivery

CLIENT_SECRET = "bc-client-secret-123"


class OtherAdapter(ChannelAdapter):
    """A second channel type, to check that a channel answers only under its own type."""
    type = "othershop"
    title = "Other shop"

    def authenticate(self, delivery, channel):
        return None

    def inspect(self, delivery, channel):
        return DeliveryInfo(key="k")


class OtherPlugin:
    @hookimpl
    def register_channels(self, register):
        register(OtherAdapter())


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAX_BODY_BYTES": 4096, "PLUGINS": [("othershop", OtherPlugin())]}


def assert_error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.get_data())
    body = response.get_json()
    assert isinstance(body, dict), response.get_data()
    assert body.get("error") and body.get("message"), body
    if code:
        assert body["error"] == code, body
    return body


def stored_count(app):
    with app.extensions["orderhooks.db"].Session() as session:
        return session.scalar(select(func.count()).select_from(StoredDelivery))


def standard_headers(body: str, secret=CLIENT_SECRET, msg_id="msg_1", when=None):
    when = when or datetime.now(timezone.utc)
    key = base64.b64encode(secret.encode()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(key).sign(msg_id, when, body)}


# -- 200 ------------------------------------------------------------------------------------

def test_authentic_delivery_is_stored_and_acknowledged(bc, app, admin):
    bc.create()
    response = bc.send(order_id=250)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "accepted" and isinstance(body["delivery_id"], int)
    delivery = admin.get(f"/deliveries/{body['delivery_id']}")
    assert delivery["state"] == "pending" and delivery["channel_order_id"] == "250"
    assert delivery["topic"] == "store/order/statusUpdated"
    assert json.loads(delivery["body"])["data"]["id"] == 250
    # the secret header is never stored with the delivery
    assert "x-orderhooks-secret" not in {k.lower() for k in delivery["headers"]}
    assert bc.secret not in json.dumps(delivery)


def test_duplicate_is_acknowledged_and_stored_once(bc, app):
    bc.create()
    payload = bc.payload(order_id=250)
    first = bc.send(payload)
    again = bc.send(payload)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == {"status": "duplicate",
                                "delivery_id": first.get_json()["delivery_id"]}
    assert stored_count(app) == 1


def test_duplicate_by_webhook_id_when_payload_has_no_hash(bc, app):
    bc.create()
    payload = bc.payload(order_id=250)
    del payload["hash"]
    first = bc.send(payload, headers={"webhook-id": "msg_abc"})
    payload["created_at"] += 5  # a retry of the same message, re-serialised
    again = bc.send(payload, headers={"webhook-id": "msg_abc"})
    assert again.get_json() == {"status": "duplicate",
                                "delivery_id": first.get_json()["delivery_id"]}
    assert stored_count(app) == 1


# -- 401 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [False, "", "wrong", "x" * 43])
def test_missing_or_wrong_secret_header_is_401(bc, app, secret):
    bc.create()
    response = bc.send(order_id=250, secret=secret)
    assert_error(response, 401, "unauthenticated")
    assert stored_count(app) == 0


def test_secret_of_another_channel_is_401(bc, app, make_channel):
    bc.create()
    first_secret = bc.secret
    bc.create()  # a second channel
    assert_error(bc.send(order_id=250, secret=first_secret), 401)
    assert stored_count(app) == 0


def test_valid_standard_webhooks_signature_is_accepted(bc, app):
    bc.create(client_secret=CLIENT_SECRET)
    body = json.dumps(bc.payload(order_id=250))
    response = bc.send(body=body, headers=standard_headers(body))
    assert response.status_code == 200, response.get_json()
    assert stored_count(app) == 1


def test_standard_webhooks_still_needs_the_secret_header(bc, app):
    bc.create(client_secret=CLIENT_SECRET)
    body = json.dumps(bc.payload(order_id=250))
    assert_error(bc.send(body=body, secret=False, headers=standard_headers(body)), 401)
    assert stored_count(app) == 0


@pytest.mark.parametrize("tamper", ["wrong_key", "garbage", "bad_base64", "other_body",
                                    "expired", "future", "bad_timestamp", "empty_id"])
def test_bad_standard_webhooks_signature_is_401(bc, app, tamper):
    bc.create(client_secret=CLIENT_SECRET)
    body = json.dumps(bc.payload(order_id=250))
    headers = standard_headers(body)
    if tamper == "wrong_key":
        headers = standard_headers(body, secret="another-secret")
    elif tamper == "garbage":
        headers["webhook-signature"] = "garbage"
    elif tamper == "bad_base64":
        headers["webhook-signature"] = "v1,@@@not-base64@@@"
    elif tamper == "other_body":
        headers = standard_headers(json.dumps(bc.payload(order_id=999)))
    elif tamper == "expired":
        headers = standard_headers(body, when=datetime.now(timezone.utc) - timedelta(minutes=10))
    elif tamper == "future":
        headers = standard_headers(body, when=datetime.now(timezone.utc) + timedelta(minutes=10))
    elif tamper == "bad_timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif tamper == "empty_id":
        headers["webhook-id"] = ""
    assert_error(bc.send(body=body, headers=headers), 401, "unauthenticated")
    assert stored_count(app) == 0


# -- 404 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/webhooks/nosuchchannel/1",          # unknown channel type
    "/webhooks/bigcommerce/999",          # unknown id
    "/webhooks/bigcommerce/0",
    "/webhooks/bigcommerce/abc",          # not numeric
    "/webhooks/bigcommerce/-1",
    "/webhooks/bigcommerce/1.0",
    "/webhooks/bigcommerce/%C2%B2",       # '²': a "digit" int() refuses
    "/webhooks/bigcommerce/%D9%A1",       # Arabic-Indic one: not channel 1
    "/webhooks/bigcommerce/" + "9" * 19,  # beyond any id
    "/webhooks/othershop/1",              # channel 1 is a BigCommerce channel
])
def test_unknown_channel_is_404_never_410(bc, app, client, path):
    bc.create()
    response = client.post(path, data=json.dumps(bc.payload()),
                           headers={"X-Orderhooks-Secret": bc.secret,
                                    "Content-Type": "application/json"})
    assert_error(response, 404)
    assert stored_count(app) == 0


def test_inactive_channel_is_404(bc, app, admin):
    channel = bc.create()
    assert bc.send(order_id=1).status_code == 200
    admin.patch(f"/channels/{channel['id']}", {"active": False})
    assert_error(bc.send(order_id=2), 404, "unknown_channel")
    assert stored_count(app) == 1
    admin.patch(f"/channels/{channel['id']}", {"active": True})
    assert bc.send(order_id=2).status_code == 200


def test_other_methods_are_json_405(bc, client):
    bc.create()
    assert_error(client.get("/webhooks/bigcommerce/1"), 405)


# -- 413 ------------------------------------------------------------------------------------

def big_payload(bc, size):
    payload = bc.payload(order_id=250)
    payload["padding"] = "x" * size
    return json.dumps(payload)


def test_body_over_the_cap_is_413(bc, app):
    bc.create()
    body = big_payload(bc, 5000)
    assert_error(bc.send(body=body), 413, "body_too_large")
    assert_error(bc.send(body=body, secret="wrong"), 413)  # before authentication
    assert stored_count(app) == 0


def test_body_at_the_cap_is_accepted(bc, app):
    bc.create()
    body = big_payload(bc, 0)
    body = big_payload(bc, 4096 - len(body))
    assert len(body) == 4096
    assert bc.send(body=body).status_code == 200


def post_chunked(app, path, body: bytes, headers: dict):
    """A body without Content-Length (Transfer-Encoding: chunked), as gunicorn hands it on."""
    environ = EnvironBuilder(path=path, method="POST", headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    app_iter, status, response_headers = run_wsgi_app(app, environ, buffered=True)
    data = b"".join(app_iter)
    return int(status.split()[0]), json.loads(data)


def test_chunked_body_over_the_cap_is_413(bc, app):
    bc.create()
    status, body = post_chunked(app, "/webhooks/bigcommerce/1",
                                big_payload(bc, 10_000).encode(),
                                {"X-Orderhooks-Secret": bc.secret,
                                 "Content-Type": "application/json"})
    assert status == 413 and body["error"] == "body_too_large" and body["message"]
    assert stored_count(app) == 0


def test_chunked_body_under_the_cap_is_accepted(bc, app):
    bc.create()
    status, body = post_chunked(app, "/webhooks/bigcommerce/1",
                                json.dumps(bc.payload(order_id=250)).encode(),
                                {"X-Orderhooks-Secret": bc.secret,
                                 "Content-Type": "application/json"})
    assert status == 200 and body["status"] == "accepted"
    assert stored_count(app) == 1


# -- 400 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "", "not json", "[1, 2]", '"scope"', "null", '{"data": {}}', '{"scope": 5}',
    '{"scope": "store/order/statusUpdated", "data": [1]}', "\xff\xfe",
    "[" * 2000 + "]" * 2000,  # deeper than the JSON parser goes
], ids=["empty", "text", "list", "string", "null", "no_scope", "scope_not_str", "data_list",
        "not_utf8", "too_deep"])
def test_authentic_but_unreadable_body_is_400(bc, app, body):
    bc.create()
    assert_error(bc.send(body=body), 400, "invalid_delivery")
    assert stored_count(app) == 0


@pytest.mark.parametrize("created_at", [str(10**20), str(-10**20), "Infinity", "NaN", "1e400",
                                        '"99999999999999999999"', "true", "[]", "-1"])
def test_odd_timestamps_never_yield_a_5xx(bc, app, created_at):
    bc.create()
    body = json.dumps(bc.payload(order_id=250)).replace('"created_at": 1561479335',
                                                        f'"created_at": {created_at}')
    assert "1561479335" not in body
    response = bc.send(body=body)
    assert response.status_code in (200, 400), response.get_data()
    if response.status_code == 400:
        assert_error(response, 400)
    else:
        assert stored_count(app) == 1


# -- 503 ------------------------------------------------------------------------------------

def test_database_failing_when_storing_is_503(bc, app):
    """The channel is read fine, but the insert fails (the server closed the connection: a
    failover, a restart...): 503, and the next delivery opens a new connection."""
    bc.create()
    writer = app.extensions["orderhooks.inbox"]  # intake's own connection (one per process)
    writer.connection().close()   # as a server that went away leaves it
    response = bc.send(order_id=250)
    body = assert_error(response, 503, "database_unavailable")
    assert response.headers.get("Retry-After")
    assert "again" in body["message"]
    assert stored_count(app) == 0
    assert bc.send(order_id=250).status_code == 200  # the channel's retry is stored
    assert stored_count(app) == 1


def test_database_session_failing_is_503(bc, app, monkeypatch):
    """Whichever way intake reaches the database, an OperationalError is a 503."""
    bc.create()
    secret = bc.secret

    def down(self, *args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(Database, "session", down)
    monkeypatch.setattr(app.extensions["orderhooks.db"], "Session", down.__get__(object()))
    monkeypatch.setattr(app.extensions["orderhooks.db"].engine, "begin", down.__get__(object()))
    monkeypatch.setattr(app.extensions["orderhooks.db"].engine, "connect", down.__get__(object()))
    assert_error(bc.send(order_id=250, secret=secret), 503, "database_unavailable")
    monkeypatch.undo()
    assert stored_count(app) == 0


def test_database_server_gone_is_503_never_2xx(bc, app, client, monkeypatch):
    bc.create()
    db = app.extensions["orderhooks.db"]
    secret = bc.secret
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none",
                         connect_args={"connect_timeout": 2})
    monkeypatch.setattr(db, "engine", dead)
    monkeypatch.setattr(db, "Session", sessionmaker(dead, expire_on_commit=False))
    for order_id in (250, 251):
        response = bc.send(order_id=order_id, secret=secret)
        assert_error(response, 503, "database_unavailable")
    assert client.get("/readyz").status_code == 503
    monkeypatch.undo()
    dead.dispose()
    assert stored_count(app) == 0
    assert client.get("/readyz").status_code == 200
    assert bc.send(order_id=250, secret=secret).status_code == 200


def test_a_refused_body_is_drained_after_the_answer(bc, app):
    """A 413 (or any refusal) for an announced body up to 8 x the limit (1 MiB at least) reads
    the rest of it once the answer is sent (the response's ``close``), so the sender reads the
    answer instead of a TCP reset; a bigger announced body is never read."""
    bc.create()

    def call(length, sent):
        stream = io.BytesIO(b"x" * sent)
        path = f"/webhooks/bigcommerce/{bc.channel['id']}"
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path,
                   "CONTENT_LENGTH": str(length), "CONTENT_TYPE": "application/json",
                   "wsgi.input": stream}
        answer = {}
        body = app.wsgi_app(environ, lambda status, headers: answer.update(status=status))
        read_before_close = stream.tell()
        text = b"".join(body)
        getattr(body, "close", lambda: None)()
        return answer["status"], json.loads(text), read_before_close, stream.tell()

    status, payload, before, after = call(10_000, 10_000)  # limit 4096 in these tests
    assert status.startswith("413") and payload["error"] == "body_too_large"
    assert before == 0 and after == 10_000  # answered first, then drained
    status, _, before, after = call(50 * 2**20, 10_000)  # announced 50 MB: not read at all
    assert status.startswith("413") and before == after == 0
