"""What an unauthenticated or replaying sender can do at the intake, and what it cannot:

* a BigCommerce channel that has the app's client secret refuses every delivery without a valid
  Standard Webhooks signature (missing, empty, malformed, wrong, stale, or without its
  ``webhook-id`` / ``webhook-timestamp``) — leaving the signature out no longer skips the
  timestamp check;
* requests to made-up channel types and ids leave the server's state bounded: metric labels
  only from installed channel types, a size-bounded channel cache, no query for an id beyond
  reach of the highest channel id.
"""
from __future__ import annotations

import base64
import json
import random
import string
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select
from standardwebhooks.webhooks import Webhook

from core.channel_cache import MIN_REACH, ChannelCache
from core.models import SalesChannel, StoredDelivery

CLIENT_SECRET = "bc-client-secret-hardening"


def signed(body: bytes, when: datetime | None = None, secret: str = CLIENT_SECRET,
           msg_id: str = "msg_h1") -> dict:
    when = when or datetime.now(timezone.utc)
    hook = Webhook(base64.b64encode(secret.encode()).decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": hook.sign(msg_id, when, body.decode())}


def stored(app) -> int:
    with app.extensions["orderhooks.db"].Session() as session:
        return session.scalar(select(func.count()).select_from(StoredDelivery))


def assert_refused(response, status=401):
    assert response.status_code == status, (response.status_code, response.get_data())
    data = response.get_json()
    assert data["error"] == "unauthenticated" and data["message"], data
    return data


# -- Standard Webhooks: required once the channel can verify them -----------------------------

def _variant(name: str, body: bytes) -> dict | None:
    now = datetime.now(timezone.utc)
    headers = signed(body)
    if name == "unsigned":
        return None
    if name == "signature missing":
        del headers["webhook-signature"]
    elif name == "signature empty":
        headers["webhook-signature"] = ""
    elif name == "signature blank":
        headers["webhook-signature"] = "   "
    elif name == "signature malformed":
        headers["webhook-signature"] = "v1"
    elif name == "signature not base64":
        headers["webhook-signature"] = "v1,@@@"
    elif name == "signature of another version":
        headers["webhook-signature"] = "v2," + headers["webhook-signature"].split(",", 1)[1]
    elif name == "signature with another key":
        headers = signed(body, secret="another-client-secret")
    elif name == "signature of another body":
        headers = signed(body.replace(b"250", b"251"))
    elif name == "stale timestamp":
        headers = signed(body, when=now - timedelta(minutes=6))
    elif name == "400-day-old capture":
        headers = signed(body, when=now - timedelta(days=400))
    elif name == "future timestamp":
        headers = signed(body, when=now + timedelta(minutes=6))
    elif name == "timestamp missing":
        del headers["webhook-timestamp"]
    elif name == "timestamp not a number":
        headers["webhook-timestamp"] = "yesterday"
    elif name == "id missing":
        del headers["webhook-id"]
    elif name == "id empty":
        headers["webhook-id"] = ""
    elif name == "id changed":
        headers["webhook-id"] = "msg_other"
    else:
        raise AssertionError(name)
    return headers


VARIANTS = ["unsigned", "signature missing", "signature empty", "signature blank",
            "signature malformed", "signature not base64", "signature of another version",
            "signature with another key", "signature of another body", "stale timestamp",
            "400-day-old capture", "future timestamp", "timestamp missing",
            "timestamp not a number", "id missing", "id empty", "id changed"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_channel_with_a_client_secret_refuses_deliveries_without_a_valid_signature(
        bc, app, variant):
    bc.create(client_secret=CLIENT_SECRET)
    body = json.dumps(bc.payload(order_id=250)).encode()
    answer = assert_refused(bc.send(body=body, headers=_variant(variant, body)))
    assert "Standard Webhooks" in answer["message"]
    assert stored(app) == 0
    # The same delivery, validly signed now, is stored: only the signature was wrong.
    assert bc.send(body=body, headers=signed(body)).status_code == 200
    assert stored(app) == 1


def test_a_captured_delivery_cannot_be_replayed_by_dropping_its_signature(bc, app):
    """The attack: a delivery signed 400 days ago, sent again with its ``webhook-signature``
    left out (or empty) so that no timestamp is checked."""
    bc.create(client_secret=CLIENT_SECRET)
    body = json.dumps(bc.payload(order_id=250)).encode()
    capture = signed(body, when=datetime.now(timezone.utc) - timedelta(days=400))
    for signature in (None, ""):
        replay = dict(capture)
        if signature is None:
            del replay["webhook-signature"]
        else:
            replay["webhook-signature"] = signature
        answer = assert_refused(bc.send(body=body, headers=replay))
        assert "webhook-signature" in answer["message"]
    assert stored(app) == 0


def test_missing_headers_are_named_in_the_answer(bc):
    bc.create(client_secret=CLIENT_SECRET)
    answer = assert_refused(bc.send(order_id=250))
    assert ("webhook-id, webhook-timestamp, webhook-signature headers are missing"
            in answer["message"])


def test_a_channel_without_a_client_secret_still_takes_its_secret_header_alone(bc, app):
    bc.create()
    assert bc.send(order_id=250).status_code == 200
    assert stored(app) == 1


# -- state an unauthenticated sender can grow --------------------------------------------------

def _random_path(rng: random.Random, channel_id: int) -> str:
    kind = rng.random()
    channel_type = ("bigcommerce" if kind < 0.3 else
                    "".join(rng.choices(string.ascii_letters + string.digits,
                                        k=rng.randint(1, 24))))
    roll = rng.random()
    if roll < 0.1:
        number = str(channel_id)
    elif roll < 0.2:
        number = "".join(rng.choices(string.ascii_lowercase, k=5))
    else:
        number = str(rng.randint(1, 10 ** 18 - 1))
    return f"/webhooks/{channel_type}/{number}"


def _rejected_labels(text: str) -> set[str]:
    return {sample.labels["channel_type"]
            for family in text_string_to_metric_families(text)
            if family.name == "orderhooks_deliveries_rejected"
            for sample in family.samples}


def test_random_types_and_ids_leave_metrics_and_the_channel_cache_bounded(bc, app, client):
    channel = bc.create()
    cache = app.extensions["orderhooks.channel_cache"]
    cache.ttl = cache.ceiling_interval = 3600  # no expiry within the test: queries are counted
    queries = []
    event.listen(app.extensions["orderhooks.db"].engine, "before_cursor_execute",
                 lambda *args: queries.append(args[2]))
    rng = random.Random(13)
    for _ in range(100):  # every kind of refusal once, so later growth is growth
        client.post(_random_path(rng, channel["id"]), data=b"{}")
    before = client.get("/metrics").get_data(as_text=True)
    queries.clear()

    paths = [_random_path(rng, channel["id"]) for _ in range(5000)]
    answers = {client.post(path, data=b"{}").status_code for path in paths}

    text = client.get("/metrics").get_data(as_text=True)
    size_before = len(before)
    assert answers <= {401, 404}, answers
    # (The registry is the process's: other tests' channel types may be there too.)
    installed = set(app.extensions["orderhooks.channel_types"].types)
    sent = {path.split("/")[2] for path in paths} - installed
    assert not sent & _rejected_labels(text), sorted(sent & _rejected_labels(text))[:5]
    assert _rejected_labels(text) == _rejected_labels(before) and "unknown" in _rejected_labels(text)
    # Counter values grow by a digit or two; no series is added.
    assert len(text) - size_before < 200, (size_before, len(text))
    # Only the one real channel is cached, and no id cost a query (the channel was cached and
    # the highest id read during the warm-up; /metrics reads the worker lag).
    assert len(cache) == 1
    channel_queries = [q for q in queries if "sales_channels" in q and "deliveries" not in q]
    assert channel_queries == [], channel_queries[:3]


def test_ids_beyond_reach_of_the_highest_channel_cost_no_query_and_no_entry(bc, app, client):
    channel = bc.create()
    cache = app.extensions["orderhooks.channel_cache"]
    cache.ttl = cache.ceiling_interval = 3600
    assert bc.send(order_id=250).status_code == 200  # reads the channel
    beyond = channel["id"] + MIN_REACH + 1
    assert client.post(f"/webhooks/bigcommerce/{beyond}", data=b"{}").status_code == 404
    queries = []  # the highest id has been read: from here on, nothing is
    event.listen(app.extensions["orderhooks.db"].engine, "before_cursor_execute",
                 lambda *args: queries.append(args[2]))
    for number in range(beyond, beyond + 2000):
        response = client.post(f"/webhooks/bigcommerce/{number}", data=b"{}")
        assert response.status_code == 404 and response.get_json()["error"] == "unknown_channel"
    assert queries == [] and len(cache) == 1


def test_a_channel_created_elsewhere_since_the_highest_id_was_read_is_found(bc, app):
    """Another process (here: a row written behind the cache's back) creates channels after this
    one read the highest id: their deliveries are stored at once, not refused as made up."""
    bc.create()
    cache = app.extensions["orderhooks.channel_cache"]
    cache.ttl = cache.ceiling_interval = 3600
    assert bc.send(order_id=250).status_code == 200
    assert bc.send(order_id=250, channel_id=MIN_REACH + 500).status_code == 404  # reads it
    with app.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, bc.channel["id"])
        copy = {column.key: getattr(row, column.key)
                for column in SalesChannel.__table__.columns if column.key != "id"}
        session.add(SalesChannel(id=bc.channel["id"] + 1, **copy))
        session.commit()
    assert bc.send(order_id=251, channel_id=bc.channel["id"] + 1).status_code == 200


def test_ids_within_reach_that_name_no_channel_are_bounded_and_never_evict_a_channel(
        bc, app, client):
    """Ids below the highest (here a copy of the channel at id 1,000,000) that name no channel
    each cost one primary-key read; their answers are kept apart, within ``missing_size``, and
    the real channel stays cached throughout."""
    channel = bc.create()
    with app.extensions["orderhooks.db"].Session() as session:
        row = session.get(SalesChannel, channel["id"])
        copy = {column.key: getattr(row, column.key)
                for column in SalesChannel.__table__.columns if column.key != "id"}
        session.add(SalesChannel(id=1_000_000, **copy))
        session.commit()
    cache = app.extensions["orderhooks.channel_cache"]
    cache.clear()
    cache.ttl, cache.size, cache.missing_size = 3600, 4, 64
    assert bc.send(order_id=250).status_code == 200  # the real channel, cached
    rng = random.Random(6)
    for _ in range(1000):
        number = rng.randint(2, 999_999)
        assert client.post(f"/webhooks/bigcommerce/{number}", data=b"{}").status_code == 404
        assert len(cache) <= 1 + 64
    secret = bc.secret  # (a read of the channel by the test itself)
    queries = []
    event.listen(app.extensions["orderhooks.db"].engine, "before_cursor_execute",
                 lambda *args: queries.append(args[2]))
    assert bc.send(order_id=251, secret=secret).status_code == 200
    assert not [q for q in queries if "sales_channels" in q], queries


# -- the cache on its own ----------------------------------------------------------------------

def test_the_cache_keeps_at_most_size_entries_dropping_the_least_recently_used():
    cache = ChannelCache(ttl=3600, size=3, missing_size=5)
    for number in (1, 2, 3):
        cache.get(number, lambda n=number: f"channel {n}")
    cache.get(1, lambda: "reloaded")  # a hit: 1 becomes the most recently used
    cache.get(4, lambda: "channel 4")  # drops 2, the least recently used
    assert len(cache) == 3
    assert cache.get(1, lambda: "reloaded") == "channel 1"
    assert cache.get(2, lambda: "loaded again") == "loaded again"
    for number in range(5, 5005):  # "no such channel" answers: kept apart, never evict one
        cache.get(number, lambda: None)
        assert len(cache) <= 3 + 5
    assert [cache.get(n, lambda: "evicted") for n in (1, 2, 4)] == [
        "channel 1", "loaded again", "channel 4"]


def test_the_highest_id_is_read_once_per_interval_whatever_the_number_of_ids():
    cache = ChannelCache(ttl=3600, ceiling_interval=3600)
    reads, loads = [], []

    def highest():
        reads.append(1)
        return 10

    reach = 10 + MIN_REACH
    for number in range(reach + 1, reach + 5001):
        assert cache.get(number, lambda: loads.append(1), highest) is None
    assert reads == [1] and loads == [] and len(cache) == 0
    # Within reach: looked up (a channel another process created since is found).
    assert cache.get(11, lambda: "channel 11", highest) == "channel 11"
    cache.clear()  # an admin edit: the next id beyond reach reads the highest id again
    assert cache.get(reach + 1, lambda: "created here", highest) is None
    assert len(reads) == 2
