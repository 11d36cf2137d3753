"""Hostile and broken input: property-based fuzzing of each channel's intake,
schemathesis against the admin API's own OpenAPI document, and oversized bodies refused before
they are read whole."""
from __future__ import annotations

import base64
import json
import select
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select as sql_select

from core.models import StoredDelivery

from .live import ADMIN_TOKEN, SECRET_HEADER, Stack, db_engine, delivery_body, scalar

LIMIT = 8192
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAX_BODY_BYTES": LIMIT}


# -- strategies ---------------------------------------------------------------------------------

ODD = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud800", "1" * 40, "9" * 400, "-1", "1e309", "NaN",
                     "store/order/\x00", "😀" * 10]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=3))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


BC_PAYLOAD = st.fixed_dictionaries(
    {"scope": st.one_of(st.sampled_from(["store/order/statusUpdated", "store/order/created",
                                          "store/shipment/created", "store/app/uninstalled"]),
                        ODD),
     "data": st.one_of(ODD, st.fixed_dictionaries(
         {"type": st.one_of(st.sampled_from(["order", "shipment"]), ODD), "id": ODD,
          "orderId": ODD}))},
    optional={"hash": ODD, "created_at": ODD, "producer": ODD, "store_id": ODD})

SPECIAL_BODIES = st.sampled_from([
    b"", b"{", b"null", b"[]", b"[" * 100_000, b'{"a":' * 50_000, b"\xff\xfe\x00\x00",
    b'{"scope": "store/order/statusUpdated", "data": {"type": "order", "id": 1}, '
    b'"created_at": 1e400}',
    b'{"scope": "store/order/statusUpdated", "data": {"id": "\\u0000"}, "hash": "\\ud800"}',
    b'{"scope": "store/order/\\u0000", "hash": "x"}', b"x" * (LIMIT + 1), b"x" * LIMIT])

BODIES = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(max_size=200).map(lambda t: t.encode("utf-16", "surrogatepass")),
    JSON.map(_dumps), BC_PAYLOAD.map(_dumps), BC_PAYLOAD.map(_dumps), SPECIAL_BODIES,
    st.integers(1, 10**9).map(lambda n: delivery_body("abc123", n)[0]),  # well-formed
    st.integers(0, 3 * LIMIT).map(lambda n: b"{" + b" " * n + b"}"))

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(["Content-Type", "Content-Encoding", "User-Agent", "webhook-id",
                     "webhook-timestamp", "webhook-signature", "X-Forwarded-For", "Accept"]),
    HEADER_TEXT, max_size=4)


def _count(app) -> int:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.scalar(sql_select(func.count()).select_from(StoredDelivery))


def _stored_body(app, delivery_id) -> bytes:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.get(StoredDelivery, delivery_id).body


def _check(app, response, sent_body, authentic: bool, before: int) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        data = response.get_json(silent=True)
        assert data and "error" in data and "message" in data
        text = response.get_data(as_text=True)
        assert "Traceback" not in text and "SELECT" not in text and "sqlalchemy" not in text
    if not authentic:
        assert response.status_code in (401, 404, 413), (response.status_code,
                                                         response.get_json(silent=True))
        assert _count(app) == before  # nothing unauthenticated is stored
    elif 200 <= response.status_code < 300 and response.get_json()["status"] == "accepted":
        assert _stored_body(app, response.get_json()["delivery_id"]) == sent_body


# -- BigCommerce --------------------------------------------------------------------------------

