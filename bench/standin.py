"""A local stand-in for the BigCommerce API, on loopback: orders (with their products and shipping
addresses), shipments, catalog products, hooks, and per-store rate limits like the real one
(quota per window, ``X-Rate-Limit-*`` headers, 429 with ``X-Retry-After``). For the README
walkthrough, manual testing and the benchmark.

    python -m bench.standin --port 8001 [--quota 150 --window 30] [--default-status 5]

Set a channel's ``api_base_url`` to ``http://127.0.0.1:8001``, and start orderhooks with
``ORDERHOOKS_ALLOWED_API_BASE_URLS=http://127.0.0.1:8001`` (it calls only a channel's own API
otherwise). Control endpoints: ``PUT
/stores/<hash>/v2/orders/<id>`` with ``{"status_id": 5}`` sets an order; ``POST
.../shipments`` adds a shipment; ``GET /_stats`` reports calls and 429s per store; ``GET /_calls``
the times of the calls each store was served (the benchmark's sliding-window check); ``GET
/_products`` when each product was read. Every product exists (``GET
/v3/catalog/products/<id>``, the published sample's shape with two variants); its name says how
many times it was read, so a delivery's recorded intent names the read that served it. Every
order's products and shipping addresses are the published samples'.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

from flask import Flask, jsonify, request

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bigcommerce"


def create_standin(quota: int = 0, window: float = 30.0, default_status: int | None = None):
    app = Flask("bigcommerce-standin")
    lock = threading.Lock()
    orders: dict[tuple[str, str], dict] = {}
    shipments: dict[tuple[str, str], list] = defaultdict(list)
    hooks: dict[str, dict[int, dict]] = defaultdict(dict)
    ids = itertools.count(1)
    stats = defaultdict(lambda: {"calls": 0, "throttled": 0, "order_reads": 0,
                                 "shipment_reads": 0, "order_product_reads": 0,
                                 "address_reads": 0, "product_reads": 0})
    #: store -> product id -> the wall-clock times (Unix seconds) of the reads served
    product_reads: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    samples = _samples()
    windows: dict[str, tuple[float, int]] = {}
    #: Monotonic times of the calls each store was served (not 429s), for the benchmark.
    served: dict[str, list[float]] = defaultdict(list)

    @app.before_request
    def rate_limit():
        if request.path.startswith("/_"):
            return None
        store = request.view_args.get("store") if request.view_args else None
        if store is None:
            return None
        with lock:
            stats[store]["calls"] += 1
            if not quota:
                served[store].append(time.monotonic())
                return None
            now = time.monotonic()
            start, used = windows.get(store, (now, 0))
            if now - start >= window:
                start, used = now, 0
            reset_ms = int((window - (now - start)) * 1000)
            if used >= quota:
                stats[store]["throttled"] += 1
                response = jsonify({"status": 429, "title": "Too many requests"})
                response.status_code = 429
                response.headers["X-Retry-After"] = str(max(1, reset_ms // 1000))
                response.headers["X-Rate-Limit-Time-Reset-Ms"] = str(reset_ms)
                return response
            windows[store] = (start, used + 1)
            served[store].append(now)
            request.environ["standin.limits"] = (quota - used - 1, reset_ms)
        return None

    @app.after_request
    def limit_headers(response):
        limits = request.environ.get("standin.limits")
        if limits:
            response.headers["X-Rate-Limit-Requests-Left"] = str(limits[0])
            response.headers["X-Rate-Limit-Time-Reset-Ms"] = str(limits[1])
            response.headers["X-Rate-Limit-Requests-Quota"] = str(quota)
            response.headers["X-Rate-Limit-Time-Window-Ms"] = str(int(window * 1000))
        return response

    @app.route("/stores/<store>/v2/orders/<order_id>", methods=["GET", "PUT"])
    def order(store, order_id):
        key = (store, order_id)
        with lock:
            if request.method == "PUT":
                current = orders.get(key) or _order(order_id, 1)
                current.update(request.get_json(force=True))
                orders[key] = current
                return jsonify(current)
            stats[store]["order_reads"] += 1
            found = orders.get(key)
            if found is None and default_status is not None:
                found = _order(order_id, default_status)
        if found is None:
            return jsonify([{"status": 404, "message": "The requested resource was not found."}]), 404
        return jsonify(found)

    @app.route("/stores/<store>/v2/orders/<order_id>/shipments", methods=["GET", "POST"])
    def order_shipments(store, order_id):
        key = (store, order_id)
        with lock:
            if request.method == "POST":
                shipment = {"id": next(ids), "order_id": int(order_id) if order_id.isdigit()
                            else order_id, **request.get_json(force=True)}
                shipments[key].append(shipment)
                return jsonify(shipment), 201
            stats[store]["shipment_reads"] += 1
            found = list(shipments.get(key, []))
        if not found:
            return "", 204
        return jsonify(found)

    #: The order's lists an import reads, each the published sample, and its counter.
    order_lists = {"products": ("order_product_reads", "order_products"),
                   "shipping_addresses": ("address_reads", "addresses")}

    @app.get("/stores/<store>/v2/orders/<order_id>/<part>")
    def order_list(store, order_id, part):
        if part not in order_lists:
            return jsonify([{"status": 404, "message": "Not found."}]), 404
        counter, sample = order_lists[part]
        with lock:
            stats[store][counter] += 1
        rows = copy.deepcopy(samples[sample])
        for row in rows:
            row["order_id"] = int(order_id) if order_id.isdigit() else order_id
        return jsonify(rows)

    @app.get("/stores/<store>/v3/catalog/products/<int:product_id>")
    def product(store, product_id):
        with lock:
            stats[store]["product_reads"] += 1
            product_reads[store][str(product_id)].append(time.time())
            read = len(product_reads[store][str(product_id)])
        data = copy.deepcopy(samples["product"])
        data.update(id=product_id, name=f"Product {product_id} (read {read})",
                    sku=f"P-{product_id}")
        data["variants"] = [{**v, "product_id": product_id, "id": product_id * 10 + n,
                             "sku": f"P-{product_id}-{n}"}
                            for n, v in enumerate(copy.deepcopy(samples["variants"])[:2])]
        return jsonify({"data": data, "meta": {}})

    @app.route("/stores/<store>/v3/hooks", methods=["GET", "POST"])
    def hook_list(store):
        with lock:
            if request.method == "POST":
                body = request.get_json(force=True)
                hook = {"id": next(ids), "client_id": "standin", "store_hash": store,
                        "created_at": int(time.time()), "updated_at": int(time.time()), **body}
                hooks[store][hook["id"]] = hook
                return jsonify({"data": hook, "meta": {}})
            return jsonify({"data": list(hooks[store].values()),
                            "meta": {"pagination": {"total": len(hooks[store]),
                                                    "total_pages": 1}}})

    @app.route("/stores/<store>/v3/hooks/<int:hook_id>", methods=["PUT", "DELETE"])
    def hook(store, hook_id):
        with lock:
            if hook_id not in hooks[store]:
                return jsonify({"status": 404, "title": "hook not found"}), 404
            if request.method == "DELETE":
                return jsonify({"data": hooks[store].pop(hook_id), "meta": {}})
            hooks[store][hook_id].update(request.get_json(force=True))
            return jsonify({"data": hooks[store][hook_id], "meta": {}})

    @app.get("/_stats")
    def get_stats():
        with lock:
            return jsonify({store: dict(s) for store, s in stats.items()})

    @app.get("/_calls")
    def get_calls():
        """Times (monotonic seconds) of the calls each store was served, and the quota."""
        with lock:
            return jsonify({"quota": quota, "window": window,
                            "stores": {store: list(t) for store, t in served.items()}})

    @app.get("/_products")
    def get_products():
        """The times (Unix seconds) of the reads served, per product, per store."""
        with lock:
            return jsonify({store: dict(reads) for store, reads in product_reads.items()})

    @app.post("/_reset")
    def reset():
        with lock:
            stats.clear()
            product_reads.clear()
            windows.clear()
            served.clear()
        return jsonify({"ok": True})

    return app


def _order(order_id: str, status_id: int) -> dict:
    """An order as ``GET /v2/orders/<id>`` answers, with what an import reads from it."""
    return {"id": int(order_id) if order_id.isdigit() else order_id, "status_id": status_id,
            "status": "", "items_total": 1, "items_shipped": 1 if status_id in (2, 10) else 0,
            "is_deleted": False, "date_shipped": "", "date_modified": "",
            "date_created": "Tue, 20 Nov 2012 00:00:00 +0000", "currency_code": "USD",
            "total_inc_tax": "111.9800", "subtotal_inc_tax": "111.9800", "total_tax": "0.0000",
            "customer_id": 11, "billing_address": {
                "first_name": "Jane", "last_name": "Doe", "street_1": "1 Main St",
                "city": "Austin", "state": "Texas", "zip": "78701", "country": "United States",
                "country_iso2": "US", "email": "jane@example.com", "phone": ""}}


def _samples() -> dict:
    """The published samples the answers are made from."""
    def load(name):
        return json.loads((FIXTURES / name).read_text())
    product = load("v3_catalog_product.json")["data"]
    return {"order_products": load("v2_order_products.json"),
            "addresses": load("v2_order_shipping_addresses.json"),
            "product": product, "variants": load("v3_catalog_product_variants.json")["data"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--quota", type=int, default=0, help="requests per window per store "
                                                              "(0: unlimited)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds")
    parser.add_argument("--default-status", type=int, default=None,
                        help="status_id of orders never PUT (default: they are 404)")
    args = parser.parse_args()
    create_standin(args.quota, args.window, args.default_status).run(
        args.host, args.port, threaded=True)


if __name__ == "__main__":
    main()
