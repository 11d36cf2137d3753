"""The trickle's fixed cost, in-process: one Shopify cancellation at a time, from its stored
delivery to its signed event at a loopback receiver, with nothing else waiting. At a few
deliveries a second every claim, batch and sender pass carries one delivery, so what each
costs whatever its size — statements, round trips, the ORM's CPU — is the event latency's
floor (bench/event_latency.py measures the real processes; this isolates the code's part, with
no other process competing for the cores).

Each delivery: POST it through the intake (Flask's test client, not timed), then time
``Worker.run_once`` (claim and batch) and one sender pass (``Sender.run_until_idle``: number,
fan out, POST, record) on this thread: CPU ms (``time.thread_time``, this thread only: the
database server's share is not in it), wall ms, and the statements each ran. Prints the
median and p90 of each, per database::

    python -m bench.trickle_lab --sqlite --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_trickle
    python -m bench.trickle_lab --pg-url ... --deliveries 500

Compare trees side by side (``PYTHONPATH=<tree>``), alternated: the figures move with the
machine's other work.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import fill, targets
from .common import fresh_database, upgrade


class _Receiver(BaseHTTPRequestHandler):
    #: webhook-id of every POST received (the server's threads append)
    received: list[str] = []

    def do_POST(self):  # noqa: N802 — http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append(self.headers.get("webhook-id", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


def _receiver() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hooks"


class _Count:
    """Statements run on the app's engines while active."""

    def __init__(self, db):
        from sqlalchemy import event
        self.n = 0
        self.active = False
        for engine in {db.engine, db.lease_engine}:
            event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, _conn, _cursor, statement, *_args):
        if self.active and not statement.startswith("BEGIN"):
            self.n += 1


def _timed(count: _Count, fn) -> tuple[float, float, int]:
    count.n, count.active = 0, True
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    count.active = False
    return cpu * 1000, wall * 1000, count.n


def run(url: str, deliveries: int, warmup: int) -> dict:
    from core.sender import Sender
    from core.worker import Worker
    upgrade(url)
    app = fill.make_app(url, ALLOWED_WEBHOOK_URLS="http://127.0.0.1:*")
    channel_id, _ = fill.create_channel(app, "shopify", "trickle shop", {
        "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_lab",
        "client_secret": targets.SHOPIFY_SECRET})
    total = deliveries + warmup
    fill.fill_orders(app, channel_id, total, history=False)
    fill.quiet_housekeeping(app)
    _Receiver.received = []
    server, hook = _receiver()
    db = app.extensions["orderhooks.db"]
    from core import endpoints
    with db.session() as session:
        endpoints.create(session, app.extensions["orderhooks.box"], url=hook,
                         event_types=["order.cancelled"])
    client = app.test_client()
    worker, sender = Worker(app, name="trickle"), Sender(app, "trickle")
    count = _Count(db)
    rows = []
    try:
        for (headers, body), n in zip(targets.shopify_requests(range(1, total + 1), "trickle"),
                                      range(total)):
            answer = client.post(f"/webhooks/shopify/{channel_id}", data=body, headers=headers)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            claimed = _timed(count, worker.run_once)
            sent = _timed(count, sender.run_until_idle)
            if len(_Receiver.received) != n + 1:  # each pass delivered its one event
                raise RuntimeError(f"delivery {n}: {len(_Receiver.received)} events received")
            if n >= warmup:
                rows.append((claimed, sent))
    finally:
        sender.pool.shutdown(wait=False, cancel_futures=True)
        server.shutdown()
        db.dispose()

    def spread(values):
        ordered = sorted(values)
        return {"p50": round(statistics.median(ordered), 2),
                "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2)}

    return {part: {"cpu_ms": spread([r[i][0] for r in rows]),
                   "wall_ms": spread([r[i][1] for r in rows]),
                   "statements": spread([r[i][2] for r in rows])}
            for i, part in enumerate(("worker", "sender"))} | {"deliveries": len(rows)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--pg-url", default=None)
    p.add_argument("--deliveries", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-trickle-"))
    report = {}
    for kind in (["sqlite"] if args.sqlite else []) + (["postgresql"] if args.pg_url else []):
        url = fresh_database(kind, "trickle", workdir, args.pg_url or "")
        report[kind] = run(url, args.deliveries, args.warmup)
        print(kind, json.dumps(report[kind]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
