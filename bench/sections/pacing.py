"""Per-store pacing: a burst of BigCommerce deliveries over five stores of unequal size (one
has 60 %), against a stand-in that enforces BigCommerce's quota per store (150 requests per 30 s,
compressed ``--pacing-factor`` times). Measures 429s, calls per API window and per sliding window
against the quota, each store's delay from the burst landing to the outcome (a small store must
not wait behind the big one), lost deliveries, and API calls per delivery (one order read per
order is what coalescing allows)."""
from __future__ import annotations

import json
import random
import statistics
import time
from datetime import datetime, timedelta

import requests

from .. import fill, targets
from ..common import CpuMeter, log
from ..peek import Peek, as_datetime

QUOTA = 150
SHARES = [0.6, 0.1, 0.1, 0.1, 0.1]
STORES = [f"store{i + 1}" for i in range(len(SHARES))]


def run(session) -> dict:
    args = session.args
    factor = args.pacing_factor
    window = 30.0 / factor
    log(f"pacing: {args.pacing_deliveries:,} deliveries over 5 stores, quota {QUOTA} per "
        f"{window:g}s (factor {factor:g})")
    standin = session.start_standin("standin_quota", "--quota", str(QUOTA), "--window",
                                    str(window), "--default-status", "5")
    url, app = session.migrated("sqlite" if args.pacing_db == "sqlite" else "postgresql",
                                "pacing")
    channel_of, plan = {}, []
    for store, share in zip(STORES, SHARES):
        channel_of[store] = fill.create_channel(app, "bigcommerce", store, {
            "store_hash": store, "access_token": "t", "api_base_url": standin})[0]
        orders, scopes = store_plan(int(args.pacing_deliveries * share))
        plan += [(store, oid, scope) for oid, scope in scopes]
        fill.fill_orders(app, channel_of[store], orders, history=False)
    fill.quiet_housekeeping(app)
    built = burst_rows(app, channel_of, plan)
    orders_total = len({(store, oid) for store, oid, _ in plan})
    total = len(plan)
    minimum = max(deliveries_of(plan, store) for store in STORES) / QUOTA * window

    peek = Peek(url)
    ok, elapsed, load, _ = measure(session, url, peek, standin, app, built,
                                   timeout=max(120.0, minimum * 4), name="worker-pacing-")
    stats = requests.get(f"{standin}/_stats", timeout=10).json()
    calls = requests.get(f"{standin}/_calls", timeout=10).json()
    per_store = [store_figures(peek, store, channel_of[store], plan, stats.get(store, {}),
                               sorted(calls["stores"].get(store, [])), window)
                 for store in STORES]
    dead = peek.one("SELECT count(*) FROM deliveries WHERE outcome IN ('dead', 'failed')")[0]
    peek.close()
    app.extensions["orderhooks.db"].dispose()
    session.procs.stop(session.standin_procs[standin])
    all_calls = sum(p["api_calls"] for p in per_store)
    return {"deliveries": total, "orders": orders_total, "stores": 5,
            "shares": SHARES, "quota": QUOTA, "window_s": window, "factor": factor,
            "worker_procs": args.worker_procs[0], "db": args.pacing_db,
            "finished": ok, "elapsed_s": round(elapsed, 1),
            "lower_bound_s": round(minimum, 1),
            "lower_bound_coalesced_s": round(max(
                orders_of(plan, store) for store in STORES) / QUOTA * window, 1),
            "429s": sum(p["429s"] for p in per_store),
            "api_calls": all_calls,
            "api_calls_per_delivery": round(all_calls / total, 3),
            "ideal_calls_per_delivery": round(orders_total / total, 3),
            "lost": sum(p["not_done"] for p in per_store) + dead,
            "dead_or_failed": dead, "machine_load": load, "per_store": per_store}


def measure(session, url: str, peek, standin: str, app, built, timeout: float,
            name: str) -> tuple[bool, float, dict, datetime]:
    """The burst ``built`` landing on idle workers (started beforehand, stopped after): whether
    every delivery was done within ``timeout`` s, the seconds it took, the machine's load
    meanwhile, and when it landed. The stand-in's counts start at the landing."""
    workers = session.start_workers(url, session.args.worker_procs[0], name=name)
    time.sleep(2.0)  # the workers are up and idle when the burst lands
    gate = session.quiet()
    requests.post(f"{standin}/_reset", timeout=10)
    meter = CpuMeter()
    started = time.monotonic()
    burst_at = datetime.utcnow()
    land(app, built, burst_at)
    ok = session.wait_done(peek, 1, len(built), timeout=timeout, procs=workers)
    elapsed = time.monotonic() - started
    load = {**gate, **meter.read()}
    for w in workers:
        session.procs.stop(w)
    return ok, elapsed, load, burst_at


