"""Outbound webhook throughput: events/s from one sender (the thread ``orderhooks worker`` runs)
to a fast loopback receiver, beside a plain ``requests`` loop to the same receiver (the ceiling).

N ``order.cancelled`` events (``--orders`` distinct orders) are written and numbered before the
clock starts; one endpoint points at the receiver; the sender's loop (``Sender.run_forever``)
runs in this process until the receiver has every event. The receiver is a threaded
``http.server`` (HTTP/1.1 keep-alive) in a process of its own, so it does not share this
process's GIL. ``--slow`` adds a second endpoint whose every answer takes ``--slow-seconds``
(and a third that is dead: connection refused) beside the fast one: the fast one's rate should
hold::

    python -m bench.outbound_throughput --events 3000 --rounds 3
    python -m bench.outbound_throughput --events 3000 --slow --pg-url postgresql+psycopg://...
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from bench.common import fresh_database, log, machine, upgrade


def serve(port_queue, slow_seconds: float) -> None:
    """The receiver process: ``/fast`` answers 204 at once, ``/slow`` after ``slow_seconds``;
    ``GET /count/<path>`` answers how many distinct webhook-ids that path got."""
    seen: dict[str, set] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                seen.setdefault(self.path, set()).add(self.headers.get("webhook-id"))
            if self.path == "/slow":
                time.sleep(slow_seconds)
            self.send_response(204)
            self.end_headers()

        def do_GET(self):
            path = self.path[len("/count"):]
            if path == "/reset":
                with lock:
                    seen.clear()
                body = b"0"
            else:
                with lock:
                    body = str(len(seen.get(path, ()))).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def count(base: str, path: str) -> int:
    return int(requests.get(f"{base}/count{path}", timeout=5).text)


def ceiling(base: str, n: int, threads: int) -> float:
    """Events/s of a plain loop: ``threads`` threads, one keep-alive session each, POSTing a
    body of an event's size to ``/plain``."""
    body = json.dumps({"id": "evt_x", "type": "order.cancelled", "data": {"order": {
        "id": 1, "status": "CANCELLED", "x": "y" * 400}}}).encode()
    per = n // threads

    def loop(k: int) -> None:
        with requests.Session() as s:
            for i in range(per):
                s.post(f"{base}/plain", data=body, headers={
                    "Content-Type": "application/json", "webhook-id": f"p{k}-{i}"}, timeout=10)

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per * threads / (time.perf_counter() - started)


def write_events(app, n: int, orders: int) -> None:
    from core import events
    db = app.extensions["orderhooks.db"]
    with app.app_context():
        for start in range(0, n, 1000):
            with db.session() as session:
                for i in range(start, min(n, start + 1000)):
                    order = i % orders
                    events.emit(session, "order.cancelled",
                                {"order": {"id": order, "status": "CANCELLED", "seq": i,
                                           "note": "y" * 300}},
                                channel_id=None, order_key=f"order:{order}")
        while events.sequence(db):
            pass


def one_round(url: str, base: str, n: int, orders: int, slow: bool) -> dict:
    from bench.fill import make_app
    from core import endpoints
    from core.models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage
    from core.sender import Sender
    app = make_app(url, ALLOWED_WEBHOOK_URLS="http://127.0.0.1:*", WEBHOOK_TIMEOUT_SECONDS=5.0)
    db = app.extensions["orderhooks.db"]
    box = app.extensions["orderhooks.box"]
    with app.app_context(), db.session() as session:
        for model in (WebhookAttempt, WebhookMessage, WebhookEndpoint, Event):
            session.query(model).delete()
    requests.get(f"{base}/count/reset", timeout=5)
    with app.app_context(), db.session() as session:
        endpoints.create(session, box, url=f"{base}/fast")
        if slow:
            endpoints.create(session, box, url=f"{base}/slow")
            endpoints.create(session, box, url="http://127.0.0.1:9/dead")
    write_events(app, n, orders)
    sender = Sender(app, "bench")
    stopping = threading.Event()
    started = time.perf_counter()
    thread = threading.Thread(target=sender.run_forever, args=(stopping,), daemon=True)
    with app.app_context():
        thread.start()
        deadline = started + 600
        while count(base, "/fast") < n and time.perf_counter() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        slow_got = count(base, "/slow") if slow else None
        stopping.set()
        from core import events
        events.wake()
        thread.join(timeout=30)
    db.dispose()
    return {"events": n, "seconds": round(elapsed, 2), "events_per_s": round(n / elapsed, 1),
            **({"slow_endpoint_got": slow_got} if slow else {})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--orders", type=int, default=1000, help="distinct order keys")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="a slow and a dead endpoint beside")
    parser.add_argument("--slow-seconds", type=float, default=1.0)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--ceiling-threads", type=int, default=1)
    args = parser.parse_args(argv)
    queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(queue, args.slow_seconds), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{queue.get(timeout=10)}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    kind = "postgresql" if args.pg_url else "sqlite"
    url = fresh_database(kind, "outbound", workdir, args.pg_url or "")
    upgrade(url)
    rounds = []
    try:
        for r in range(args.rounds):
            plain = ceiling(base, min(args.events, 2000), args.ceiling_threads)
            result = one_round(url, base, args.events, args.orders, args.slow)
            result["ceiling_per_s"] = round(plain, 1)
            log(json.dumps(result))
            rounds.append(result)
    finally:
        server.terminate()
    report = {"machine": machine(), "db": kind, "slow": args.slow,
              "median_events_per_s": statistics.median(r["events_per_s"] for r in rounds),
              "median_ceiling_per_s": statistics.median(r["ceiling_per_s"] for r in rounds),
              "rounds": rounds}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
