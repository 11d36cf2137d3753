"""GET /api/v1/events: the feed, read with a cursor, filtered, long-polled; never skipping nor
repeating an event while writers commit out of id order."""
from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import select

from core import events
from core.models import Event
from core.testing.fixtures import test_database_url


def write(app, type="order.cancelled", channel_id=1, n=1) -> list[str]:
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        ids = [events.emit(session, type, {"n": i}, channel_id=channel_id).event_id
               for i in range(n)]
    return ids


def next_after(response) -> str:
    link = response.headers["Link"]
    assert link.endswith('>; rel="next"')
    from urllib.parse import parse_qs, urlsplit
    return parse_qs(urlsplit(link[1:link.index(">")]).query)["after"][0]


def test_reading_with_the_cursor_returns_each_event_once_in_order(app, admin, client):
    written = write(app, n=7)
    seen, after = [], None
    for _ in range(5):
        query = {"limit": 3} | ({"after": after} if after else {})
        response = admin.client.get("/api/v1/events", query_string=query,
                                    headers=admin.headers)
        assert response.status_code == 200
        seen += [e["id"] for e in response.get_json()]
        after = next_after(response)
    assert seen == written
    written += write(app, n=2)
    response = admin.client.get("/api/v1/events", query_string={"after": after},
                                headers=admin.headers)
    assert [e["id"] for e in response.get_json()] == written[7:]


def test_filters_by_types_and_channel_and_skips_what_they_leave_out(app, admin):
    write(app, "order.cancelled", channel_id=1, n=3)
    shipped = write(app, "order.shipped", channel_id=2, n=2)
    write(app, "order.ignored", channel_id=2)
    response = admin.client.get("/api/v1/events", query_string={
        "types": "order.shipped,order.cancelled", "channel": 2}, headers=admin.headers)
    assert [e["id"] for e in response.get_json()] == shipped
    assert {e["type"] for e in response.get_json()} == {"order.shipped"}
    # the cursor moved past the events the filter left out
    assert events.decode_cursor(next_after(response)) == 6
    repeated = admin.client.get("/api/v1/events?types=order.shipped&types=order.ignored",
                                headers=admin.headers)
    assert len(repeated.get_json()) == 3


@pytest.mark.parametrize("query, status, field", [
    ({"after": "bm90LWEtY3Vyc29y"}, 400, "after"),
    ({"after": "%%%"}, 400, "after"),
    ({"types": "order.exploded"}, 422, "types"),
    ({"wait": "21"}, 422, "wait"),
    ({"limit": "0"}, 422, "limit"),
    ({"channel": "x"}, 422, "channel"),
])
def test_bad_queries_answer_a_4xx_naming_the_parameter(admin, query, status, field):
    response = admin.client.get("/api/v1/events", query_string=query, headers=admin.headers)
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["error"] and field in str(body["details"]) + body["message"]


def test_the_feed_needs_the_admin_token(client):
    assert client.get("/api/v1/events").status_code == 401


def test_long_poll_answers_as_soon_as_an_event_is_written(app, admin):
    def later():
        time.sleep(0.4)
        write(app)
    threading.Thread(target=later).start()
    started = time.monotonic()
    response = admin.client.get("/api/v1/events?wait=10", headers=admin.headers)
    took = time.monotonic() - started
    assert len(response.get_json()) == 1
    assert 0.3 < took < 2.0, took


def test_long_poll_answers_empty_after_the_wait(admin):
    started = time.monotonic()
    response = admin.client.get("/api/v1/events?wait=0.3", headers=admin.headers)
    assert response.get_json() == [] and 0.25 < time.monotonic() - started < 2.0
    assert events.decode_cursor(next_after(response)) == 0


def test_events_written_by_other_processes_are_numbered_by_the_feed(app, admin):
    """An event committed without anyone running the sequencer (say its writer was killed just
    after its commit) is numbered by the next read."""
    write(app, n=2)
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.scalars(select(Event.position)).all() == [None, None]
    assert len(admin.get("/events")) == 2


@pytest.mark.skipif(not (test_database_url() or "").startswith("postgresql"),
                    reason="PostgreSQL only: SQLite serialises writers, so commit order is id "
                           "order there; the race needs concurrent transactions")
def test_no_event_skipped_or_repeated_while_many_writers_commit_out_of_id_order(app):
    """Writers draw their ids, then commit after random delays (so a smaller id often commits
    after a larger one was read), and number after their commit, while a reader follows the
    cursor the whole time. Everything written is read exactly once."""
    db = app.extensions["orderhooks.db"]
    written, read, out_of_order = [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(seed: int):
        rng = random.Random(seed)
        for _ in range(40):
            with db.session() as session:
                batch = [events.emit(session, "order.cancelled", {"seed": seed})
                         for _ in range(rng.randint(1, 3))]
                session.flush()  # the ids are drawn now...
                time.sleep(rng.uniform(0, 0.02))  # ...and committed later
            with lock:
                written.extend(e.event_id for e in batch)
            if rng.random() < 0.7:
                events.sequence(db)

    def reader():
        after = 0
        while True:
            done = stop.is_set()
            with db.Session() as session:
                if events.unnumbered(session):
                    session.rollback()
                    events.sequence(db)
                rows, after_next = events.read(session, after, limit=50)
            read.extend((r.event_id, r.id) for r in rows)
            after = after_next
            if done and not rows:
                return
            time.sleep(random.uniform(0, 0.005))

    reading = threading.Thread(target=reader)
    reading.start()
    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reading.join(timeout=60)
    ids = [event_id for event_id, _ in read]
    assert len(ids) == len(set(ids)), "an event was read twice"
    assert set(ids) == set(written), f"{len(set(written) - set(ids))} events were skipped"
    # the race was real: some event with a smaller id was read after a larger one
    out_of_order = [a for a, b in zip(read, read[1:]) if b[1] < a[1]]
    assert out_of_order, "no writer committed out of id order: the test proved nothing"