def store_plan(want: int) -> tuple[int, list[tuple[int, str]]]:
    """``want`` deliveries for one store, as BigCommerce sends them when orders are cancelled
    or shipped: per order statusUpdated + updated, and every 5th order also shipment/created.
    Returns (orders, [(order id, scope)])."""
    order_id, scopes = 0, []
    while len(scopes) < want:
        order_id += 1
        sent = ["store/order/statusUpdated", "store/order/updated"]
        if order_id % 5 == 0:
            sent.append("store/shipment/created")
        scopes += [(order_id, scope) for scope in sent[:want - len(scopes)]]
    return order_id, scopes


def deliveries_of(plan, store: str) -> int:
    return sum(1 for s, _, _ in plan if s == store)


def orders_of(plan, store: str) -> int:
    return len({oid for s, oid, _ in plan if s == store})


def arrival_order(plan) -> dict[int, int]:
    """Each planned delivery's place in the burst: orders in random order, stores interleaved;
    an order's deliveries arrive together (BigCommerce sends statusUpdated and updated at
    once), give or take a couple of other orders' deliveries in between."""
    groups: dict[tuple[str, int], list[int]] = {}
    for index, (store, oid, _scope) in enumerate(plan):
        groups.setdefault((store, oid), []).append(index)
    keys = list(groups)
    random.shuffle(keys)
    position = {}
    for rank, key in enumerate(keys):
        for index in groups[key]:
            position[index] = rank + random.uniform(0, 2)
    return {index: n for n, index in enumerate(sorted(position, key=position.get))}


def burst_rows(app, channel_of: dict, plan, **status) -> list[tuple[int, tuple]]:
    """(place in the burst, delivery row) of every planned delivery, built as the intake
    would (``channel_of``: each store's channel; ``status``: the statusUpdated deliveries'
    ``new_status`` and ``previous_status``, when not the default cancellation)."""
    arrival = arrival_order(plan)
    built = []
    for store in channel_of:
        mine = [(i, oid, scope) for i, (s, oid, scope) in enumerate(plan) if s == store]

        def reqs(mine=mine, store=store):
            for i, oid, scope in mine:
                body = targets.bigcommerce_body(store, oid, scope=scope,
                                                hash_=f"p{i}-{scope}-{oid}", **status)
                yield {"Content-Type": "application/json"}, json.dumps(body).encode()
        rows = list(fill.delivery_rows(app, channel_of[store], "bigcommerce", reqs(),
                                       datetime.utcnow()))
        built += [(arrival[i], r) for (i, _, _), r in zip(mine, rows)]
    return built


def land(app, built, burst_at: datetime) -> None:
    """The burst in one transaction: delivery n of the burst is received (and due) at
    ``burst_at`` + n µs."""
    fill.insert_deliveries(app, (
        r[:6] + (burst_at + timedelta(microseconds=n),) + r[7:11]
        + (burst_at + timedelta(microseconds=n),) for n, r in sorted(built,
                                                                      key=lambda x: x[0])))


def max_in_sliding_window(times: list[float], window: float) -> int:
    """The most calls in any ``window`` seconds (``times`` sorted)."""
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        peak = max(peak, i - j + 1)
    return peak


def max_in_fixed_windows(times: list[float], window: float) -> int:
    """The most calls in one of the stand-in's own windows, as it enforces them: a window
    opens at the first call after the previous one closed."""
    fixed, start, used = 0, None, 0
    for t in times:
        if start is None or t - start >= window:
            start, used = t, 0
        used += 1
        fixed = max(fixed, used)
    return fixed


def store_figures(peek, store: str, channel_id: int, plan, stats: dict, times: list[float],
                  window: float) -> dict:
    """One store's row: its calls against the quota, its deliveries' delays and outcomes."""
    rows = peek.all("SELECT received_at, processed_at, state, outcome FROM deliveries "
                    "WHERE channel_id = ?", (channel_id,))
    delays = [(as_datetime(p) - as_datetime(r)).total_seconds()
              for r, p, s, _ in rows if s == "done" and p is not None]
    outcomes: dict[str, int] = {}
    for _, _, s, o in rows:
        key = o or s
        outcomes[key] = outcomes.get(key, 0) + 1
    return {
        "store": store, "deliveries": len(rows), "orders": orders_of(plan, store),
        "api_calls": stats.get("calls", 0), "order_reads": stats.get("order_reads", 0),
        "shipment_reads": stats.get("shipment_reads", 0), "429s": stats.get("throttled", 0),
        "max_calls_in_api_window": max_in_fixed_windows(times, window),
        "max_calls_in_any_window": max_in_sliding_window(times, window),
        "quota": QUOTA,
        "calls_per_delivery": round(stats.get("calls", 0) / max(len(rows), 1), 2),
        "median_delay_s": round(statistics.median(delays), 1) if delays else None,
        "p95_delay_s": round(sorted(delays)[int(len(delays) * 0.95) - 1], 1)
        if delays else None,
        "max_delay_s": round(max(delays), 1) if delays else None,
        "outcomes": outcomes,
        "not_done": sum(1 for _, _, st, _ in rows if st != "done")}
