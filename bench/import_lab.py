"""Worker order imports in-process against a kept SQLite database: how many Shopify
``orders/create`` deliveries (the published ~15 kB sample, as a live unpaid order) one worker
turns into routed orders — order, lines, history — per second.

Like :mod:`bench.worker_lab`: the database (``--orders`` existing orders with their history) is
filled once and kept in ``--dir``; each round inserts ``--size`` deliveries for orders not seen
yet and times ``run_until_idle`` with the long-running worker's settings::

    python -m bench.import_lab --orders 1000 --size 5000 --rounds 3
    python -m bench.import_lab --orders 1000000 --size 5000 --rounds 3

It prints one line per round and the median. Figures go to docs/performance.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import sqlite3
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from . import fill, labs, targets
from .worker_lab import database

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shopify"
WEBHOOKS = ["order_creation", "order_payment", "cancellation", "fulfillment"]


def order_requests(first_id: int, count: int, tag: str):
    """(headers, body) of a signed orders/create per new order id."""
    base = json.loads((FIXTURE / "orders_create.json").read_text())
    base.update({"test": False, "cancelled_at": None, "cancel_reason": None,
                 "financial_status": "pending"})
    for oid in range(first_id, first_id + count):
        order = copy.copy(base)
        order["id"] = oid
        order["admin_graphql_api_id"] = f"gid://shopify/Order/{oid}"
        order["name"] = f"#{oid}"
        order["note"] = tag
        body = json.dumps(order).encode()
        yield targets.shopify_headers(body, f"{tag}-{oid}", topic="orders/create"), body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--size", type=int, default=5000, help="orders imported per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default="/tmp/orderhooks-import-lab")
    args = p.parse_args(argv)
    from core.tuning import tune_for_long_run
    from core.worker import Worker

    url, channel_id = database(Path(args.dir), args.orders)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sales_channels SET webhooks = ? WHERE id = ?",
                     (json.dumps(WEBHOOKS), channel_id))
        # every round imports orders above any id used before
        first = 10 ** 12 + (conn.execute("SELECT count(*) FROM orders").fetchone()[0])
    filler = fill.make_app(url)
    app = fill.make_app(url)
    tune_for_long_run(app)
    worker = Worker(app)
    rates = []
    for index in range(args.rounds):
        tag = f"import{time.time_ns()}"
        rows = list(fill.delivery_rows(filler, channel_id, "shopify",
                                       order_requests(first, args.size, tag),
                                       datetime.utcnow()))
        first += args.size
        fill.insert_deliveries(filler, rows)
        done, wall, cpu = labs.timed_until_idle(worker)
        with app.extensions["orderhooks.db"].engine.connect() as conn:
            imported = conn.execute(text("SELECT count(*) FROM deliveries WHERE outcome = "
                                         "'applied' AND topic = 'orders/create' AND "
                                         "dedupe_key IN (SELECT dedupe_key FROM deliveries "
                                         "WHERE headers LIKE :tag)"),
                                    {"tag": f"%{tag}%"}).scalar_one()
        if imported != args.size:
            print(f"round {index + 1}: {imported} of {args.size} imported", file=sys.stderr)
            return 1
        rates.append(labs.report_round(index, done, wall, cpu, "orders imported", "order"))
    print(f"median: {statistics.median(rates):,.0f} orders/s ({args.orders:,} orders before, "
          f"{args.size:,} a round, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
