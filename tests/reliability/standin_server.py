"""The BigCommerce stand-in (bench/standin.py) plus what the reliability tests need on top:
injected faults and scripted order statuses. Loopback only.

    python -m tests.reliability.standin_server --port P [--default-status 5]

Control endpoints (JSON):

* ``POST /_faults {"status": 500|429|null, "retry_after": "60"|null, "delay": 0.5,
  "count": -1}`` — the next ``count`` API calls (-1: all, until changed) wait ``delay`` seconds
  and, if ``status`` is set, answer it (429 with ``X-Retry-After: retry_after`` when given).
* ``POST /_script {"store": "s", "order_id": "7", "statuses": [5, 2]}`` — successive reads of
  that order answer the listed status ids in turn (cycling), e.g. to race a cancel with a ship.
"""
from __future__ import annotations

import argparse
import itertools
import threading
import time

from flask import jsonify, request

from bench.standin import _order, create_standin


def create(default_status: int | None = None):
    app = create_standin(default_status=default_status)
    lock = threading.Lock()
    faults = {"status": None, "retry_after": None, "delay": 0.0, "count": 0}
    scripts: dict[tuple[str, str], itertools.cycle] = {}

    @app.before_request
    def inject():
        if request.path.startswith("/_") or not request.path.startswith("/stores/"):
            return None
        with lock:
            if faults["count"] == 0:
                return None
            if faults["count"] > 0:
                faults["count"] -= 1
            status, retry_after, delay = (faults["status"], faults["retry_after"],
                                          faults["delay"])
        if delay:
            time.sleep(delay)
        if status is None:
            return None
        response = jsonify({"status": status, "title": "injected fault"})
        response.status_code = status
        if retry_after is not None:
            response.headers["X-Retry-After"] = str(retry_after)
        return response

    @app.before_request
    def scripted():
        args = request.view_args or {}
        if request.method != "GET" or request.endpoint != "order":
            return None
        key = (args.get("store"), args.get("order_id"))
        with lock:
            cycle = scripts.get(key)
            status = next(cycle) if cycle is not None else None
        if status is None:
            return None
        return jsonify(_order(key[1], status))

    @app.post("/_faults")
    def set_faults():
        data = request.get_json(force=True)
        with lock:
            faults.update({"status": data.get("status"), "retry_after": data.get("retry_after"),
                           "delay": float(data.get("delay") or 0.0),
                           "count": int(data.get("count", -1))})
        return jsonify(faults)

    @app.post("/_script")
    def set_script():
        data = request.get_json(force=True)
        with lock:
            scripts[(data["store"], str(data["order_id"]))] = itertools.cycle(
                [int(s) for s in data["statuses"]])
        return jsonify({"ok": True})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--default-status", type=int, default=None)
    args = parser.parse_args()
    create(args.default_status).run("127.0.0.1", args.port, threaded=True)


if __name__ == "__main__":
    main()
