"""The worker in-process against a kept database: a quick A/B bench for the worker's hot path.

The benchmark's worker section fills fresh databases and runs worker processes (minutes a run);
this fills a database once (kept between runs, in ``--dir``), then measures rounds of Shopify
``orders/cancelled`` deliveries applied by a :class:`core.worker.Worker` in this process, with
the long-running worker's own settings (``wal_autocheckpoint``, ``tune_gc``). Each round:
reset the orders, insert ``--size`` deliveries for random orders, then time ``run_until_idle``
from its start (claims included) to its end::

    python -m bench.worker_lab --orders 1000 --size 500 --rounds 8
    python -m bench.worker_lab --orders 1000000 --rounds 4
    python -m bench.worker_lab --orders 1000000 --pragma cache_size=-65536   # an experiment
    py-spy record -r 200 -f raw -o w.txt -- python -m bench.worker_lab --orders 1000000

It prints one line per round (applied/s, CPU and wall ms per delivery) and the median round.
Figures for the README come from ``python -m bench.run``, not from here.
"""
from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from . import fill, labs, targets


def database(directory: Path, orders: int) -> tuple[str, int]:
    """The kept SQLite database with ``orders`` Shopify orders (made on first use), and its
    channel's id."""
    path = directory / f"worker-lab-{orders}.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        from .common import upgrade
        directory.mkdir(parents=True, exist_ok=True)
        print(f"filling {path} with {orders:,} orders", file=sys.stderr, flush=True)
        upgrade(url)
        app = fill.make_app(url)
        channel_id, _ = fill.create_channel(app, "shopify", "lab shop", {
            "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_lab",
            "client_secret": targets.SHOPIFY_SECRET})
        fill.fill_orders(app, channel_id, orders)
        fill.quiet_housekeeping(app)
        app.extensions["orderhooks.db"].dispose()
    with sqlite3.connect(path) as conn:
        channel_id = conn.execute("SELECT min(id) FROM sales_channels").fetchone()[0]
    return url, channel_id


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--size", type=int, default=5000, help="deliveries per round (at most "
                                                          "--orders)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--dir", default="/tmp/orderhooks-worker-lab")
    p.add_argument("--pragma", action="append", default=[], metavar="NAME=VALUE",
                   help="an SQLite pragma for the worker's connections (repeatable)")
    args = p.parse_args(argv)
    from core.tuning import tune_for_long_run
    from core.worker import Worker

    url, channel_id = database(Path(args.dir), args.orders)
    filler = fill.make_app(url)  # its own engine: its checkpoints are not the worker's
    app = fill.make_app(url)
    db = app.extensions["orderhooks.db"]
    for pragma in args.pragma:
        name, _, value = pragma.partition("=")
        db.sqlite_pragmas[name.strip()] = value.strip()
    tune_for_long_run(app)  # as `orderhooks worker` (its connections are opened after this)
    worker = Worker(app)
    size = min(args.size, args.orders)
    rates = []
    for index in range(args.rounds):
        fill.reset_orders(filler, channel_id)
        ids = random.sample(range(1, args.orders + 1), size)
        requests = targets.shopify_requests(ids, f"lab{random.randrange(10**12)}r{index}")
        rows = list(fill.delivery_rows(filler, channel_id, "shopify", requests,
                                       datetime.utcnow()))
        fill.insert_deliveries(filler, rows)
        done, wall, cpu = labs.timed_until_idle(worker)
        if not done:
            print(f"round {index + 1}: nothing was processed", file=sys.stderr)
            return 1
        rates.append(labs.report_round(index, done, wall, cpu, "deliveries", "delivery"))
    print(f"median: {statistics.median(rates):,.0f}/s ({args.orders:,} orders, "
          f"{size:,} deliveries a round, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
