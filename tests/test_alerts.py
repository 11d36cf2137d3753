"""Email alerts through a real SMTP server (aiosmtpd on loopback): what is mailed, to whom, when
it is not, and a mail server that refuses or hangs (retried; the worker goes on)."""
from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import socket
import threading
import time

import pytest
import responses
from aiosmtpd.controller import Controller
from sqlalchemy import select

from core import alerts
from core.config import ConfigError
from core.models import Alert, StoredDelivery
from core.subscriptions import check_all
from core.worker import Worker
from tests.conftest import BC_STORE, log_records
from tests.shopify_helpers import app_uninstalled
from tests.shopify_helpers import shopify  # noqa: F401  (fixture)

HOOKS = f"{BC_STORE}/v3/hooks"
OPS = "ops@example.com"
STORE_OWNER = "owner@store.example"
SMTP_PASSWORD = "s3cret-smtp-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailHandler:
    """The SMTP server's mailbox; ``refuse`` holds answers to give instead of accepting (one per
    mail, in turn): "421 ..." or "550 ..."."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.refuse: list[str] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse.pop(0)
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(
            envelope.content, policy=email.policy.default)))
        self.received.set()
        return "250 OK"


@pytest.fixture
def smtp():
    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.url = f"smtp://127.0.0.1:{controller.port}"
    yield handler
    controller.stop()


@pytest.fixture
def app_config(app_config, smtp):
    return {**app_config, "SMTP_URL": smtp.url, "ALERT_EMAILS": OPS,
            "ALERT_FROM": "orderhooks@example.com", "ALERT_RETRY_SECONDS": 0.2,
            "SMTP_TIMEOUT_SECONDS": 2.0}


@pytest.fixture
def sender(app):
    return alerts.Sender(app)


def rows(app) -> list[Alert]:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.scalars(select(Alert).order_by(Alert.id)).all()


def tried(client, kind: str, result: str) -> float:
    """``orderhooks_alerts_total{kind, result}`` as /metrics shows it."""
    from prometheus_client.parser import text_string_to_metric_families
    text = client.get("/metrics").get_data(as_text=True)
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "orderhooks_alerts_total"
               and sample.labels == {"kind": kind, "result": result})


def body(message) -> str:
    return message.get_body(("plain",)).get_content()


# -- what is mailed, to whom -------------------------------------------------------------------


def test_a_subscription_check_is_summarised_in_one_mail_to_global_and_channel_recipients(
        bc, admin, app, smtp, sender):
    channel = bc.create()
    admin.patch(f"/channels/{channel['id']}", {"alert_emails": [STORE_OWNER]})
    # the creation's check subscribed the hook: one summary, queued with the channel
    [created] = rows(app)
    assert created.kind == "subscription.check" and created.status == "pending"
    assert sender.send_due() == 1
    [(to, message)] = smtp.messages
    assert to == [OPS]  # the channel's own address came after the creation's check
    assert message["From"] == "orderhooks@example.com"
    assert message["Subject"] == (f"[orderhooks] Subscriptions of bigcommerce channel "
                                  f"'bigcommerce test store' (id {channel['id']}): 1 active")
    assert "store/order/statusUpdated: created: subscribed to" in body(message)
    assert rows(app)[0].status == "sent" and rows(app)[0].sent_at is not None

    # nothing changed: no mail, however often the check runs
    check_all(app)
    check_all(app)
    assert len(rows(app)) == 1

    # the channel's API fails: one summary naming the failing topic, to both recipients...
    api = bc.api
    api.replace(responses.GET, HOOKS, status=500, json={"title": "Internal Server Error"})
    check_all(app)
    check_all(app)  # ...and not again while it fails the same way
    assert sender.send_due() == 1
    to, message = smtp.messages[-1]
    assert to == [OPS, STORE_OWNER]
    assert message["Subject"].endswith("1 failing")
    assert "store/order/statusUpdated" in body(message) and "500" in body(message)

    # repaired: one more summary, saying so
    api.replace(responses.CallbackResponse(responses.GET, HOOKS, callback=bc._list_hooks))
    check_all(app)
    check_all(app)
    assert sender.send_due() == 1
    assert len(smtp.messages) == 3
    to, message = smtp.messages[-1]
    assert "repaired, all 1 active" in message["Subject"]
    assert "Failing before, active now: store/order/statusUpdated" in body(message)


def test_a_hook_the_check_recreates_is_news(bc, app, smtp, sender):
    bc.create()
    sender.send_due()
    bc.hooks.clear()  # someone deleted it at the channel
    check_all(app)
    assert sender.send_due() == 1
    assert "recreated" in body(smtp.messages[-1][1])


def test_deleting_a_channel_mails_that_its_hooks_are_removed(bc, admin, app, smtp, sender):
    channel = bc.create()
    admin.request("DELETE", f"/channels/{channel['id']}", expect=200)
    assert bc.hooks == {}
    assert sender.send_due() == 2
    message = smtp.messages[-1][1]
    assert message["Subject"].endswith("none left (1 removed)")
    assert "store/order/statusUpdated: deleted: the channel is inactive" in body(message)


def test_the_channel_deactivated_by_an_uninstall_is_mailed(shopify, admin, worker, app, smtp,
                                                          sender):
    channel = shopify.create()
    shopify.uninstall()
    assert shopify.send("app/uninstalled", app_uninstalled()).status_code == 200
    worker.run_until_idle()
    [alert] = [a for a in rows(app) if a.kind == "channel.deactivated"]
    assert alert.channel_id == channel["id"]
    sender.send_due()
    subjects = [m["Subject"] for _to, m in smtp.messages]
    assert f"[orderhooks] The shopify channel 'shopify test store' (id {channel['id']}) was " \
           "deactivated" in subjects
    message = next(m for _to, m in smtp.messages if "deactivated" in m["Subject"])
    assert "uninstalled" in body(message)


class TestDeadDeliveries:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "MAX_ATTEMPTS": 1, "WORKER_BATCH": 1, "ALERT_BATCH_SECONDS": 2}

    def test_deliveries_gone_dead_are_mailed_in_one_batch_per_channel(self, bc, admin, app,
                                                                       worker, smtp, sender):
        channel = bc.create()
        sender.send_due()  # the subscription summary
        for order_id in (250, 251, 252):
            bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/{order_id}", status=500,
                          json={"title": "down"})
            assert bc.send(order_id=order_id).status_code == 200
        assert worker.run_until_idle() == 3  # three batches, three transactions
        dead = admin.get(f"/deliveries?channel_id={channel['id']}&outcome=dead")
        assert len(dead) == 3
        [batch] = [a for a in rows(app) if a.kind == "deliveries.dead"]
        assert batch.details["count"] == 3
        assert sender.send_due() == 0  # still collecting
        time.sleep(2.1)
        assert sender.send_due() == 1
        to, message = smtp.messages[-1]
        assert to == [OPS]
        assert message["Subject"].startswith("[orderhooks] 3 deliveries of the bigcommerce")
        text = body(message)
        assert "Deliveries: " + ", ".join(str(d["id"]) for d in reversed(dead)) in text
        assert "HTTP 500" in text and "outcome=dead" in text
        # a later one starts a new batch: the one mailed is not changed afterwards
        bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/253", status=500, json={})
        bc.send(order_id=253)
        worker.run_until_idle()
        batches = [a for a in rows(app) if a.kind == "deliveries.dead"]
        assert [b.details["count"] for b in batches] == [3, 1]
        assert batches[0].status == "sent"


def test_worker_once_mails_the_alerts_due(bc, app, smtp):
    from core.cli import main as cli
    for _ in range(12):  # more than one claim's worth
        bc.create()
    result = app.test_cli_runner().invoke(cli, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 12
    assert {a.status for a in rows(app)} == {"sent"}


class TestWorkerDyingOnADelivery:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "MAX_ATTEMPTS": 1}

    def test_a_delivery_whose_worker_never_finishes_goes_dead_with_its_alert(self, bc, app,
                                                                          smtp, sender):
        from datetime import timedelta

        from core.clock import utcnow
        channel = bc.create()
        sender.send_due()
        response = bc.send(order_id=250)
        crashed, rescuer = Worker(app, name="crashed"), Worker(app, name="rescuer")
        assert crashed.claim() == [response.get_json()["delivery_id"]]
        with app.extensions["orderhooks.db"].session() as session:  # its lease runs out
            session.get(StoredDelivery, response.get_json()["delivery_id"]).claimed_until = \
                utcnow() - timedelta(seconds=1)
        assert rescuer.claim() == []  # dead, not claimed again
        [batch] = [a for a in rows(app) if a.kind == "deliveries.dead"]
        assert batch.channel_id == channel["id"] and batch.details["count"] == 1
        assert batch.details["delivery_ids"] == [response.get_json()["delivery_id"]]
        assert "stopped before finishing" in batch.body


def test_an_alert_the_server_cannot_take_does_not_hold_up_the_others(app, smtp, sender):
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        named = alerts.queue(session, "endpoint.disabled", "Endpoint 'a\r\nBcc: x@evil.example'"
                             " disabled", "body")
        broken = alerts.queue(session, "endpoint.disabled", "Unsendable", "body")
        broken.recipients = ["not an address\r\n"]
        fine = alerts.queue(session, "endpoint.disabled", "Fine", "body")
    assert named.subject == "[orderhooks] Endpoint 'a Bcc: x@evil.example' disabled"
    assert sender.send_due() == 3
    by_id = {a.id: a for a in rows(app)}
    assert by_id[named.id].status == "sent" and by_id[fine.id].status == "sent"
    assert by_id[broken.id].status == "pending"
    assert by_id[broken.id].last_error.startswith("cannot be mailed: ValueError")
    assert [to for to, _m in smtp.messages] == [[OPS], [OPS]]
    assert "Bcc" not in smtp.messages[0][1]


def test_any_module_queues_an_alert_in_its_own_transaction(app, smtp, sender):
    db = app.extensions["orderhooks.db"]
    with pytest.raises(RuntimeError), db.session() as session:
        alerts.queue(session, "endpoint.disabled", "Endpoint 3 disabled", "rolled back")
        raise RuntimeError("the change fails: its alert goes with it")
    assert rows(app) == []
    with db.session() as session:
        alert = alerts.queue(session, "endpoint.disabled", "Endpoint 3 disabled",
                             "It failed for 5 days.")
    assert alert.id and sender.send_due() == 1
    [(to, message)] = smtp.messages
    assert to == [OPS] and message["Subject"] == "[orderhooks] Endpoint 3 disabled"
    assert body(message).strip() == "It failed for 5 days."


# -- a mail server that refuses, hangs, or is not configured -----------------------------------


def test_a_refused_alert_is_retried_with_backoff_until_it_is_sent(bc, app, smtp, sender,
                                                                  admin, client):
    smtp.refuse = ["421 4.3.2 try again later", "550 5.7.1 not now"]
    failed_before = tried(client, "subscription.check", "failed")
    sent_before = tried(client, "subscription.check", "sent")
    bc.create()
    assert sender.send_due() == 1
    [alert] = rows(app)
    assert alert.status == "pending" and alert.attempts == 1 and "421" in alert.last_error
    assert sender.send_due() == 0  # not due before its backoff (0.2 s)
    time.sleep(0.25)
    assert sender.send_due() == 1
    [alert] = rows(app)
    assert alert.attempts == 2 and "550" in alert.last_error
    first_wait = 0.2
    assert (alert.next_attempt_at - alert.created_at).total_seconds() >= first_wait * 2
    time.sleep(0.45)
    assert sender.send_due() == 1
    assert len(smtp.messages) == 1
    [listed] = admin.get("/alerts")
    assert listed["status"] == "sent" and listed["attempts"] == 3
    assert tried(client, "subscription.check", "failed") == failed_before + 2
    assert tried(client, "subscription.check", "sent") == sent_before + 1
    assert listed["last_error"] is None and listed["recipients"] == [OPS]


class TestGivingUp:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "ALERT_GIVE_UP_SECONDS": 1}

    def test_an_alert_never_accepted_is_given_up_with_its_reason(self, bc, app, smtp, sender,
                                                                 admin):
        smtp.refuse = ["554 5.7.1 relay denied"] * 10
        bc.create()
        sender.send_due()
        time.sleep(1.05)
        sender.send_due()
        [listed] = admin.get("/alerts?status=failed")
        assert listed["attempts"] == 2
        assert listed["last_error"].startswith("given up after 2 attempts")
        assert "554" in listed["last_error"]
        time.sleep(0.5)
        assert sender.send_due() == 0 and smtp.messages == []


class TestHangingServer:
    @pytest.fixture
    def hanging(self):
        """A server that accepts connections and never says a word."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            yield f"smtp://127.0.0.1:{listener.getsockname()[1]}"

    @pytest.fixture
    def app_config(self, app_config, hanging):
        return {**app_config, "SMTP_URL": hanging, "SMTP_TIMEOUT_SECONDS": 3.0,
                "WORKER_IDLE_SECONDS": 0.05}

    def test_the_worker_applies_deliveries_while_the_mail_server_hangs(self, bc, app, admin,
                                                                       make_order):
        channel = bc.create()  # queues a subscription summary
        order = make_order(channel["id"], 250, "AWAITING_SHIPMENT")
        bc.order(250, status_id=5)
        worker = Worker(app, name="hanging-mail")
        thread = threading.Thread(target=worker.run_forever)
        thread.start()
        try:
            deadline = time.monotonic() + 1.5
            while rows(app)[0].status != "sending" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert rows(app)[0].status == "sending"  # the sender is stuck in the greeting
            started = time.monotonic()
            assert bc.send(order_id=250, new_status=5).status_code == 200
            while (admin.get(f"/orders/{order['id']}")["status"] != "CANCELLED"
                   and time.monotonic() - started < 2.5):
                time.sleep(0.02)
            assert admin.get(f"/orders/{order['id']}")["status"] == "CANCELLED"
            assert rows(app)[0].status == "sending"  # applied while the mail still hangs
            deadline = time.monotonic() + 5
            while rows(app)[0].attempts < 1 or rows(app)[0].status == "sending":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            [alert] = rows(app)
            assert alert.status == "pending"
            assert alert.last_error.endswith("did not answer within 3 s")
        finally:
            worker.stopping.set()
            thread.join(10)
        assert not thread.is_alive()


