"""Worker refunds in-process against a kept SQLite database: how many Shopify
``refunds/create`` deliveries (the published sample: five lines) one worker turns into RMAs —
RMA, lines, RMA and order history — per second.

Like :mod:`bench.import_lab`: the database (``--orders`` SHIPPED orders) is filled once and kept
in ``--dir``; each round inserts ``--size`` refunds with ids not seen yet, for orders taken in
turn, and times ``run_until_idle`` with the long-running worker's settings. Both refund
webhooks are ticked, so no order is read to tell POS from e-commerce::

    python -m bench.refund_lab --orders 10000 --size 5000 --rounds 3

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
WEBHOOKS = ["order_creation", "refund_pos", "refund_ecommerce"]


def refund_requests(first_id: int, count: int, orders: int, tag: str):
    """(headers, body) of a signed refunds/create per new refund id, orders 1..``orders``."""
    base = json.loads((FIXTURE / "refunds_create.json").read_text())
    for number, refund_id in enumerate(range(first_id, first_id + count)):
        refund = copy.copy(base)
        refund.update({"id": refund_id, "order_id": 1 + number % orders, "note": tag,
                       "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}"})
        body = json.dumps(refund).encode()
        yield targets.shopify_headers(body, f"{tag}-{refund_id}", topic="refunds/create"), body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=10000)
    p.add_argument("--size", type=int, default=5000, help="refunds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default="/tmp/orderhooks-refund-lab")
    args = p.parse_args(argv)
    from core.tuning import tune_for_long_run
    from core.worker import Worker

    url, channel_id = database(Path(args.dir), args.orders)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sales_channels SET webhooks = ? WHERE id = ?",
                     (json.dumps(WEBHOOKS), channel_id))
        conn.execute("UPDATE orders SET status = 'SHIPPED' WHERE channel_id = ?", (channel_id,))
        first = 10 ** 15 + conn.execute("SELECT count(*) FROM rmas").fetchone()[0]
    filler = fill.make_app(url)
    app = fill.make_app(url)
    tune_for_long_run(app)
    worker = Worker(app)
    rates = []
    for index in range(args.rounds):
        tag = f"refund{time.time_ns()}"
        rows = list(fill.delivery_rows(filler, channel_id, "shopify",
                                       refund_requests(first, args.size, args.orders, tag),
                                       datetime.utcnow()))
        before = first
        first += args.size
        fill.insert_deliveries(filler, rows)
        done, wall, cpu = labs.timed_until_idle(worker)
        with app.extensions["orderhooks.db"].engine.connect() as conn:
            opened = conn.execute(text("SELECT count(*) FROM rmas WHERE channel_refund_id >= "
                                       ":low AND length(channel_refund_id) = 16"),
                                  {"low": str(before)}).scalar_one()
        if opened < args.size or done < args.size:
            print(f"round {index + 1}: {opened} RMAs for {args.size} refunds", file=sys.stderr)
            return 1
        rates.append(labs.report_round(index, done, wall, cpu, "refunds as RMAs", "refund"))
    print(f"median: {statistics.median(rates):,.0f} refunds/s ({args.orders:,} orders, "
          f"{args.size:,} a round, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
