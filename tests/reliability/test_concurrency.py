"""Concurrency: several gunicorn workers behind a real socket and several
``orderhooks worker`` processes against one database."""
from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from .conftest import MULTI_WORKER, postgres_only
from .live import (db_engine, delivery_body, metric_sum, processed_log_counts, rows, scalar,
                   wait_for, wait_processed)


def _post_all(stack, jobs, threads=16):
    """POST (channel, body) jobs concurrently; returns the responses in job order."""
    local = threading.local()

    def send(job):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        channel, body = job
        return stack.post_delivery(channel, body, session=local.session)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, jobs))


def test_concurrent_posts_from_several_gunicorn_workers(stack, database_url):
    """SQLite (WAL, busy timeout, BEGIN IMMEDIATE) and PostgreSQL alike: many concurrent posts
    to several gunicorn workers all succeed, and each delivery is stored exactly once, however
    many times it was posted. /metrics adds the counters of every gunicorn worker up."""
    stack.start_standin()
    stack.start_web(workers=4)
    channels = [stack.create_channel(f"store{i}") for i in range(2)]
    deliveries = [(channels[n % 2], delivery_body(channels[n % 2]["store"], n)) for n in
                  range(150)]
    jobs = [(ch, body) for ch, (body, _key) in deliveries] * 2  # every delivery twice
    random.Random(4).shuffle(jobs)
    responses = _post_all(stack, jobs)

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 300}, codes
    statuses = Counter(r.json()["status"] for r in responses)
    assert statuses == {"accepted": 150, "duplicate": 150}
    ids_by_body = {}
    for (channel, body), response in zip(jobs, responses):
        ids_by_body.setdefault(body, set()).add(response.json()["delivery_id"])
    assert all(len(ids) == 1 for ids in ids_by_body.values())  # duplicates name the same row

    engine = db_engine(database_url)
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 150
    assert scalar(engine, "SELECT count(DISTINCT dedupe_key) FROM deliveries") == 150

    # /metrics: several gunicorn workers wrote counters; any worker's answer adds them all up.
    pids = {p.name.split("_")[-1].split(".")[0] for p in stack.metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2, f"requests were not spread over gunicorn workers: {pids}"
    text = stack.metrics()
    assert metric_sum(text, "orderhooks_deliveries_received_total", result="stored") == 150
    assert metric_sum(text, "orderhooks_deliveries_received_total", result="duplicate") == 150
    engine.dispose()


@postgres_only(MULTI_WORKER)
def test_same_delivery_posted_three_times_at_once_is_stored_and_applied_once(stack,
                                                                             database_url):
    stack.start_standin(default_status=5)  # every order reads as Cancelled
    stack.start_web(workers=3)
    channel = stack.create_channel("triple")
    orders = {n: stack.create_order(channel["id"], n)["id"] for n in range(1, 31)}
    for _ in range(3):
        stack.start_worker()

    results: dict[int, list] = {}

    def burst(order_id):
        body, _key = delivery_body("triple", order_id)
        barrier = threading.Barrier(3)

        def one():
            barrier.wait(timeout=10)
            return stack.post_delivery(channel, body)
        with ThreadPoolExecutor(3) as pool:
            results[order_id] = [f.result() for f in [pool.submit(one) for _ in range(3)]]

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(burst, orders))

    for order_id, answers in results.items():
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert sorted(r.json()["status"] for r in answers) == ["accepted", "duplicate",
                                                               "duplicate"]
        assert len({r.json()["delivery_id"] for r in answers}) == 1
    engine = db_engine(database_url)
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 30
    assert wait_processed(engine, 30, timeout=60) == 30
    effects = rows(engine, "SELECT o.channel_order_id, c.event, c.delivery_id FROM order_changes c "
                           "JOIN orders o ON o.id = c.order_id WHERE c.event <> 'created'")
    assert Counter(e[1] for e in effects) == {"cancelled": 30}, effects
    assert len({e[0] for e in effects}) == 30  # one effect per order
    assert scalar(engine, "SELECT count(*) FROM orders WHERE status = 'CANCELLED'") == 30
    engine.dispose()


