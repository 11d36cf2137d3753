"""Graceful shutdown: SIGTERM lets in-flight requests finish; a worker's claimed
deliveries finish or are released; nothing stays claimed forever (claims are leases)."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from datetime import timedelta

from sqlalchemy import update

from core.clock import utcnow
from core.models import StoredDelivery
from core.worker import Worker

import requests

from .live import (SECRET_HEADER, children, db_engine, delivery_body, free_port, rows, scalar,
                   wait_for, wait_processed)


def _claims(engine):
    return rows(engine, "SELECT id, state, claimed_by, outcome FROM deliveries ORDER BY id")


def test_sigterm_mid_batch_finishes_or_releases_every_claim(stack, database_url):
    stack.start_standin(default_status=5)
    stack.start_web(workers=2)
    channel = stack.create_channel("term")
    for n in range(12):
        stack.create_order(channel["id"], n)
        assert stack.post_delivery(channel, delivery_body("term", n)[0]).status_code == 200
    stack.control("/_faults", {"delay": 0.4, "count": -1})  # each API call takes 0.4 s
    stack.env["ORDERHOOKS_WORKER_BATCH"] = "4"
    worker = stack.start_worker()
    engine = db_engine(database_url)
    wait_for(lambda: scalar(engine, "SELECT count(*) FROM deliveries WHERE state = "
                                    "'processing'") > 0, 60, what="a claimed batch")
    worker.signal(signal.SIGTERM)  # mid-batch
    worker.popen.wait(timeout=60)
    assert worker.popen.returncode == 0
    assert any(e.get("event") == "worker.stopped" for e in worker.json_logs())

    after = _claims(engine)
    assert not [r for r in after if r[1] == "processing" or r[2] is not None], after
    done = [r for r in after if r[1] == "done"]
    assert all(r[3] == "applied" for r in done)  # the claimed batch finished (or was released)
    assert len(done) < 12  # ...and the worker stopped instead of taking more
    print(f"\nSIGTERM mid-batch: {len(done)} finished, {12 - len(done)} left pending, "
          f"none claimed")

    stack.control("/_faults", {"count": 0})
    stack.start_worker()  # another worker takes the rest; nothing was applied twice
    assert wait_processed(engine, 12, timeout=60) == 12
    assert scalar(engine, "SELECT count(*) FROM order_changes WHERE event = 'cancelled'") == 12
    engine.dispose()


def test_a_stopping_worker_releases_what_it_claimed(bc, make_order, worker, app):
    channel = bc.create()
    for n in range(3):
        make_order(channel["id"], 400 + n)
        bc.order(400 + n, status_id=5)
        bc.send(order_id=400 + n)
    worker.stopping.set()  # SIGTERM arrives between claiming and processing
    assert worker.run_once() == 0
    with app.extensions["orderhooks.db"].Session() as session:
        states = session.query(StoredDelivery.state, StoredDelivery.claimed_by, StoredDelivery.outcome).all()
    assert states == [("pending", None, None)] * 3
    assert Worker(app, name="other").run_until_idle() == 3


def test_claims_expire_so_nothing_stays_claimed_forever(bc, make_order, app, admin):
    """A worker that claimed a batch and died holds it only until the lease ends; then another
    worker processes it, and the dead worker's late result (if it ever comes) is discarded."""
    channel = bc.create()
    orders = []
    for n in range(3):
        orders.append(make_order(channel["id"], 500 + n)["id"])
        bc.order(500 + n, status_id=5)
        bc.send(order_id=500 + n)
    crashed, survivor = Worker(app, name="crashed"), Worker(app, name="survivor")
    claimed = crashed.claim()
    assert len(claimed) == 3
    assert survivor.run_until_idle() == 0  # leased: nobody else touches them
    with app.extensions["orderhooks.db"].session() as session:  # ...until the lease ends
        session.execute(update(StoredDelivery).values(claimed_until=utcnow() - timedelta(seconds=1)))
    assert survivor.run_until_idle() == 3
    late = crashed.process_batch(claimed)  # the "dead" worker wakes up: its claim is gone
    assert all(outcome is None for outcome in late.values())
    for order_id in orders:
        history = admin.get(f"/orders/{order_id}")["history"]
        assert [h["event"] for h in history] == ["created", "cancelled"]


