"""The example third-party channel (tests/example_plugin, distribution ``orderhooks-manual``).

It is installed the way an operator installs a plugin — ``pip install`` of its own package, into
a directory of its own — and the app finds it through its ``orderhooks`` entry point alone:
nothing here passes it in ``PLUGINS`` or imports it before the app does.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from orderhooks.testing import (AdapterContract, StandardWebhooksSigner, delivery_count, json_body,
                          new_standard_webhooks_secret)

SOURCE = Path(__file__).parent / "example_plugin"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _pip_install(source: Path, target: Path) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-input", "--target", str(target)]
    # Offline first, with the build tools already installed (scripts/test installs ``wheel``);
    # an isolated build (which fetches setuptools and wheel) only if that is not possible.
    done = subprocess.run(base + ["--no-build-isolation", str(source)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run(base + [str(source)], capture_output=True, text=True)
    return done


@pytest.fixture(scope="session")
def manual_distribution(tmp_path_factory) -> Path:
    """``pip install --no-deps --target <tmp> tests/example_plugin``, once per session. Built
    from a copy, so the source tree gets no build/ or egg-info."""
    root = tmp_path_factory.mktemp("manual-plugin")
    source, target = root / "src", root / "site"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    done = _pip_install(source, target)
    if done.returncode != 0:
        pytest.fail(f"cannot install the example plugin:\n{done.stdout}\n{done.stderr}")
    assert (target / "orderhooks_manual" / "plugin.py").exists()
    return target


@pytest.fixture
def manual_installed(manual_distribution, monkeypatch) -> Path:
    """The installed example plugin on sys.path, for this test only."""
    monkeypatch.syspath_prepend(str(manual_distribution))
    return manual_distribution


@pytest.fixture
def app_config(app_config, manual_installed):
    assert "PLUGINS" not in app_config  # entry point only
    return app_config


@pytest.fixture
def manual(make_channel):
    def create(cancel=("AWAITING_SHIPMENT",), fulfill=("AWAITING_SHIPMENT",)):
        return make_channel("manual", {"signing_secret": SECRET}, cancel=cancel, fulfill=fulfill)
    return create


@pytest.fixture
def signer():
    return StandardWebhooksSigner(SECRET)


@pytest.fixture
def send(client, signer):
    def post(channel, payload, *, headers=None, body=None):
        body = json_body(payload) if body is None else body
        hdrs = {"Content-Type": "application/json", **signer.headers(body)}
        if headers is not None:
            hdrs = headers
        return client.post(f"/webhooks/manual/{channel['id']}", data=body, headers=hdrs)
    return post


# -- discovery -----------------------------------------------------------------------------------

def test_discovered_through_its_entry_point(app, admin, manual_installed):
    plugins = {p["name"]: p for p in admin.get("/plugins")}
    assert plugins["manual"] == {"name": "manual", "version": "0.1.0",
                                 "channel_types": ["manual"], "status": "loaded", "error": None}
    assert "manual" in app.extensions["orderhooks.channel_types"].types
    dist = metadata.distribution("orderhooks-manual")
    assert Path(str(dist.locate_file(""))).resolve() == manual_installed.resolve()
    assert [ep.value for ep in dist.entry_points if ep.group == "orderhooks"] == [
        "orderhooks_manual.plugin"]
    module = sys.modules["orderhooks_manual.plugin"]
    assert Path(module.__file__).resolve().is_relative_to(manual_installed.resolve())


def test_without_the_distribution_there_is_no_manual_channel(database_url):
    from core import create_app
    from core.testing import ADMIN_TOKEN, SECRET_KEY
    app = create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN,
                      "SECRET_KEY": SECRET_KEY, "TESTING": True, "LOG_LEVEL": "WARNING"})
    try:
        assert "manual" not in app.extensions["orderhooks.channel_types"]
        client = app.test_client()
        assert client.post("/webhooks/manual/1", data=b"{}").status_code == 404
        response = client.post("/api/v1/channels", headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}"}, json={
            "type": "manual", "name": "x", "credentials": {"signing_secret": SECRET}})
        assert response.status_code == 422
        assert "unknown channel type 'manual'" in response.get_json()["message"]
    finally:
        app.extensions["orderhooks.db"].dispose()


def test_cli_lists_it(app):
    from core.cli import main
    result = app.test_cli_runner().invoke(main, ["plugins", "--json"])
    assert result.exit_code in (0, 1), result.output  # 1 when another plugin failed
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["manual"]["version"] == "0.1.0"
    assert listed["manual"]["channel_types"] == ["manual"]


# -- end to end ----------------------------------------------------------------------------------

def test_cancelled_end_to_end(manual, make_order, send, worker, admin):
    channel = manual()
    assert channel["subscriptions"] == []  # the cart pushes; nothing to subscribe to
    order = make_order(channel["id"], "1001")
    response = send(channel, {"type": "order.cancelled", "order_id": "1001",
                              "reason": "customer asked"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    assert worker.run_until_idle() == 1
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "CANCELLED"
    assert [h["event"] for h in detail["history"]] == ["created", "cancelled"]
    delivery = admin.get(f"/deliveries/{response.get_json()['delivery_id']}")
    assert delivery["outcome"] == "applied" and delivery["topic"] == "order.cancelled"
    assert delivery["channel_order_id"] == "1001"
    assert delivery["dedupe_key"].startswith("webhook-id:msg_")


def test_fulfilled_end_to_end_with_shipments(manual, make_order, send, worker, admin):
    channel = manual()
    order = make_order(channel["id"], 1002)
    send(channel, {"type": "order.fulfilled", "order_id": 1002, "shipments": [
        {"id": "s1", "tracking_number": "1Z999", "carrier": "ups",
         "tracking_url": "https://ups.example/1Z999",
         "items": [{"sku": "ABC", "line_id": "7", "quantity": 2}]}]})
    worker.run_until_idle()
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "SHIPPED"
    assert detail["shipments"] == [{"shipment_id": "s1", "tracking_number": "1Z999",
                                    "carrier": "ups", "tracking_url": "https://ups.example/1Z999",
                                    "items": [{"sku": "ABC", "line_id": "7", "quantity": 2}]}]


def test_partial_fulfilment_records_shipments_only(manual, make_order, send, worker, admin):
    channel = manual()
    order = make_order(channel["id"], "1003")
    send(channel, {"type": "order.fulfilled", "order_id": "1003", "complete": False,
                   "shipments": [{"tracking_number": "P1"}]})
    worker.run_until_idle()
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "AWAITING_SHIPMENT"
    assert [s["tracking_number"] for s in detail["shipments"]] == ["P1"]


def test_status_rules_apply_to_third_party_channels_too(manual, make_order, send, worker,
                                                        admin):
    channel = manual(cancel=["AWAITING_SHIPMENT"])
    order = make_order(channel["id"], "1004", status="ON_HOLD")
    send(channel, {"type": "order.cancelled", "order_id": "1004"})
    worker.run_until_idle()
    assert admin.get(f"/orders/{order['id']}")["status"] == "ON_HOLD"
    assert "not a valid cancellation status" in admin.get("/deliveries")[0]["reason"]


def test_other_types_are_stored_and_ignored(manual, send, worker, admin):
    channel = manual()
    assert send(channel, {"type": "order.refunded", "order_id": "1"}).status_code == 200
    worker.run_until_idle()
    delivery = admin.get("/deliveries")[0]
    assert delivery["outcome"] == "ignored" and "order.refunded" in delivery["reason"]


ORDER = {"type": "order.created", "order_id": "2001", "order_number": "#2001", "paid": False,
         "placed_at": "2026-12-01T10:00:00Z", "currency": "EUR", "totals": {"total": "12.50"},
         "customer": {"id": "c7", "name": "Ana", "email": "ana@example.com"},
         "shipping_address": {"name": "Ana", "address1": "1 Rua", "city": "Porto",
                              "country_code": "PT"},
         "lines": [{"id": "l1", "sku": "ABC", "name": "Caneca", "quantity": 2,
                    "unit_price": "6.25"}]}


def test_a_third_party_channel_imports_orders_and_payments(manual, send, worker, admin):
    channel = manual()
    admin.patch(f"/channels/{channel['id']}", {"webhooks": ["order_creation", "order_payment",
                                                            "cancellation"]})
    send(channel, ORDER)
    worker.run_until_idle()
    [order] = admin.get(f"/orders?channel_id={channel['id']}")
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "AWAITING_PAYMENT" and detail["order_number"] == "#2001"
    assert detail["totals"] == {"total": "12.50"} and detail["currency"] == "EUR"
    assert detail["lines"][0]["unit_price"] == "6.25" and detail["lines"][0]["quantity"] == 2
    assert detail["shipping_address"]["city"] == "Porto"
    send(channel, {"type": "order.paid", "order_id": "2001", "amount": "12.50",
                   "currency": "EUR"})
    worker.run_until_idle()
    detail = admin.get(f"/orders/{order['id']}")
    assert detail["status"] == "UNPROCESSED"
    assert detail["payments"][0]["amount"] == "12.50"


def test_webhook_names_a_third_party_channel_does_not_offer_are_422(manual, admin):
    channel = manual()
    response = admin.request("PATCH", f"/channels/{channel['id']}",
                             json={"webhooks": ["product_update"]})
    assert response.status_code == 422
    assert "product_update" in response.get_json()["message"]


def test_retry_with_the_same_webhook_id_is_a_duplicate(manual, client, signer, app):
    channel = manual()
    body = json_body({"type": "order.cancelled", "order_id": "9"})
    headers = {"Content-Type": "application/json", **signer.headers(body, msg_id="msg_retry")}
    url = f"/webhooks/manual/{channel['id']}"
    first, second = client.post(url, data=body, headers=headers), client.post(
        url, data=body, headers=headers)
    assert second.get_json() == {"status": "duplicate",
                                 "delivery_id": first.get_json()["delivery_id"]}
    assert delivery_count(app) == 1


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "stale", "tampered"])
def test_unauthentic_deliveries_are_401(case, manual, send, app):
    channel = manual()
    body = json_body({"type": "order.cancelled", "order_id": "1"})
    other = StandardWebhooksSigner(new_standard_webhooks_secret())
    headers = {
        "unsigned": {"Content-Type": "application/json"},
        "wrong secret": other.headers(body),
        "stale": StandardWebhooksSigner(SECRET).headers(body, timestamp=1_000_000_000),
        "tampered": StandardWebhooksSigner(SECRET).headers(body + b" "),
    }[case]
    response = send(channel, None, body=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthenticated"
    assert delivery_count(app) == 0


def test_credentials_must_be_a_standard_webhooks_secret(make_channel):
    answer = make_channel("manual", {"signing_secret": "hunter2"}, expect=422)
    assert answer["error"] == "unprocessable_entity"  # as docs/plugins.md says
    assert answer["message"].startswith("invalid credentials: signing_secret")
    assert "signing_secret" in answer["details"]["credentials"]


# -- the contract --------------------------------------------------------------------------------

class TestManualContract(AdapterContract):
    channel_type = "manual"
    plugin_name = "manual"
    # (the module's app_config fixture puts the installed distribution on sys.path)

    @pytest.fixture
    def channel_credentials(self):
        return {"signing_secret": SECRET}

    @pytest.fixture
    def sign(self):
        signer = StandardWebhooksSigner(SECRET)
        return lambda channel, body: signer.headers(body)

    @pytest.fixture
    def valid_delivery(self, sign):
        def build(channel):
            body = json_body({"type": "order.cancelled", "order_id": "1001"})
            return body, {"Content-Type": "application/json", **sign(channel, body)}
        return build

    @pytest.fixture
    def order_delivery(self, sign):
        def build(channel):
            body = json_body(ORDER)
            return body, {"Content-Type": "application/json", **sign(channel, body)}
        return build
