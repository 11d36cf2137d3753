"""Bursts of BigCommerce deliveries that each need reads of their own, over the five stores of
``pacing`` (one has 60 %) against the stand-in enforcing the quota per store (150 requests per
30 s, compressed ``--pacing-factor`` times):

- ``pacing_products``: product edits (``store/product/updated``, a product edited 1 to 5 times,
  its edits arriving together): one catalog read per product per batch;
- ``pacing_imports``: order imports for orders the store has and the service does not know
  yet, every other one announced by ``store/order/created`` and the rest by their payment
  (``statusUpdated`` 7 → 11, imported first): the order, its products and its shipping
  addresses, three calls each either way.

Each reports 429s, calls against the quota, API reads per product (calls per order), lost
deliveries, and whether the small stores are starved: each one's time to finish in the burst
beside its time to finish alone (the same deliveries, the other stores silent)."""
from __future__ import annotations

import json
import random
import re
import statistics
from datetime import datetime, timezone

import requests

from .. import fill
from ..common import log
from ..peek import Peek, as_datetime
from .pacing import (QUOTA, SHARES, STORES, burst_rows, max_in_fixed_windows,
                     max_in_sliding_window, measure)

#: Edits per product: uniformly 1 to 5 (3 on average), as a merchant's save or a bulk edit
#: fires several updates for one product.
EDITS_PER_PRODUCT = (1, 5)
#: The small store timed alone (every small store has the same share).
ALONE = STORES[1]
#: The read number the stand-in writes in a product's name.
READ = re.compile(r"\(read (\d+)\)")


def run_products(session) -> dict:
    rng = random.Random(16)
    return burst(session, "products", session.args.product_edits,
                 lambda want: product_plan(want, rng), calls_per_object=1,
                 webhooks=["product_update", "product_deletion"], default_status=None,
                 status={})


def run_imports(session) -> dict:
    return burst(session, "imports", session.args.import_orders, import_plan,
                 calls_per_object=3,
                 webhooks=["order_creation", "order_payment", "cancellation", "fulfillment"],
                 default_status=11, status={"previous_status": 7, "new_status": 11})


def product_plan(want: int, rng: random.Random) -> list[tuple[int, str]]:
    """``want`` product edits for one store: products 1, 2, ... each edited 1 to 5 times."""
    plan, product = [], 0
    while len(plan) < want:
        product += 1
        plan += [(product, "store/product/updated")] * rng.randint(*EDITS_PER_PRODUCT)
    return plan[:want]


def import_plan(want: int) -> list[tuple[int, str]]:
    """``want`` new orders for one store (the stand-in has every order, Awaiting Fulfillment):
    odd ones announced by their store/order/created, even ones by their payment alone (a
    statusUpdated out of Awaiting Payment, as when its creation arrives late)."""
    return [(order_id, "store/order/created" if order_id % 2 else "store/order/statusUpdated")
            for order_id in range(1, want + 1)]


def burst(session, name: str, total: int, plan_for, calls_per_object: int,
          webhooks: list[str], default_status: int | None, status: dict) -> dict:
    """The burst over the five stores, then the small store ``ALONE`` by itself.
    ``calls_per_object``: the calls one product (order) needs at best; ``status``: what the
    statusUpdated deliveries say (``pacing.burst_rows``)."""
    args = session.args
    window = 30.0 / args.pacing_factor
    log(f"pacing_{name}: {total:,} deliveries over 5 stores, quota {QUOTA} per {window:g}s "
        f"(factor {args.pacing_factor:g})")
    extra = ["--quota", str(QUOTA), "--window", str(window)]
    if default_status is not None:
        extra += ["--default-status", str(default_status)]
    standin = session.start_standin(f"standin_{name}", *extra)
    plan = []
    for store, share in zip(STORES, SHARES):
        plan += [(store, oid, scope) for oid, scope in plan_for(int(total * share))]
    try:
        together = land_and_wait(session, standin, f"pacing_{name}", plan, webhooks, window,
                                 calls_per_object, status)
        alone = land_and_wait(session, standin, f"pacing_{name}_alone",
                              [p for p in plan if p[0] == ALONE], webhooks, window,
                              calls_per_object, status)
    finally:
        session.procs.stop(session.standin_procs[standin])
    per_store = together["per_store"]
    for row in per_store:
        if row["store"] == ALONE:
            row["finish_alone_s"] = alone["per_store"][0]["finish_s"]
    calls = sum(x["api_calls"] for x in per_store)
    objects = sum(x["objects"] for x in per_store)
    return {"kind": name, "deliveries": len(plan), "objects": objects, "stores": 5,
            "shares": SHARES, "quota": QUOTA, "window_s": window, "factor": args.pacing_factor,
            "worker_procs": args.worker_procs[0], "db": args.pacing_db,
            "finished": together["finished"] and alone["finished"],
            "elapsed_s": together["elapsed_s"], "lower_bound_s": together["lower_bound_s"],
            "429s": together["429s"] + alone["429s"], "api_calls": calls,
            "api_calls_per_object": round(calls / max(objects, 1), 3),
            "same_batch_rereads": sum(x["same_batch_rereads"] for x in per_store),
            "ideal_calls_per_object": calls_per_object,
            "lost": together["lost"] + alone["lost"],
            "alone": {"store": ALONE, "finish_s": alone["per_store"][0]["finish_s"],
                      "429s": alone["429s"], "api_calls": alone["per_store"][0]["api_calls"],
                      "machine_load": alone["machine_load"]},
            "machine_load": together["machine_load"], "per_store": per_store}


