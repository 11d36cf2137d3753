"""Worker throughput for Shopify product deliveries: one worker, in-process, on a fresh SQLite
database, from a pre-filled inbox of ``products/update`` deliveries built from the published
sample (two variants each) and named by the adapter's own ``inspect``.

    PYTHONPATH=$PWD python -m bench.products_worker [--deliveries 5000] [--products 5000]

``--products`` below ``--deliveries``: each product is edited several times (newer each time).
Prints deliveries per second (wall and CPU) and the outcomes."""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from . import fill, targets
from .common import upgrade

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shopify" / \
    "products_update.json"


def requests(deliveries: int, products: int):
    sample = json.loads(SAMPLE.read_text())
    for n in range(deliveries):
        product = copy.deepcopy(sample)
        product_id = 10**17 + n % products
        product.update({"id": product_id, "title": f"Product {n}",
                        "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
                        "updated_at": f"2022-01-01T{n // products // 60 % 24:02d}:"
                                      f"{n // products % 60:02d}:00Z"})
        for variant in product["variants"]:
            variant["id"] += n % products
            variant["product_id"] = product_id
        body = json.dumps(product).encode()
        yield targets.shopify_headers(body, f"wh-{n}", topic="products/update"), body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--products", type=int, default=5000)
    args = parser.parse_args()
    from core.tuning import tune_for_long_run
    from core.worker import Worker
    url = f"sqlite:///{tempfile.mkdtemp()}/products.db"
    upgrade(url)
    app = fill.make_app(url)
    channel_id = fill.create_channel(app, "shopify", "bench shop", {
        "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
        "client_secret": targets.SHOPIFY_SECRET})[0]
    fill.quiet_housekeeping(app)
    tune_for_long_run(app)  # as `orderhooks worker` does
    fill.insert_deliveries(app, fill.delivery_rows(
        app, channel_id, "shopify", requests(args.deliveries, args.products), datetime.utcnow()))
    worker = Worker(app, name="bench-products")
    started, cpu = time.perf_counter(), time.process_time()
    done = worker.run_until_idle(max_rounds=10**6)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with app.extensions["orderhooks.db"].engine.connect() as conn:
        outcomes = dict(conn.execute(text(
            "SELECT outcome, count(*) FROM deliveries GROUP BY outcome")).all())
        products = conn.execute(text("SELECT count(*) FROM products")).scalar()
    # CPU time too: on a machine shared with other work, wall time measures the neighbours.
    print(f"{done:,} deliveries in {seconds:.2f} s: {done / seconds:,.0f}/s; "
          f"{1000 * cpu / done:.2f} ms CPU each ({done / cpu:,.0f} per CPU second); outcomes "
          f"{outcomes}; {products:,} products")


if __name__ == "__main__":
    main()
