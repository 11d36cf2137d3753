"""Worker throughput: applied deliveries per second from a pre-filled inbox, every delivery
applicable (Shopify full payload; BigCommerce thin, against the stand-in), per database size,
channel and number of ``orderhooks worker`` processes.

Every database size is filled first, then ``--rounds`` rounds measure each size in turn: a slow
moment of the machine then lands on every size, not on one, and "vs smallest db" is the median
of each round's own ratio."""
from __future__ import annotations

import random
import statistics
import time
from datetime import datetime

from .. import fill
from ..common import CpuMeter, log, median_round, tree_cpu
from ..peek import Peek, as_datetime


def run(session) -> list[dict]:
    rows = []
    for db in session.dbs:
        rows.extend(rounds(session, db))
    return rows


def rounds(session, db: str) -> list[dict]:
    """Each (channel, worker processes, orders) row: its median round, with its ratio to the
    smallest database's run of the same round."""
    args = session.args
    dbs = {orders: filled_db(session, db, orders) for orders in args.orders}
    results: dict[tuple, list[dict]] = {}
    try:
        for index in range(args.rounds):
            if args.rounds > 1:
                log(f"worker: round {index + 1} of {args.rounds} ({db})")
            for orders, (url, app, peek, per_channel, channel_ids, fill_s) in dbs.items():
                for channel in session.channels:
                    for procs_count in args.worker_procs:
                        results.setdefault((channel, procs_count, orders), []).append(
                            measure(session, app, peek, url, db, orders, per_channel, channel,
                                    channel_ids[channel], procs_count, fill_s))
    finally:
        for _url, app, peek, *_ in dbs.values():
            peek.close()
            app.extensions["orderhooks.db"].dispose()
    rows = []
    smallest = min(args.orders)
    for (channel, procs_count, orders), runs in sorted(
            results.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        row = median_round(runs, "applied_per_s")
        small = results[(channel, procs_count, smallest)]
        ratios = [run["applied_per_s"] / base["applied_per_s"] if base["applied_per_s"]
                  else 0.0 for run, base in zip(runs, small)]
        row["vs_smallest_db_rounds"] = [round(x, 3) for x in ratios]
        row["vs_smallest_db"] = round(statistics.median(ratios), 3)
        rows.append(row)
    return rows


def filled_db(session, db: str, orders: int):
    """A database (its own, so every size stays at hand) with ``orders`` orders per the
    channels together. Returns (url, app, peek, orders per channel, channel ids, fill s)."""
    log(f"worker: filling {db} with {orders:,} orders")
    url, app = session.migrated(db, f"worker{orders}", separate=True)
    per_channel = orders // len(session.channels)
    channel_ids = {}
    started = time.monotonic()
    for channel in session.channels:
        channel_ids[channel] = session.make_channel(app, channel, "benchworker")
        fill.fill_orders(app, channel_ids[channel], per_channel)
    fill_seconds = time.monotonic() - started
    fill.quiet_housekeeping(app)
    return url, app, Peek(url), per_channel, channel_ids, fill_seconds


def measure(session, app, peek, url, db, orders, per_channel, channel, channel_id,
            procs_count, fill_seconds) -> dict:
    """``--worker-deliveries`` deliveries through ``procs_count`` workers, in batches of at
    most one delivery per order (each batch's orders reset to applicable first)."""
    total = session.args.worker_deliveries
    log(f"worker: {channel} on {db}, {orders:,} orders, {procs_count} worker process(es), "
        f"{total:,} deliveries")
    workers = session.start_workers(url, procs_count, name=f"worker-{channel}-")
    time.sleep(2.0)  # imports and first idle poll: not part of the measurement
    standin = session.standin_procs[session.standin()]
    remaining, batches, applied, processed, seconds, timed = total, 0, 0, 0, 0.0, 0
    lost, loads, worker_cpu, api_cpu = 0, [], 0.0, 0.0
    try:
        while remaining > 0:
            size = min(remaining, per_channel)
            fill.reset_orders(app, channel_id)
            ids = random.sample(range(1, per_channel + 1), size)
            first_id = (peek.one("SELECT coalesce(max(id), 0) FROM deliveries")[0]) + 1
            tag = f"{db}{orders}{procs_count}r{batches}{random.randrange(10**9)}"
            rows = list(fill.delivery_rows(app, channel_id, channel,
                                           session.requests_for(channel, ids, tag,
                                                                "benchworker"),
                                           datetime.utcnow()))
            gate = session.quiet()
            meter = CpuMeter()
            cpu0 = sum(tree_cpu(w) for w in workers)
            api0 = tree_cpu(standin)
            fill.insert_deliveries(app, rows)
            ok = session.wait_done(peek, first_id, size, timeout=max(120, size / 20),
                                   procs=workers)
            worker_cpu += sum(tree_cpu(w) for w in workers) - cpu0
            api_cpu += tree_cpu(standin) - api0
            loads.append({**gate, **meter.read()})
            got = span(session, peek, first_id, procs_count)
            lost += size - got["count"]
            applied += got["applied"]
            processed += got["count"]
            seconds += got["seconds"]
            timed += got["timed"]
            remaining -= size
            batches += 1
            if not ok:
                session.notes.append(f"worker {channel}/{db}/{orders}: timed out")
                break
    finally:
        for w in workers:
            session.procs.stop(w)
    rate = timed / seconds if seconds else 0.0
    return {"db": db, "orders": orders, "channel": channel, "worker_procs": procs_count,
            "deliveries": processed, "applied": applied, "rounds": batches,
            "seconds": round(seconds, 2), "applied_per_s": round(rate * applied /
                                                                 max(processed, 1), 1),
            "processed_per_s": round(rate, 1), "not_done": lost,
            "worker_cpu_ms_per_delivery": round(1000 * worker_cpu / max(processed, 1), 3),
            "standin_cpu_ms_per_delivery": round(1000 * api_cpu / max(processed, 1), 3)
            if channel == "bigcommerce" else None,
            "fill_seconds": round(fill_seconds, 1),
            "machine_load": {"foreign_cores": max(x["foreign_cores"] for x in loads),
                             "rounds": loads} if loads else {}}


def span(session, peek: Peek, first_id: int, procs: int = 1) -> dict:
    """A batch's deliveries, and the time its workers took for them. The clock starts at the
    end of each worker's first batch: ``processed_at`` is stamped while a batch is recorded,
    so the first batch's claim and translation come before any stamp, and counting from the
    first stamp would give B batches' deliveries B - 1 batches' time (flattering short
    rounds). So: the deliveries after the first ``WORKER_BATCH`` stamps of each worker process
    (``procs`` first batches), over the time from the last of those stamps to the last."""
    row = peek.one("SELECT count(*), max(processed_at), "
                   "sum(CASE WHEN outcome = 'applied' THEN 1 ELSE 0 END) "
                   "FROM deliveries WHERE id >= ? AND state = 'done'", (first_id,))
    count, hi, applied = row
    skip = min(session.worker_batch * procs, count)
    start = peek.one("SELECT processed_at FROM deliveries WHERE id >= ? AND state = 'done' "
                     "ORDER BY processed_at LIMIT 1 OFFSET ?", (first_id, max(0, skip - 1)))
    seconds = ((as_datetime(hi) - as_datetime(start[0])).total_seconds()
               if count > skip and start else 0.0)
    return {"count": count, "applied": int(applied or 0), "seconds": seconds,
            "timed": count - skip if seconds else 0}