class TestCredentials:
    @pytest.fixture
    def app_config(self, app_config, smtp):
        url = smtp.url.replace("smtp://", f"smtp://alerts%40example.com:{SMTP_PASSWORD}@")
        return {**app_config, "SMTP_URL": url}

    def test_a_password_is_never_sent_in_the_clear_nor_shown(self, bc, app, client, smtp,
                                                             sender, admin):
        bc.create()
        with log_records("orderhooks.alerts") as records:
            assert sender.send_due() == 1
        assert smtp.messages == []  # the server offers no STARTTLS: nothing sent
        [listed] = admin.get("/alerts")
        assert "offers no STARTTLS" in listed["last_error"]
        assert records and "offers no STARTTLS" in records[0].error
        shown = json.dumps(listed) + json.dumps(admin.get("/channels"))
        shown += "".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in records)
        shown += client.get("/metrics").get_data(as_text=True)
        shown += json.dumps(client.get("/api/v1/openapi.json").get_json())
        assert SMTP_PASSWORD not in shown


class TestNotConfigured:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "SMTP_URL": "", "MAX_ATTEMPTS": 1}

    def test_without_a_mail_server_nothing_is_queued_or_sent_and_nothing_fails(
            self, bc, app, admin, worker, smtp, sender):
        channel = bc.create()
        admin.patch(f"/channels/{channel['id']}", {"alert_emails": [STORE_OWNER]})
        bc.api.replace(responses.GET, HOOKS, status=500, json={})
        check_all(app)
        bc.api.upsert(responses.GET, f"{BC_STORE}/v2/orders/250", status=500, json={})
        bc.send(order_id=250)
        assert worker.run_until_idle() == 1
        with app.extensions["orderhooks.db"].Session() as session:
            assert session.scalars(select(StoredDelivery.outcome)).all() == ["dead"]
        assert rows(app) == [] and admin.get("/alerts") == []
        assert sender.send_due() == 0 and sender.start() is None
        assert smtp.messages == []


