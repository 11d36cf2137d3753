"""Outbound webhooks against real HTTP receivers on loopback: endpoints in the admin API, signed
POSTs (Standard Webhooks), retries, order per order, disabling, every attempt recorded."""
from __future__ import annotations

import json
import random
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core import events, fanout
from core.clock import utcnow
from core.config import retry_schedule
from core.models import Event, WebhookEndpoint, WebhookMessage
from core.sender import RESPONSE_SLICE, Sender
from core.testing.fixtures import test_database_url
from tests.webhook_receiver import Receiver


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
            "WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3", "WEBHOOK_TIMEOUT_SECONDS": 1.0}


@pytest.fixture
def sender(app):
    found = Sender(app, "test")
    yield found
    found.pool.shutdown(wait=False, cancel_futures=True)


def endpoint(admin, url, **fields):
    return admin.post("/webhook-endpoints", {"url": url, **fields})


def write(app, type="order.cancelled", order=1, channel_id=1, **data) -> str:
    with app.extensions["orderhooks.db"].session() as session:
        return events.emit(session, type, {"order": {"id": order}, **data},
                           channel_id=channel_id, order_key=f"order:{order}").event_id


def drain(sender, seconds: float = 5.0, until=lambda: False):
    """Run the sender until ``until()`` holds or ``seconds`` pass (retries come due meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.run_until_idle()
        if until():
            return
        time.sleep(0.05)


def bodies(receiver, path="/ok") -> list[dict]:
    return [json.loads(r.body) for r in receiver.at(path)]


# -- endpoints in the admin API ---------------------------------------------------------------

def test_the_secret_is_shown_once_and_signs_what_the_receiver_verifies(app, admin, receiver,
                                                                       sender):
    created = endpoint(admin, receiver.url())
    assert created["secret"].startswith("whsec_")
    assert "secret" not in admin.get(f"/webhook-endpoints/{created['id']}")
    assert "secret" not in admin.get("/webhook-endpoints")[0]
    event_id = write(app, reason="cancelled")
    assert sender.run_until_idle() == 1
    [got] = receiver.at("/ok")
    payload = Webhook(created["secret"]).verify(got.body, got.headers)
    assert payload["id"] == event_id == got.headers["webhook-id"]
    assert payload["type"] == "order.cancelled" and payload["data"]["reason"] == "cancelled"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(got.body, got.headers)
    [attempt] = admin.get(f"/webhook-endpoints/{created['id']}/attempts")
    assert attempt["status_code"] == 204 and attempt["latency_ms"] > 0
    [message] = admin.get(f"/webhook-endpoints/{created['id']}/messages")
    assert message["state"] == "delivered" and message["event_id"] == event_id


def test_an_endpoint_gets_the_events_written_after_its_creation(app, admin, receiver, sender):
    write(app)
    endpoint(admin, receiver.url())
    later = write(app)
    sender.run_until_idle()
    assert [b["id"] for b in bodies(receiver)] == [later]


@pytest.mark.parametrize("url, words", [
    ("http://example.com/hooks", "ORDERHOOKS_ALLOWED_WEBHOOK_URLS"),
    ("https://user:pw@example.com/hooks", "user name or password"),
    ("https://example.com/hooks?token=1", "query"),
    ("ftp://example.com/hooks", "http(s)"),
    ("not a url", "not a URL"),
])
def test_urls_follow_the_outgoing_request_rules(admin, url, words):
    response = admin.request("POST", "/webhook-endpoints", json={"url": url})
    assert response.status_code == 422
    assert words in response.get_json()["message"]
    assert "pw" not in response.get_json()["message"]


def test_https_urls_need_no_allowance(admin):
    assert endpoint(admin, "https://routing.example.com/hooks")["enabled"] is True


def test_bad_fields_answer_422_naming_them(admin):
    response = admin.request("POST", "/webhook-endpoints", json={
        "url": "https://x.example.com", "event_types": ["order.exploded"], "colour": "red"})
    assert response.status_code == 422
    details = response.get_json()["details"]["json"]
    assert "event_types" in details and "colour" in details


def test_types_and_channels_filter_what_is_sent(app, admin, receiver, sender):
    endpoint(admin, receiver.url(), event_types=["order.shipped"], channel_ids=[2])
    write(app, "order.shipped", channel_id=1)
    wanted = write(app, "order.shipped", channel_id=2)
    write(app, "order.cancelled", channel_id=2)
    sender.run_until_idle()
    assert [b["id"] for b in bodies(receiver)] == [wanted]


def test_edit_with_a_stale_etag_is_412_and_delete_is_204(admin, client, receiver):
    created = endpoint(admin, receiver.url())
    path = f"/api/v1/webhook-endpoints/{created['id']}"
    etag = client.get(path, headers=admin.headers).headers["ETag"]
    admin.patch(f"/webhook-endpoints/{created['id']}", {"description": "routing"})
    stale = client.patch(path, json={"enabled": False},
                         headers={**admin.headers, "If-Match": etag})
    assert stale.status_code == 412
    assert client.delete(path, headers=admin.headers).status_code == 204
    assert client.get(path, headers=admin.headers).status_code == 404


def test_deleting_an_endpoint_deletes_its_messages_and_attempts_only(app, admin, client,
                                                                     receiver, sender):
    from sqlalchemy import func, select
    from core.models import Event, WebhookAttempt, WebhookMessage
    kept, gone = (endpoint(admin, receiver.url())["id"] for _ in range(2))
    write(app, order=1)
    write(app, order=2)
    drain(sender, until=lambda: len(bodies(receiver)) >= 4)

    def counts(endpoint_id):
        with app.extensions["orderhooks.db"].Session() as session:
            return tuple(session.scalar(select(func.count()).select_from(model).where(
                model.endpoint_id == endpoint_id)) for model in (WebhookMessage, WebhookAttempt))

    assert counts(gone) == (2, 2) and counts(kept) == (2, 2)
    assert client.delete(f"/api/v1/webhook-endpoints/{gone}",
                         headers=admin.headers).status_code == 204
    assert counts(gone) == (0, 0)
    assert counts(kept) == (2, 2)  # the other endpoint's, and the events, stay
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) >= 2
    assert admin.get(f"/webhook-endpoints/{kept}/messages")


# -- retries, order, failures -----------------------------------------------------------------

def test_a_failing_message_is_retried_and_later_events_of_its_order_wait(app, admin, receiver,
                                                                        sender):
    created = endpoint(admin, receiver.url())
    first = write(app, order=1)
    second = write(app, order=1)
    other = write(app, order=2)
    receiver.refused.add(first)
    sender.run_until_idle()
    # first failed; the other order's event went meanwhile (its own lane, so either may
    # arrive first); order 1's second waits for first
    assert sorted(b["id"] for b in bodies(receiver)) == sorted([first, other])
    time.sleep(0.5)
    sender.run_until_idle()  # first fails again, second still waits
    assert [b["id"] for b in bodies(receiver)][2:] == [first]
    receiver.refused.clear()
    drain(sender, until=lambda: second in [b["id"] for b in bodies(receiver)])
    # the second event of order 1 reached the receiver only after the first got through
    assert [b["id"] for b in bodies(receiver)][-2:] == [first, second]
    attempts = admin.get(f"/webhook-endpoints/{created['id']}/attempts")
    in_turn = list(reversed(attempts))
    assert sorted(a["status_code"] for a in in_turn[:2]) == [204, 500]
    assert [a["status_code"] for a in in_turn[2:]] == [500, 204, 204]
    assert {a["status_code"]: a["response_body"] for a in in_turn[:2]} == {500: "answer 500",
                                                                          204: ""}
    assert all("HTTP 500" in a["error"] for a in attempts if a["status_code"] == 500)
    assert admin.get(f"/webhook-endpoints/{created['id']}")["failing_since"] is None
    assert {m["state"] for m in admin.get(f"/webhook-endpoints/{created['id']}/messages")} == {
        "delivered"}


def test_retries_run_out_then_the_message_is_failed_and_can_be_resent(app, admin, receiver,
                                                                      sender):
    created = endpoint(admin, receiver.url("/down"))
    receiver.behave("/down", "500")
    write(app)
    base = f"/webhook-endpoints/{created['id']}"
    drain(sender, until=lambda: admin.get(f"{base}/messages")[0]["state"] == "failed")
    [message] = admin.get(f"{base}/messages")
    assert message["state"] == "failed" and message["attempts"] == 4  # first try + 3 retries
    assert len(receiver.at("/down")) == 4
    receiver.behave("/down", "ok")
    resent = admin.post(f"{base}/messages/{message['id']}/resend", expect=202)
    assert resent["state"] == "pending"
    sender.run_until_idle()
    assert admin.get(f"{base}/messages")[0]["state"] == "delivered"
    assert admin.request("POST", f"{base}/messages/999/resend").status_code == 404


def test_recover_resends_the_failed_messages_of_a_window(app, admin, receiver, sender):
    created = endpoint(admin, receiver.url("/down"))
    base = f"/webhook-endpoints/{created['id']}"
    write(app, order=1)
    write(app, order=2)
    events.sequence(app.extensions["orderhooks.db"])
    sender._fan_out(created["id"])
    with app.extensions["orderhooks.db"].session() as session:
        for message in session.scalars(select(WebhookMessage)):
            message.state = "failed"
    since = (utcnow() - timedelta(minutes=1)).isoformat()
    assert admin.post(f"{base}/recover", {"since": since}, expect=202) == {"resent": 2}
    sender.run_until_idle()
    assert len(receiver.at("/down")) == 2
    assert admin.request("POST", f"{base}/recover", json={
        "since": since, "until": "2000-01-01T00:00:00Z"}).status_code == 422


def test_410_disables_the_endpoint_with_an_event(app, admin, receiver, sender):
    created = endpoint(admin, receiver.url("/gone"))
    receiver.behave("/gone", "410")
    write(app)
    sender.run_until_idle()
    detail = admin.get(f"/webhook-endpoints/{created['id']}")
    assert detail["enabled"] is False and "410" in detail["disabled_reason"]
    events.sequence(app.extensions["orderhooks.db"])
    with app.extensions["orderhooks.db"].Session() as session:
        disabled = session.scalars(select(Event).where(Event.type == "endpoint.disabled")).one()
    assert disabled.data["endpoint"]["id"] == created["id"]
    assert "secret" not in json.dumps(disabled.data)
    write(app)
    sender.run_until_idle()
    assert len(receiver.at("/gone")) == 1  # nothing more is sent to a disabled endpoint


@pytest.mark.parametrize("config_key", ["WEBHOOK_DISABLE_AFTER_SECONDS"])
def test_an_endpoint_failing_continuously_is_disabled(app, admin, receiver, sender, config_key):
    app.config[config_key] = 1
    # Six retries of 0.3 s (±20 % jitter) keep a message failing for at least 1.44 s, past the
    # 1 s limit; the fixture's three could all be spent in 0.72 s, leaving the endpoint enabled.
    sender.schedule = retry_schedule("0.3,0.3,0.3,0.3,0.3,0.3")
    created = endpoint(admin, receiver.url("/down"))
    receiver.behave("/down", "500")
    write(app, order=1)
    write(app, order=2)
    drain(sender, until=lambda: not admin.get(
        f"/webhook-endpoints/{created['id']}")["enabled"])
    detail = admin.get(f"/webhook-endpoints/{created['id']}")
    assert detail["enabled"] is False and "every attempt failed for 1 s" in \
        detail["disabled_reason"]
    # enabled again, it resumes: nothing written meanwhile is lost
    receiver.behave("/down", "ok")
    meanwhile = write(app, order=3)
    admin.patch(f"/webhook-endpoints/{created['id']}", {"enabled": True})
    drain(sender, until=lambda: meanwhile in [b["id"] for b in bodies(receiver, "/down")])
    assert meanwhile in [b["id"] for b in bodies(receiver, "/down")]


@pytest.mark.parametrize("mode, error", [
    ("hang", "no answer within 1 s"),
    ("reset", "ConnectionError"),
    ("redirect", "HTTP 302, a redirect: not followed"),
])
def test_hangs_resets_and_redirects_are_failed_attempts(app, admin, receiver, sender, mode,
                                                        error):
    from prometheus_client import REGISTRY
    created = endpoint(admin, receiver.url(f"/{mode}"))
    receiver.behave(f"/{mode}", mode)
    result = {"hang": "timeout", "reset": "error", "redirect": "3xx"}[mode]
    labels = {"endpoint": str(created["id"]), "result": result}
    counted = REGISTRY.get_sample_value("orderhooks_webhook_attempts_total", labels) or 0
    # one attempt, its retry a minute away: a loaded machine's slow round cannot make it due
    sender.schedule = retry_schedule("60")
    write(app)
    started = time.monotonic()
    sender.run_until_idle()
    assert time.monotonic() - started < 5
    [attempt] = admin.get(f"/webhook-endpoints/{created['id']}/attempts")
    assert error in attempt["error"]
    assert REGISTRY.get_sample_value("orderhooks_webhook_attempts_total", labels) == counted + 1
    assert receiver.at("/landing") == []  # the redirect was not followed
    [message] = admin.get(f"/webhook-endpoints/{created['id']}/messages")
    assert message["state"] == "pending" and message["attempts"] == 1


def test_a_5_mb_answer_is_read_no_further_than_its_start(app, admin, receiver, sender):
    created = endpoint(admin, receiver.url("/big"))
    receiver.behave("/big", "big")
    write(app)
    sender.run_until_idle()
    [attempt] = admin.get(f"/webhook-endpoints/{created['id']}/attempts")
    assert attempt["status_code"] == 200
    assert attempt["response_body"] == "x" * RESPONSE_SLICE


def test_a_slow_endpoint_does_not_hold_back_the_others(app, admin, sender):
    slow, fast = Receiver(slow_seconds=5.0), Receiver()
    try:
        endpoint(admin, slow.url("/slow"))
        slow.behave("/slow", "slow")
        app.config["WEBHOOK_TIMEOUT_SECONDS"] = 8.0
        sender.timeout = 8.0
        endpoint(admin, fast.url("/ok"))
        for n in range(3):
            write(app, order=n)
        started = time.monotonic()
        futures = sender.round()
        deadline = time.monotonic() + 10
        while len(fast.at("/ok")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fast.at("/ok")) == 3
        assert time.monotonic() - started < 3.5  # not after the slow one's 5 s answer
        # its three orders are sent side by side, not one 5 s answer after another
        while len(slow.at("/slow")) < 3 and time.monotonic() - started < 3.5:
            time.sleep(0.02)
        assert len(slow.at("/slow")) == 3
        for future in futures:
            future.result(timeout=30)
    finally:
        slow.stop()
        fast.stop()


def test_a_rotated_secret_signs_beside_the_old_one_until_its_overlap_ends(app, admin, receiver,
                                                                         sender):
    created = endpoint(admin, receiver.url())
    base = f"/webhook-endpoints/{created['id']}"
    rotated = admin.post(f"{base}/rotate-secret", {"overlap_seconds": 3600}, expect=200)
    assert rotated["secret"] != created["secret"]
    write(app)
    sender.run_until_idle()
    got = receiver.at("/ok")[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(created["secret"]).verify(got.body, got.headers)
    Webhook(rotated["secret"]).verify(got.body, got.headers)
    admin.post(f"{base}/rotate-secret", {"overlap_seconds": 0}, expect=200)
    write(app)
    sender.run_until_idle()
    got = receiver.at("/ok")[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(rotated["secret"]).verify(got.body, got.headers)


def test_a_backlog_is_delivered_in_order_when_the_endpoint_comes_back(app, admin, receiver,
                                                                      sender):
    endpoint(admin, receiver.url("/back"))
    receiver.behave("/back", "reset")
    written = [write(app, order=n % 5) for n in range(300)]
    sender.run_until_idle()
    receiver.behave("/back", "ok")
    drain(sender, seconds=20, until=lambda: len(
        {b["id"] for b in bodies(receiver, "/back")}) == 300)
    got = [b for b in bodies(receiver, "/back")]
    assert {b["id"] for b in got} == set(written)
    for n in range(5):  # per order: in the order written
        of_order = [b["id"] for b in got if b["data"]["order"]["id"] == n]
        firsts = list(dict.fromkeys(of_order))
        assert firsts == [w for i, w in enumerate(written) if i % 5 == n]


def test_a_whole_change_reaches_the_receiver(bc, api, make_order, worker, admin, receiver,
                                            sender):
    """A BigCommerce cancellation, through the worker, to the receiver."""
    api.add_passthru("http://127.0.0.1")  # the receiver is real; only the channel API is not
    created = endpoint(admin, receiver.url())
    channel = bc.create()
    order = make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    bc.send(order_id=250, new_status=5)
    worker.run_until_idle()
    sender.run_until_idle()
    [got] = receiver.at("/ok")
    payload = Webhook(created["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "order.cancelled"
    assert payload["data"]["order"]["id"] == order["id"]
    assert payload["data"]["order"]["status"] == "CANCELLED"


# -- metrics ------------------------------------------------------------------------------------

def scrape(client) -> dict:
    """Every sample /metrics shows: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_attempts_delivery_time_and_what_waits_per_endpoint(
        app, admin, client, receiver, sender):
    fine = str(endpoint(admin, receiver.url("/ok"))["id"])
    failing = str(endpoint(admin, receiver.url("/down"))["id"])
    receiver.behave("/down", "500")
    before = scrape(client)
    write(app, order=1)
    write(app, order=2)
    sender.run_until_idle()
    after = scrape(client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("orderhooks_webhook_attempts_total", endpoint=fine, result="2xx") == 2
    assert moved("orderhooks_webhook_attempts_total", endpoint=failing, result="5xx") >= 1
    assert moved("orderhooks_webhook_attempts_total", endpoint=failing, result="2xx") == 0
    assert moved("orderhooks_webhook_attempt_seconds_count", endpoint=fine) == 2
    assert moved("orderhooks_webhook_delivery_seconds_count", endpoint=fine) == 2
    assert moved("orderhooks_webhook_delivery_seconds_count", endpoint=failing) == 0
    gauge = "orderhooks_webhook_messages"
    assert after[(gauge, (("endpoint", fine), ("state", "pending")))] == 0
    assert after[(gauge, (("endpoint", failing), ("state", "pending")))] == 2
    assert after[("orderhooks_webhook_oldest_pending_seconds", (("endpoint", failing),))] > 0
    assert after[("orderhooks_webhook_oldest_pending_seconds", (("endpoint", fine),))] == 0
    # retries used up: the gauge moves them from pending to failed
    drain(sender, until=lambda: {m["state"] for m in admin.get(
        f"/webhook-endpoints/{failing}/messages")} == {"failed"})
    later = scrape(client)
    assert later[(gauge, (("endpoint", failing), ("state", "pending")))] == 0
    assert later[(gauge, (("endpoint", failing), ("state", "failed")))] == 2
    # a deleted endpoint reads 0, not what it had
    admin.request("DELETE", f"/webhook-endpoints/{failing}")
    gone = scrape(client)
    assert gone[(gauge, (("endpoint", failing), ("state", "failed")))] == 0


def test_an_endpoint_whose_every_message_waits_is_not_read_again_but_order_holds(
        app, admin, receiver, sender):
    """A scan that found every pending message held is remembered (the next scans read only
    newer messages); an attempt recorded meanwhile by another sender voids it, so a message
    that other sender re-sent and failed holds its order's later events here too."""
    created = endpoint(admin, receiver.url())
    base = f"/webhook-endpoints/{created['id']}"
    earlier = write(app, order=2)
    receiver.refused.add(earlier)
    drain(sender, until=lambda: admin.get(f"{base}/messages")[0]["state"] == "failed")
    other = Sender(app, "other")
    try:
        for s in (sender, other):
            s.schedule = [60.0, 60.0]
        first = write(app, order=1)
        receiver.refused.add(first)
        sender.run_until_idle()  # first fails: waits 60 s; nothing else to send
        assert created["id"] in sender._rests
        got = len(receiver.at("/ok"))
        [failed] = [m for m in admin.get(f"{base}/messages") if m["state"] == "failed"]
        admin.post(f"{base}/messages/{failed['id']}/resend", expect=202)
        other.run_until_idle()  # the re-sent one fails again there: it now holds order 2
        assert len(receiver.at("/ok")) == got + 1
        later = write(app, order=2)
        sender.run_until_idle()
        assert later not in [b["id"] for b in bodies(receiver)]
        newer = write(app, order=3)  # an order nothing holds goes at once
        sender.run_until_idle()
        assert newer in [b["id"] for b in bodies(receiver)]
    finally:
        other.pool.shutdown(wait=False, cancel_futures=True)


def messages_in_order(app, endpoint_id: int) -> list[tuple[int, int]]:
    """(event id, event position) of an endpoint's messages, in message id order."""
    with app.extensions["orderhooks.db"].Session() as session:
        return [tuple(row) for row in session.execute(
            select(WebhookMessage.event_id, Event.position).join(
                Event, Event.id == WebhookMessage.event_id)
            .where(WebhookMessage.endpoint_id == endpoint_id).order_by(WebhookMessage.id))]


def test_the_worker_makes_the_messages_in_the_batch_of_the_change(bc, api, make_order, worker,
                                                                  admin, receiver, sender, app):
    """The batch that cancels the order commits the event numbered and already a message of
    every endpoint up to date with the feed: the sender has only to POST it."""
    api.add_passthru("http://127.0.0.1")
    created = endpoint(admin, receiver.url(), event_types=["order.cancelled"])
    disabled = endpoint(admin, receiver.url("/off"))
    admin.patch(f"/webhook-endpoints/{disabled['id']}", {"enabled": False})
    channel = bc.create()
    make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    bc.send(order_id=250, new_status=5)
    worker.run_until_idle()
    [(event_id, position)] = messages_in_order(app, created["id"])
    assert position is not None
    assert messages_in_order(app, disabled["id"]) == []  # a disabled endpoint gets nothing
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.get(WebhookEndpoint, created["id"]).position == position
        assert session.get(Event, event_id).type == "order.cancelled"
    assert sender.run_until_idle() == 1
    assert messages_in_order(app, created["id"]) == [(event_id, position)]  # not made twice
    assert len(receiver.at("/ok")) == 1


def test_an_endpoint_far_behind_the_feed_is_caught_up_by_its_sender_in_feed_order(
        bc, api, make_order, worker, admin, receiver, sender, app, monkeypatch):
    """A batch never catches up an endpoint that is far behind (e.g. enabled again after a
    pause): the sender does, a page at a time, in feed order, each event once."""
    api.add_passthru("http://127.0.0.1")
    monkeypatch.setattr(fanout, "CAUGHT_UP", 3)
    created = endpoint(admin, receiver.url(), event_types=["order.cancelled"])
    written = [write(app, order=n) for n in range(5)]  # numbered by nobody yet
    channel = bc.create()
    make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    bc.send(order_id=250, new_status=5)
    worker.run_until_idle()  # numbers all six: the endpoint is six behind
    assert messages_in_order(app, created["id"]) == []
    sender.run_until_idle()
    made = messages_in_order(app, created["id"])
    positions = [p for _, p in made]
    assert len(made) == 6 and positions == sorted(set(positions))
    got = [b["id"] for b in bodies(receiver)]
    assert len(got) == 6 and set(written) < set(got)


@pytest.mark.skipif(not (test_database_url() or "").startswith("postgresql"),
                    reason="PostgreSQL only: SQLite serialises writers, so no two fan-outs "
                           "ever overlap there")
def test_workers_and_senders_fanning_out_at_once_make_each_message_once_in_feed_order(app,
                                                                                     admin):
    """Writers number and fan out in their own transactions (as the worker's batches do),
    committing after random delays, while sender threads fan out the same endpoints and other
    writers leave their events for them: every event becomes each endpoint's message exactly
    once, and an endpoint's messages are made in feed order."""
    db = app.extensions["orderhooks.db"]
    ids = [endpoint(admin, f"https://hooks{n}.example.com/in")["id"] for n in range(2)]
    written, errors = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(seed: int):
        rng = random.Random(seed)
        try:
            for _ in range(30):
                with db.session() as session:
                    batch = [events.emit(session, "order.cancelled", {"seed": seed},
                                         order_key=f"order:{seed}")
                             for _ in range(rng.randint(1, 3))]
                    session.flush()
                    time.sleep(rng.uniform(0, 0.01))
                    if rng.random() < 0.7:  # as the worker's batch; else left to the senders
                        fanout.fan_out_caught_up(session, events.number_events(session))
                        time.sleep(rng.uniform(0, 0.005))
                with lock:
                    written.extend(e.id for e in batch)
        except Exception as exc:  # noqa: BLE001 — reported by the assertion below
            errors.append(exc)

    def sender():
        try:
            while not stop.is_set():
                events.sequence(db)
                for endpoint_id in ids:
                    with db.session() as session:
                        fanout.fan_out(session, endpoint_id)
                time.sleep(random.uniform(0, 0.005))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    senders = [threading.Thread(target=sender) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(6)]
    for thread in senders + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in senders:
        thread.join(timeout=60)
    assert errors == []
    events.sequence(db)
    for endpoint_id in ids:
        with db.session() as session:
            fanout.fan_out(session, endpoint_id)
        made = messages_in_order(app, endpoint_id)
        assert sorted(e for e, _ in made) == sorted(written)  # each event once
        positions = [p for _, p in made]
        assert positions == sorted(positions)  # made in feed order