def test_fuzz_bigcommerce_intake(bc, client, app):
    plain = bc.create()
    secret = bc.secret
    signed = bc.create(client_secret="bc-client-secret")  # Standard Webhooks signatures too
    signed_secret = bc.secret
    channels = {plain["id"]: secret, signed["id"]: signed_secret}
    seen = Counter()

    @FUZZ
    @given(body=BODIES, which=st.sampled_from(["plain", "signed"]),
           auth=st.sampled_from(["right"] * 4 + ["wrong", "missing", "padded", "empty",
                                                 "other-channel"]),
           path=st.sampled_from(["ok"] * 10 + ["unknown", "letters", "zero", "huge", "type",
                                               "case"]),
           sign=st.sampled_from([None, "valid", "stale", "future", "garbage"]),
           extra=EXTRA_HEADERS)
    def check(body, which, auth, path, sign, extra):
        channel = plain if which == "plain" else signed
        other = signed if which == "plain" else plain
        headers = dict(extra)
        value = {"right": channels[channel["id"]], "wrong": "not-the-secret",
                 "padded": " " + channels[channel["id"]], "empty": "",
                 "other-channel": channels[other["id"]]}.get(auth)
        if value is not None:
            headers[SECRET_HEADER] = value
        if sign:
            headers.update(_standard_signature(body, "bc-client-secret", sign))
        target = {"ok": f"bigcommerce/{channel['id']}", "unknown": "bigcommerce/99999",
                  "letters": "bigcommerce/abc", "zero": "bigcommerce/0",
                  "huge": "bigcommerce/" + "9" * 30, "type": f"nope/{channel['id']}",
                  "case": f"BigCommerce/{channel['id']}"}[path]
        before = _count(app)
        response = client.post(f"/webhooks/{target}", data=body, headers=headers)
        authentic = auth == "right" and path == "ok" and (
            # A channel with a client secret requires a valid Standard Webhooks signature on
            # every delivery, and one can only be over a UTF-8 body (the spec signs text).
            which == "plain" or (sign == "valid" and _is_utf8(body)))
        _check(app, response, body, authentic, before)
        if authentic and len(body) <= LIMIT and response.status_code >= 400:
            assert response.status_code == 400  # authentic but unreadable
        seen[response.status_code] += 1

    check()
    print(f"\nBigCommerce intake fuzz, answers: {dict(sorted(seen.items()))}")
    assert {200, 400, 401, 404, 413} <= set(seen)  # every kind of answer was exercised


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _standard_signature(body: bytes, client_secret: str, kind: str) -> dict:
    from standardwebhooks.webhooks import Webhook
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    when = {"valid": now, "stale": now - timedelta(minutes=6),
            "future": now + timedelta(minutes=6), "garbage": now}[kind]
    hook = Webhook(base64.b64encode(client_secret.encode()).decode())
    signature = hook.sign("msg_1", when, body.decode("utf-8", "replace"))
    if kind == "garbage":
        signature = "v1,AAAA"
    return {"webhook-id": "msg_1", "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature}


# -- Shopify (when its plugin is installed) -------------------------------------------------------

SHOPIFY_PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "shopify" / "plugin.py"


@pytest.mark.skipif(not SHOPIFY_PLUGIN.exists(), reason="the Shopify plugin is not there yet")
def test_fuzz_shopify_intake(app, client, api, make_channel, admin, monkeypatch):
    from tests.shopify_helpers import SECRET, SHOP, ShopifyStandin, sign
    standin = ShopifyStandin(app, client, api, make_channel, admin)
    channel = standin.create()
    topics = st.sampled_from(["orders/cancelled", "fulfillments/create", "fulfillments/update",
                              "orders/fulfilled", "app/uninstalled", "customers/redact",
                              "shop/redact", "customers/data_request", "orders/create"])

    @FUZZ
    @given(body=st.one_of(BODIES, JSON.map(_dumps)), topic=st.one_of(topics, HEADER_TEXT),
           auth=st.sampled_from(["right", "right", "wrong", "missing", "garbage", "empty"]),
           prefix=st.sampled_from(["X-", ""]),
           shop=st.one_of(st.just(SHOP), st.just(SHOP.upper()),
                          HEADER_TEXT.filter(lambda s: s.strip() == s)),
           webhook_id=st.one_of(st.none(), HEADER_TEXT, st.just("w" * 300)),
           extra=EXTRA_HEADERS)
    def check(body, topic, auth, prefix, shop, webhook_id, extra):
        headers = dict(extra)
        headers[f"{prefix}Shopify-Topic"] = topic
        headers[f"{prefix}Shopify-Shop-Domain"] = shop
        if webhook_id is not None:
            headers[f"{prefix}Shopify-Webhook-Id"] = webhook_id
        value = {"right": sign(body, SECRET), "wrong": sign(body, "other-secret"),
                 "garbage": "%%%not base64", "empty": ""}.get(auth)
        if value is not None:
            headers[f"{prefix}Shopify-Hmac-Sha256"] = value
        before = _count(app)
        response = client.post(f"/webhooks/shopify/{channel['id']}", data=body, headers=headers)
        # the HMAC authenticates; the shop header must be there and name the channel's shop
        authentic = auth == "right" and shop.lower() == SHOP
        _check(app, response, body, authentic, before)
        seen[response.status_code] += 1

    seen = Counter()
    check()
    print(f"\nShopify intake fuzz, answers: {dict(sorted(seen.items()))}")
    assert {200, 400, 401} <= set(seen)


# -- bodies too large ---------------------------------------------------------------------------

def _raw_request(url: str, head: bytes) -> socket.socket:
    host, port = url.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head)
    return sock