@postgres_only(MULTI_WORKER)
def test_cancel_and_fulfil_racing_end_in_one_consistent_state(stack, database_url):
    """Two deliveries for one order, one reading it Cancelled and the other Shipped, processed
    by three workers at once: the order ends CANCELLED or SHIPPED, never both, and its history
    records exactly one status change and one ignored delivery, each naming its delivery."""
    stack.start_standin(default_status=None)
    stack.start_web(workers=3)
    channel = stack.create_channel("race")
    orders = {n: stack.create_order(channel["id"], n)["id"] for n in range(1, 21)}
    for n in orders:
        # successive reads of the order alternate between Cancelled and Shipped
        stack.control("/_script", {"store": "race", "order_id": n,
                                   "statuses": [5, 2] if n % 2 else [2, 5]})
    jobs = []
    for n in orders:
        jobs += [(channel, delivery_body("race", n, status=5)[0]),
                 (channel, delivery_body("race", n, status=2)[0])]
    stack.env["ORDERHOOKS_WORKER_BATCH"] = "1"  # one delivery per claim: maximal interleaving
    for _ in range(3):
        stack.start_worker()
    responses = _post_all(stack, jobs, threads=8)
    assert all(r.status_code == 200 for r in responses)

    engine = db_engine(database_url)
    assert wait_processed(engine, 40, timeout=90) == 40
    finals = Counter()
    for n, order_pk in orders.items():
        status = scalar(engine, "SELECT status FROM orders WHERE id = :id", id=order_pk)
        history = rows(engine, "SELECT event, old_status, new_status, delivery_id FROM "
                               "order_changes WHERE order_id = :id ORDER BY id", id=order_pk)
        events = [h[0] for h in history]
        assert events[0] == "created"
        changes = [h for h in history[1:] if h[0] in ("cancelled", "shipped")]
        assert len(changes) == 1, (n, history)
        assert sorted(events[1:]) == sorted([changes[0][0], "ignored"]), (n, history)
        assert status == changes[0][2] == history[-1][2], (n, status, history)
        assert status in ("CANCELLED", "SHIPPED")
        delivery_ids = {h[3] for h in history[1:]}
        assert len(delivery_ids) == 2 and None not in delivery_ids  # each delivery recorded once
        finals[status] += 1
    print(f"\nfinal states after the races: {dict(finals)}")
    assert set(finals) == {"CANCELLED", "SHIPPED"}  # both orders of arrival were exercised
    engine.dispose()


@postgres_only(MULTI_WORKER)
def test_no_delivery_is_processed_by_two_workers(stack, database_url):
    """Three worker processes claiming small batches (FOR UPDATE SKIP LOCKED) from one inbox:
    each delivery is processed by exactly one of them and has exactly one effect."""
    stack.start_standin(default_status=5)
    stack.start_web(workers=3)
    channels = [stack.create_channel(f"claims{i}") for i in range(3)]
    jobs, orders = [], {}
    for n in range(240):
        channel = channels[n % 3]
        orders[(channel["id"], n)] = stack.create_order(channel["id"], n)["id"]
        jobs.append((channel, delivery_body(channel["store"], n)[0]))
    stack.env.update({"ORDERHOOKS_WORKER_BATCH": "5", "ORDERHOOKS_CLAIM_SECONDS": "120"})
    for _ in range(3):
        stack.start_worker()
    wait_for(lambda: all(any(e.get("event") == "worker.started" for e in w.json_logs())
                         for w in stack.workers), 60, what="three idle workers")
    responses = _post_all(stack, jobs)  # into an inbox three workers are polling
    assert all(r.status_code == 200 for r in responses)

    engine = db_engine(database_url)
    assert wait_processed(engine, 240, timeout=120) == 240
    logged = processed_log_counts(stack)
    assert sorted(logged) == sorted(r.json()["delivery_id"] for r in responses)
    twice = {d: names for d, names in logged.items() if len(names) != 1}
    assert not twice, f"deliveries processed more than once: {twice}"
    busy = Counter(names[0] for names in logged.values())
    assert len(busy) >= 2, f"only one worker did any work: {busy}"
    print(f"\ndeliveries per worker process: {dict(busy)}")
    per_delivery = rows(engine, "SELECT delivery_id, count(*) FROM order_changes "
                                "WHERE delivery_id IS NOT NULL GROUP BY delivery_id")
    assert len(per_delivery) == 240 and all(c == 1 for _d, c in per_delivery)
    assert scalar(engine, "SELECT count(*) FROM deliveries WHERE outcome = 'applied'") == 240
    assert scalar(engine, "SELECT count(*) FROM orders WHERE status = 'CANCELLED'") == 240
    engine.dispose()


def test_clients_beyond_workers_times_threads_are_served_at_once(stack):
    """The threaded web workers keep one keep-alive connection per thread (so keep-alive clients
    spread over the processes, core/gunicorn_ext.py), yet never leave a client waiting: with
    1 process x 2 threads, a third and a fourth client holding their connections open are
    answered at once, with ``Connection: close`` (they take turns, as with sync workers)."""
    import http.client
    import time
    stack.env["ORDERHOOKS_WEB_THREADS"] = "2"
    url = stack.start_web(workers=1)
    host, port = url.split("//")[1].split(":")
    clients, answers = [], []
    try:
        for _ in range(4):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            clients.append(conn)
            started = time.monotonic()
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            answers.append((response.status, response.getheader("Connection"),
                            time.monotonic() - started))
        # The first two keep their connections (and can use them again).
        clients[0].request("GET", "/healthz")
        again = clients[0].getresponse()
        again.read()
    finally:
        for conn in clients:
            conn.close()
    assert [a[0] for a in answers] == [200] * 4, answers
    assert [a[1] for a in answers] == ["keep-alive", "keep-alive", "close", "close"], answers
    # Nobody waited for a place (in the listen queue that would be the others' whole keep-alive
    # time, 5 s, or for ever while they stay busy); generous for a slow machine.
    assert max(a[2] for a in answers) < 3, answers
    assert again.status == 200