class TestNoRecipients:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "ALERT_EMAILS": ""}

    def test_only_channels_with_recipients_get_alerts(self, bc, admin, app, smtp, sender):
        channel = bc.create()
        assert rows(app) == []  # nobody to tell
        admin.patch(f"/channels/{channel['id']}", {"alert_emails": [STORE_OWNER]})
        bc.hooks.clear()
        check_all(app)
        assert sender.send_due() == 1
        assert smtp.messages[0][0] == [STORE_OWNER]


# -- settings ----------------------------------------------------------------------------------


def test_channel_alert_emails_are_checked_and_kept_in_the_edit_history(bc, admin, client):
    channel = bc.create()
    assert channel["alert_emails"] == []
    changed = admin.patch(f"/channels/{channel['id']}",
                          {"alert_emails": [STORE_OWNER, "b@example.com", STORE_OWNER]})
    assert changed["alert_emails"] == [STORE_OWNER, "b@example.com"]
    history = admin.get(f"/channels/{channel['id']}/history")
    assert history[-1]["field"] == "alert_emails"
    assert history[-1]["old_value"] == [] and history[-1]["new_value"] == changed["alert_emails"]
    refused = admin.patch(f"/channels/{channel['id']}", {"alert_emails": ["not an address"]},
                          expect=422)
    assert "'not an address' is not a mail address" in refused["message"]
    refused = admin.patch(f"/channels/{channel['id']}",
                          {"alert_emails": [f"a{i}@example.com" for i in range(21)]}, expect=422)
    assert "alert_emails" in refused["message"]
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "alert_emails" in schemas["BigcommerceChannelCreate"]["properties"]
    assert "alert_emails" in schemas["Channel"]["properties"]
    assert "alert_emails" in schemas["ChannelPatch"]["properties"]
    assert "/api/v1/alerts" in spec["paths"]