def _read_answer(sock, timeout: float = 10.0) -> bytes:
    answer, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def test_oversized_bodies_are_refused_before_being_read_whole(database_url, tmp_path):
    with Stack(database_url, tmp_path / "live",
               env={"ORDERHOOKS_MAX_BODY_BYTES": str(LIMIT)}) as stack:
        stack.start_standin()
        stack.start_web(workers=2)
        channel = stack.create_channel("big")
        path = f"/webhooks/bigcommerce/{channel['id']}"
        common = (f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"{SECRET_HEADER}: {channel['secret']}\r\nConnection: close\r\n")

        # 1. Content-Length announces 50 MB: the answer comes before (almost) any body is sent.
        sock = _raw_request(stack.web_url, (f"POST {path} HTTP/1.1\r\n{common}"
                                            f"Content-Length: {50 * 2**20}\r\n\r\n").encode()
                            + b"{" * 1024)
        started = time.monotonic()
        answer = _read_answer(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - started < 8

        # 2. Chunked, no length, and a body that never ends: a server that read it whole would
        #    wait for ever; the intake stops just past the limit and answers 413 at once.
        sock = _raw_request(stack.web_url, (f"POST {path} HTTP/1.1\r\n{common}"
                                            f"Transfer-Encoding: chunked\r\n\r\n").encode())
        for _ in range(4):  # 64 KiB, 8 times the limit, and no last chunk
            sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
        started = time.monotonic()
        answer = _read_answer(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - started < 8

        # 3. At the limit, accepted.
        body = delivery_body("big", 1)[0]
        body = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
        assert len(body) == LIMIT
        assert stack.post_delivery(channel, body).status_code == 200
        engine = db_engine(database_url)
        assert scalar(engine, "SELECT count(*) FROM deliveries") == 1
        engine.dispose()


# -- the admin API ------------------------------------------------------------------------------

def test_admin_api_refuses_text_it_cannot_store(admin, bc):
    channel = bc.create()
    for body in ({"channel_id": channel["id"], "channel_order_id": "a\x00b"},
                 {"channel_id": channel["id"], "channel_order_id": "\ud800"},
                 {"channel_id": channel["id"], "channel_order_id": "x",
                  "customer": {"name": "\x00"}}):
        raw = json.dumps(body).encode()
        response = admin.request("POST", "/orders", data=raw,
                                 content_type="application/json")
        assert response.status_code == 422, response.get_json()
    for path in ("/orders?channel_order_id=a%00b", "/deliveries?channel_order_id=%00"):
        assert admin.request("GET", path).status_code == 422
    nested = admin.request("POST", "/orders", data=b"[" * 100_000,
                           content_type="application/json")
    assert nested.status_code in (400, 422), nested.get_data()[:200]
    assert admin.request("PATCH", f"/channels/{channel['id']}",
                         json={"name": "a\x00"}).status_code == 422


def test_schemathesis_finds_no_server_error_and_no_schema_violation(database_url, tmp_path):
    """schemathesis (examples, coverage, fuzzing and stateful phases) against the live admin API
    behind gunicorn on loopback, with the bearer token."""
    command = shutil.which("schemathesis") or shutil.which("st")
    if command is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    with Stack(database_url, tmp_path / "live") as stack:
        stack.start_standin()
        stack.start_web(workers=2)
        channel = stack.create_channel("fuzzed")
        stack.create_order(channel["id"], 1)
        stack.post_delivery(channel, delivery_body("fuzzed", 1)[0])
        result = subprocess.run(
            [command, "run", f"{stack.web_url}/api/v1/openapi.json",
             "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                         "response_schema_conformance,response_headers_conformance",
             "--max-examples", "10", "--workers", "1", "--seed", "4", "--request-timeout", "20",
             "--suppress-health-check", "all", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=400,
            env={**stack.env, "PYTHONPATH": ""})
        summary = result.stdout[-4000:]
        print(summary)
        assert result.returncode == 0, summary + result.stderr[-2000:]
        assert "passed" in summary
        web_log = "\n".join(stack.web.log_lines())
        assert "http.unexpected_error" not in web_log
