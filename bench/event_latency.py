"""Time from a channel delivery's 2xx to its event's arrival at a loopback webhook receiver.

Real processes (tests/reliability/live.py's Stack): gunicorn with the intake, one
``orderhooks worker`` (the worker and its outbound sender) with the default idle sleep, the
BigCommerce stand-in (each cancellation reads its order there once) and a threaded http.server
receiver. Deliveries are sent open loop at a fixed rate, each to its own order; for each, the
latency is from the moment its 2xx was read to the moment the receiver got the signed
``order.cancelled`` POST for that order.

    python -m bench.event_latency --sqlite --rate 100 --seconds 20
    python -m bench.event_latency --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_events
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import RESULTS, fresh_database, log, machine, upgrade
from tests.reliability.live import Stack, delivery_body, wait_for
from tests.webhook_receiver import Receiver


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(database_url: str, rate: float, seconds: float, workdir: Path,
        idle: float = 0.5) -> dict:
    receiver = Receiver()
    count = int(rate * seconds)
    # INFO: the Stack waits for the worker's ``worker.started`` line before the clock starts
    env = {"ORDERHOOKS_ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
           "ORDERHOOKS_WORKER_IDLE_SECONDS": str(idle), "ORDERHOOKS_LOG_LEVEL": "INFO"}
    acked: dict[int, float] = {}
    try:
        with Stack(database_url, workdir / "live", env=env) as stack:
            stack.start_standin(default_status=5)
            stack.start_web(workers=2)
            channel = stack.create_channel("lat")
            stack.admin("POST", "/webhook-endpoints", 201,
                        json={"url": receiver.url("/hooks"), "event_types": ["order.cancelled"]})
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: stack.create_order(channel["id"], n), range(count)))
            stack.start_worker()
            time.sleep(2.0)  # the worker is up and idle
            bodies = [delivery_body("lat", n)[0] for n in range(count)]
            local = threading.local()
            errors = []

            def send(n: int, due: float) -> None:
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                response = stack.post_delivery(channel, bodies[n], session=local.session)
                if response.status_code == 200:
                    acked[n] = time.monotonic()
                else:
                    errors.append(response.status_code)

            log(f"sending {count} deliveries at {rate}/s")
            start = time.monotonic() + 0.5
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda n: send(n, start + n / rate), range(count)))
            wait_for(lambda: len({r.headers.get("webhook-id") for r in receiver.at("/hooks")})
                     >= len(acked), 120, what="every event at the receiver")
    finally:
        receiver.stop()
    arrived: dict[int, float] = {}
    for got in receiver.at("/hooks"):
        order_id = int(json.loads(got.body)["data"]["order"]["channel_order_id"])
        arrived.setdefault(order_id, got.at)
    latencies = [(arrived[n] - acked[n]) * 1000 for n in acked if n in arrived]
    return {"deliveries": count, "acknowledged": len(acked), "errors": len(errors),
            "arrived": len(latencies), "rate": rate,
            "p50_ms": round(statistics.median(latencies), 1),
            "p90_ms": round(percentile(latencies, 0.90), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=0.5, help="the worker's idle sleep: a "
                        "long one shows what the doorbell saves")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    results = []
    for kind in (["sqlite"] if args.sqlite else []) + (["postgresql"] if args.pg_url else []):
        url = fresh_database(kind, "events", workdir, args.pg_url or "")
        upgrade(url)
        result = {"db": kind, "idle_seconds": args.idle, **run(url, args.rate, args.seconds, workdir / kind, args.idle)}
        log(json.dumps(result))
        results.append(result)
    report = {"machine": machine(), "results": results}
    (RESULTS / "event-latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