@pytest.mark.parametrize("setting, value, words", [
    ("SMTP_URL", f"http://user:{SMTP_PASSWORD}@mail.example.com", "ORDERHOOKS_SMTP_URL"),
    ("SMTP_URL", f"smtp://user:{SMTP_PASSWORD}@mail.example.com:x", "ORDERHOOKS_SMTP_URL"),
    ("SMTP_URL", f"smtp://user:{SMTP_PASSWORD}@mail.example.com/path", "no path"),
    ("ALERT_EMAILS", "ops@example.com, nobody", "'nobody' is not a mail address"),
    ("ALERT_FROM", "Orderhooks <a@example.com>", "ORDERHOOKS_ALERT_FROM"),
    ("SMTP_TIMEOUT_SECONDS", 0, "must be above 0"),
])
def test_unusable_settings_stop_start_up_without_showing_the_password(app_config, setting,
                                                                      value, words):
    from core import create_app
    with pytest.raises(ConfigError) as caught:
        create_app({**app_config, setting: value})
    assert words in str(caught.value)
    assert SMTP_PASSWORD not in str(caught.value)


# -- TLS: STARTTLS on smtp://, TLS from the start on smtps:// ----------------------------------


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE (read by the
    client's default TLS context, as the system's CAs are)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    return cert_file, key_file