def land_and_wait(session, standin: str, tag: str, plan, webhooks: list[str],
                  window: float, calls_per_object: int, status: dict) -> dict:
    """One burst on a fresh database: a channel per store of ``plan``, its deliveries landing
    at once, the workers started beforehand; then each store's figures."""
    args = session.args
    url, app = session.migrated("sqlite" if args.pacing_db == "sqlite" else "postgresql", tag)
    stores = list(dict.fromkeys(store for store, _, _ in plan))
    channel_of = {store: fill.create_channel(app, "bigcommerce", store, {
        "store_hash": store, "access_token": "t", "api_base_url": standin},
        webhooks=webhooks)[0] for store in stores}
    fill.quiet_housekeeping(app)
    built = burst_rows(app, channel_of, plan, **status)
    peek = Peek(url)
    # The busiest store's calls at the quota, at best.
    objects = max(len({oid for s, oid, _ in plan if s == store}) for store in stores)
    minimum = objects * calls_per_object / QUOTA * window
    ok, elapsed, load, burst_at = measure(session, url, peek, standin, app, built,
                                          timeout=max(120.0, minimum * 4),
                                          name=f"worker-{tag}-")
    stats = requests.get(f"{standin}/_stats", timeout=10).json()
    calls = requests.get(f"{standin}/_calls", timeout=10).json()
    reads = requests.get(f"{standin}/_products", timeout=10).json()
    per_store = [store_figures(peek, store, channel_of[store], plan, burst_at,
                               stats.get(store, {}), sorted(calls["stores"].get(store, [])),
                               reads.get(store, {}), window) for store in stores]
    dead = peek.one("SELECT count(*) FROM deliveries WHERE outcome IN ('dead', 'failed')")[0]
    peek.close()
    app.extensions["orderhooks.db"].dispose()
    return {"finished": ok, "elapsed_s": round(elapsed, 1), "lower_bound_s": round(minimum, 1),
            "429s": sum(p["429s"] for p in per_store),
            "lost": sum(p["not_done"] for p in per_store) + dead, "machine_load": load,
            "per_store": per_store}


def store_figures(peek, store: str, channel_id: int, plan, burst_at: datetime, stats: dict,
                  times: list[float], reads: dict, window: float) -> dict:
    """One store's row: its calls against the quota, reads per object (product or order), the
    reads of a product within one batch beyond its first (``same_batch_rereads``), and its time
    from the burst landing to its last outcome."""
    rows = peek.all("SELECT processed_at, state, outcome, intents FROM deliveries "
                    "WHERE channel_id = ?", (channel_id,))
    done = [as_datetime(p) for p, s, _, _ in rows if s == "done" and p is not None]
    delays = sorted((p - burst_at).total_seconds() for p in done)
    outcomes: dict[str, int] = {}
    #: (product id, read number) -> when the first delivery that read served was recorded
    served: dict[tuple[str, int], float] = {}
    for processed, s, o, intents in rows:
        outcomes[o or s] = outcomes.get(o or s, 0) + 1
        for intent in (json.loads(intents) if isinstance(intents, str) else intents) or ():
            match = READ.search(str(intent.get("title") or ""))
            if intent.get("kind") == "UpsertProduct" and match and processed is not None:
                key = (str(intent.get("product_id")), int(match.group(1)))
                at = as_datetime(processed).replace(tzinfo=timezone.utc).timestamp()
                served[key] = min(at, served.get(key, at))
    objects = len({oid for s, oid, _ in plan if s == store})
    product_reads = stats.get("product_reads", 0)
    order_calls = {k: stats.get(k, 0) for k in ("order_reads", "order_product_reads",
                                                 "address_reads", "shipment_reads")}
    imported = peek.one("SELECT count(*) FROM orders WHERE channel_id = ?", (channel_id,))[0]
    return {
        "store": store, "deliveries": len(rows), "objects": objects,
        "api_calls": stats.get("calls", 0), "429s": stats.get("throttled", 0),
        "product_reads": product_reads,
        "reads_per_product": round(product_reads / objects, 3) if product_reads else None,
        "products_read_more_than_once": sum(1 for t in reads.values() if len(t) > 1),
        "same_batch_rereads": same_batch_rereads(reads, served),
        "edits_per_read": round(sum(1 for s, _, _ in plan if s == store) / len(served), 2)
        if served else None,
        **order_calls, "order_calls": sum(order_calls.values()), "orders_imported": imported,
        "calls_per_order": round(sum(order_calls.values()) / objects, 3)
        if any(order_calls.values()) else None,
        "max_calls_in_api_window": max_in_fixed_windows(times, window),
        "max_calls_in_any_window": max_in_sliding_window(times, window), "quota": QUOTA,
        "median_delay_s": round(statistics.median(delays), 1) if delays else None,
        "finish_s": round(delays[-1], 1) if delays else None,
        "outcomes": outcomes, "not_done": sum(1 for _, s, _, _ in rows if s != "done")}


def same_batch_rereads(reads: dict[str, list[float]],
                       served: dict[tuple[str, int], float]) -> int:
    """Reads of a product made in the same batch as its read before: with one worker process,
    a batch makes all its reads before it records any of its deliveries, and the next batch
    reads only after that, so read n+1 came in read n's batch exactly when it was made before
    the first delivery read n served was recorded. ``reads``: each product's read times (the
    stand-in's); ``served``: when each (product, read number) first served a delivery."""
    count = 0
    for product, times in reads.items():
        for number, later in enumerate(sorted(times)[1:], start=1):
            recorded = served.get((product, number))
            if recorded is not None and later < recorded:
                count += 1
    return count