def test_kill_9_worker_claims_are_taken_by_the_worker_started_in_its_place(stack, database_url):
    """A worker killed mid-batch holds its claims for CLAIM_SECONDS (60 here); the worker
    started in its place on the same host sees its pid gone and takes them at once, counting
    the dead run as an attempt (core/owners.py)."""
    stack.env.update({"ORDERHOOKS_CLAIM_SECONDS": "60", "ORDERHOOKS_WORKER_BATCH": "50"})
    stack.start_standin(default_status=5)
    stack.start_web(workers=2)
    channel = stack.create_channel("kill9")
    for n in range(6):
        stack.create_order(channel["id"], n)
        stack.post_delivery(channel, delivery_body("kill9", n)[0])
    stack.control("/_faults", {"delay": 1.0, "count": -1})
    victim = stack.start_worker()
    engine = db_engine(database_url)
    wait_for(lambda: scalar(engine, "SELECT count(*) FROM deliveries WHERE state = "
                                    "'processing'") == 6, 60, what="the batch claimed")
    victim.signal(signal.SIGKILL)
    victim.popen.wait(timeout=10)
    stack.control("/_faults", {"count": 0})
    leases = rows(engine, "SELECT claimed_until FROM deliveries WHERE state = 'processing'")
    assert len(leases) == 6  # the dead worker's claims are still there...
    stack.start_worker()
    assert wait_processed(engine, 6, timeout=30) == 6  # ...until a worker starts in its place
    processed = rows(engine, "SELECT processed_at, attempts FROM deliveries")
    assert max(p[0] for p in processed) < min(lease[0] for lease in leases)  # long before
    assert {p[1] for p in processed} == {1}  # the killed run counts as an attempt
    assert scalar(engine, "SELECT count(*) FROM order_changes WHERE event = 'cancelled'") == 6
    engine.dispose()


def test_sigterm_to_gunicorn_lets_in_flight_requests_finish(stack, database_url):
    stack.start_standin(default_status=5)
    stack.start_web(workers=2)
    channel = stack.create_channel("inflight")
    body = delivery_body("inflight", 1)[0]
    host, port = stack.web_url.rsplit("/", 1)[1].split(":")
    head = (f"POST /webhooks/bigcommerce/{channel['id']} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\n{SECRET_HEADER}: {channel['secret']}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body[:20])  # the request is in flight: half its body sent
        time.sleep(0.5)
        stack.web.signal(signal.SIGTERM)
        time.sleep(1.0)
        sock.sendall(body[20:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"accepted"' in answer
    stack.web.popen.wait(timeout=40)
    assert stack.web.popen.returncode == 0
    engine = db_engine(database_url)
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 1
    engine.dispose()


def test_serve_stops_its_children_without_restarting_them(stack):
    """Ctrl-C in a terminal (and GNU timeout) signal the whole process group: web and worker
    stop together with ``serve``, which must not take the worker's exit for a crash."""
    port = free_port()
    serve = stack._start("serve", [sys.executable, "-m", "core.cli", "serve", "--bind",
                                   f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"])
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 60,
             what="serve's web")
    wait_for(lambda: any("worker" in " ".join(_cmdline(pid)) for pid in children(serve.pid)),
             30, what="serve's worker")
    time.sleep(1.0)  # the worker past its imports
    os.killpg(serve.pid, signal.SIGTERM)  # the group, as a terminal's Ctrl-C does
    serve.popen.wait(timeout=60)
    log = serve.log_path.read_text()
    assert serve.popen.returncode == 0, log
    assert "restarting" not in log, log


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_serve_restarts_a_dead_sender_and_stops_every_process(stack):
    """The PostgreSQL layout (two workers, the sender a process of its own), chosen by its
    settings on any database: a sender killed with SIGKILL is restarted; SIGTERM to ``serve``
    alone stops web, workers and sender, and ``serve`` exits 0 without restarting anything."""
    port = free_port()
    env = {**stack.env, "ORDERHOOKS_WORKER_PROCESSES": "2", "ORDERHOOKS_SENDER_PROCESS": "1"}
    serve = stack._start("serve", [sys.executable, "-m", "core.cli", "serve", "--bind",
                                   f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"], env)
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 60,
             what="serve's web")

    def started(command: str) -> list[int]:
        return [pid for pid in children(serve.pid)
                if _cmdline(pid)[3:4] == [command]]  # python -m core.cli <command>

    wait_for(lambda: len(started("worker")) == 2 and len(started("sender")) == 1, 30,
             what="serve's two workers and its sender")
    assert all("--no-sender" in _cmdline(pid) for pid in started("worker"))
    [sender] = started("sender")
    time.sleep(1.0)  # past its imports
    os.kill(sender, signal.SIGKILL)
    # serve's own word first: a process list read while the killed one is reaped and the new
    # one starts has been seen to pass before any restart
    wait_for(lambda: "sender exited with -9; restarting" in serve.log_path.read_text(), 30,
             what="serve restarting the sender")
    wait_for(lambda: started("sender") and started("sender") != [sender], 30,
             what="a new sender")
    time.sleep(1.0)
    everyone = children(serve.pid)
    os.kill(serve.pid, signal.SIGTERM)  # serve alone: it stops its children
    serve.popen.wait(timeout=60)
    log = serve.log_path.read_text()
    assert serve.popen.returncode == 0, log
    assert log.count("restarting") == 1, log
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}/cmdline") and _cmdline(pid) != [""]
                             for pid in everyone), 30, what="every child gone")