def server_context(certificate):
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    return context


class Logins:
    """The server's AUTH check: one user and password; every attempt is kept."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.seen.append((login, password))
        # handled=False: the server answers the refusal itself (535)
        return AuthResult(success=(login, password) == ("alerts@example.com", SMTP_PASSWORD),
                          handled=False)


class TestStartTLS:
    @pytest.fixture
    def tls_smtp(self, certificate):
        handler, logins = MailHandler(), Logins()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                                tls_context=server_context(certificate), require_starttls=True,
                                authenticator=logins, auth_required=True)
        controller.start()
        handler.logins = logins
        handler.url = (f"smtp://alerts%40example.com:{SMTP_PASSWORD}@127.0.0.1:"
                       f"{controller.port}")
        yield handler
        controller.stop()

    @pytest.fixture
    def app_config(self, app_config, tls_smtp):
        return {**app_config, "SMTP_URL": tls_smtp.url}

    def test_smtp_url_upgrades_with_starttls_then_logs_in(self, bc, app, tls_smtp, sender):
        bc.create()
        assert sender.send_due() == 1
        assert tls_smtp.logins.seen == [("alerts@example.com", SMTP_PASSWORD)]
        [(to, message)] = tls_smtp.messages
        assert to == [OPS] and "Subscriptions of" in message["Subject"]
        assert rows(app)[0].status == "sent"

    def test_a_refused_login_is_recorded_and_retried(self, bc, app, tls_smtp, sender,
                                                     monkeypatch):
        bc.create()
        settings = app.extensions[alerts.INFO_KEY]
        wrong = dataclasses.replace(settings.server, password="wrong-password")
        monkeypatch.setattr(sender, "settings", dataclasses.replace(settings, server=wrong))
        assert sender.send_due() == 1
        assert ("alerts@example.com", "wrong-password") in tls_smtp.logins.seen
        [alert] = rows(app)
        assert alert.status == "pending" and "535" in alert.last_error
        assert "wrong-password" not in alert.last_error and tls_smtp.messages == []


class TestImplicitTLS:
    @pytest.fixture
    def tls_smtp(self, certificate):
        handler, logins = MailHandler(), Logins()
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                                ssl_context=server_context(certificate),
                                authenticator=logins, auth_required=True,
                                auth_require_tls=False)  # TLS from the start: it is TLS
        controller.start()
        handler.logins = logins
        handler.port = controller.port
        yield handler
        controller.stop()

    @pytest.fixture
    def app_config(self, app_config, tls_smtp):
        return {**app_config, "SMTP_URL": (f"smtps://alerts%40example.com:{SMTP_PASSWORD}@"
                                           f"127.0.0.1:{tls_smtp.port}")}

    @pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
    def test_smtps_url_speaks_tls_from_the_start(self, bc, app, tls_smtp, sender):
        bc.create()
        assert sender.send_due() == 1
        assert tls_smtp.logins.seen == [("alerts@example.com", SMTP_PASSWORD)]
        [(to, message)] = tls_smtp.messages
        assert to == [OPS] and rows(app)[0].status == "sent"
