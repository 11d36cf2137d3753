"""Durability under crashes: a burst of deliveries over several channels into gunicorn (several
workers, real socket on 127.0.0.1) while web workers and ``orderhooks worker`` processes are
killed with SIGKILL at random moments. Then every delivery that was not answered 2xx is sent
again (as a channel would), and the database is checked: every acknowledged delivery stored, every
delivery's effect applied exactly once.

    python -m bench.chaos                     # 2,000 deliveries, PostgreSQL on 127.0.0.1:5432
    python -m bench.chaos --deliveries 300 --sqlite

With PostgreSQL it uses (drops and re-creates) its own database, ``orderhooks_chaos``. The
short version runs in CI as tests/reliability/test_durability.py.

Each delivery concerns its own order, which the BigCommerce stand-in reads as Cancelled, so its
one correct effect is one ``cancelled`` line in its order's history, naming the delivery.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.live import (Stack, db_engine, delivery_body,  # noqa: E402
                                    processed_log_counts, rows, scalar, wait_for)

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/orderhooks_chaos"


def prepare_database(url: str | None, sqlite: bool = False) -> str:
    """A fresh, migrated database: a temporary SQLite file, or ``url``'s PostgreSQL database
    dropped and re-created."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from core.db import Database
    if sqlite or (url or "").startswith("sqlite"):
        url = url or f"sqlite:///{tempfile.mkdtemp(prefix='orderhooks-chaos-')}/chaos.db"
    else:
        url = url or DEFAULT_PG
        parsed = make_url(url)
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    db = Database(url)
    db.upgrade()
    db.dispose()
    return url


class Chaos(threading.Thread):
    """Kills a random gunicorn worker or worker process every few hundred milliseconds; dead
    worker processes are started again (as ``orderhooks serve`` or systemd would). Only
    processes that have been up for ``min_age`` seconds are killed (a process killed while it
    boots proves nothing), and the killing stops after ``max_seconds``."""

    def __init__(self, stack: Stack, workers: int, interval: tuple[float, float], seed: int,
                 min_age: float = 1.5, max_seconds: float = 600.0):
        super().__init__(daemon=True)
        self.stack, self.workers, self.interval = stack, workers, interval
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.kills = Counter()
        self.min_age, self.max_seconds = min_age, max_seconds
        self._seen: dict[int, float] = {}  # pid -> when it was first seen ready
        self._ready: set[int] = set()

    def run(self) -> None:
        ends = time.monotonic() + self.max_seconds
        while not self.stopping.wait(self.random.uniform(*self.interval)):
            if time.monotonic() > ends:
                break
            now = time.monotonic()
            if sum(self.kills.values()) % 2 == 0:  # web and worker in turn
                pids = self.stack.web_workers()
                for pid in pids:
                    if self._ready_web(pid):
                        self._seen.setdefault(pid, now)
                ripe = [p for p in pids if now - self._seen.get(p, now) >= self.min_age]
                if ripe:
                    _kill(self.random.choice(ripe))
                    self.kills["web"] += 1
            else:
                ripe = [w for w in self.stack.live_workers()
                        if now - w.started >= self.min_age and self._ready_worker(w)]
                if ripe:
                    victim = self.random.choice(ripe)
                    victim.signal(signal.SIGKILL)
                    victim.popen.wait(timeout=10)
                    self.kills["worker"] += 1
            self.respawn()

    def _ready_web(self, pid: int) -> bool:
        """A gunicorn worker has loaded the app once its metrics file exists (the app's
        metrics module creates it on import)."""
        return (self.stack.metrics_dir / f"gauge_mostrecent_{pid}.db").exists()

    def _ready_worker(self, proc) -> bool:
        if proc.pid not in self._ready:
            if any(e.get("event") == "worker.started" for e in proc.json_logs()):
                self._ready.add(proc.pid)
        return proc.pid in self._ready

    def respawn(self) -> None:
        while len(self.stack.live_workers()) < self.workers:
            self.stack.start_worker()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(database_url: str, *, deliveries: int = 2000, channels: int = 4, web_workers: int = 3,
        worker_procs: int = 3, seed: int = 1, log_dir: Path | None = None,
        kill_interval: tuple[float, float] = (0.2, 1.0), settle_timeout: float = 300.0,
        chaos_seconds: float = 600.0, min_burst_seconds: float = 0.0, out=print) -> dict:
    """Run the scenario on a migrated, empty database; return the counts (and violations)."""
    started = time.monotonic()
    rng = random.Random(seed)
    with Stack(database_url, log_dir, env={"ORDERHOOKS_CLAIM_SECONDS": "5",
                                           "ORDERHOOKS_WORKER_BATCH": "20"}) as stack:
        stack.start_standin(default_status=5)
        stack.start_web(workers=web_workers)
        chans = [stack.create_channel(f"chaos{i}") for i in range(channels)]
        plan = []  # (channel, order id, body, dedupe key)
        for n in range(deliveries):
            channel = chans[n % channels]
            body, key = delivery_body(channel["store"], n, salt=str(seed))
            plan.append((channel, n, body, key))
        for _ in range(worker_procs):
            stack.start_worker()  # idle while the orders are created: up when the burst starts
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: stack.create_order(p[0]["id"], p[1]), plan))
        out(f"stack up: {web_workers} gunicorn workers, {worker_procs} worker processes, "
            f"{channels} channels, {deliveries} orders ({time.monotonic() - started:.1f}s)")
        first: dict[int, object] = {}
        final: dict[int, dict] = {}
        requests_sent = Counter()
        count_lock = threading.Lock()
        local = threading.local()

        def send(index: int, paced: bool = False):
            if paced and min_burst_seconds:  # spread the burst so the chaos has time to act
                delay = burst_started + position_of[index] * min_burst_seconds / deliveries \
                    - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if not hasattr(local, "session"):
                local.session = requests.Session()
            channel, _n, body, _key = plan[index]
            with count_lock:
                requests_sent["total"] += 1
            try:
                response = stack.post_delivery(channel, body, timeout=15, session=local.session)
                result = response.status_code
                if 200 <= result < 300:
                    final[index] = response.json()
            except requests.RequestException as exc:
                local.session = requests.Session()
                result = type(exc).__name__
            first.setdefault(index, result)
            return result

        order = list(range(deliveries))
        rng.shuffle(order)
        position_of = {index: position for position, index in enumerate(order)}
        chaos = Chaos(stack, worker_procs, kill_interval, seed, max_seconds=chaos_seconds)
        burst_started = time.monotonic()
        chaos.start()
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: send(i, paced=True), order))
        finally:
            chaos.stopping.set()
            chaos.join(timeout=30)
        burst_seconds = time.monotonic() - burst_started
        acked_first = [i for i in order if isinstance(first[i], int) and 200 <= first[i] < 300]
        not_acked = [i for i in order if i not in final]
        refusals = Counter(str(first[i]) for i in not_acked)
        out(f"burst: {deliveries} deliveries in {burst_seconds:.1f}s, {len(acked_first)} "
            f"acknowledged, {len(not_acked)} not ({dict(refusals)}); kills: {dict(chaos.kills)}")

        # The channel sends again what was not acknowledged (and, at least once, some that were).
        resend_rounds = 0
        deadline = time.monotonic() + 120
        while not_acked and time.monotonic() < deadline:
            resend_rounds += 1
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(send, not_acked))
            not_acked = [i for i in not_acked if i not in final]
            if not_acked:
                time.sleep(1)
        resent_duplicates = Counter(
            final[i]["status"] for i in order if i not in acked_first and i in final)
        again = rng.sample(acked_first, min(len(acked_first), max(1, deliveries // 20)))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, again))
        chaos.respawn()
        engine = db_engine(database_url)
        try:
            wait_for(lambda: scalar(engine, "SELECT count(*) FROM deliveries WHERE state <> "
                                            "'done'") == 0 and scalar(
                engine, "SELECT count(*) FROM deliveries") >= deliveries - len(not_acked),
                settle_timeout, interval=0.5, what="every delivery processed")
        except TimeoutError as exc:
            out(f"warning: {exc}")
        settle_seconds = time.monotonic() - burst_started - burst_seconds
        result = _verify(engine, stack, plan, final, acked_first, not_acked)
        engine.dispose()
        text = stack.metrics()
    result.update({
        "deliveries_sent": deliveries, "requests": requests_sent["total"],
        "acknowledged_first_try": len(acked_first),
        "not_acknowledged_first_try": deliveries - len(acked_first),
        "first_try_refusals": dict(refusals), "resend_rounds": resend_rounds,
        "resends_answered": dict(resent_duplicates),
        "duplicates_sent_on_purpose": len(again),
        "kills_web": chaos.kills["web"], "kills_worker": chaos.kills["worker"],
        "burst_seconds": round(burst_seconds, 1), "settle_seconds": round(settle_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "web_workers": web_workers, "worker_processes": worker_procs, "channels": channels,
        "database": database_url.split(":", 1)[0].split("+")[0],
        "metrics_received_stored": _metric(text, "orderhooks_deliveries_received_total",
                                           result="stored"),
    })
    return result


def _metric(text, name, **labels):
    from tests.reliability.live import metric_sum
    return metric_sum(text, name, **labels)


def _verify(engine, stack, plan, final, acked_first, not_acked) -> dict:
    stored = {key: (did, state, outcome) for did, key, state, outcome in rows(
        engine, "SELECT id, dedupe_key, state, outcome FROM deliveries")}
    effects = rows(engine, "SELECT o.channel_id, o.channel_order_id, c.event, c.delivery_id "
                           "FROM order_changes c JOIN orders o ON o.id = c.order_id "
                           "WHERE c.event <> 'created'")
    changes_by_delivery = Counter(e[3] for e in effects)
    cancels_by_order = Counter((e[0], e[1]) for e in effects if e[2] == "cancelled")
    statuses = dict(((c, o), s) for c, o, s in rows(
        engine, "SELECT channel_id, channel_order_id, status FROM orders"))
    logged = processed_log_counts(stack)
    lost, unapplied, applied_twice, wrong_id = [], [], [], []
    applied = 0
    for index, (channel, n, _body, key) in enumerate(plan):
        row = stored.get(key)
        if row is None:
            (lost if index in acked_first else unapplied).append(index)
            continue
        if index in final and final[index]["delivery_id"] != row[0]:
            wrong_id.append(index)
        order_key = (channel["id"], str(n))
        if cancels_by_order[order_key] > 1 or changes_by_delivery[row[0]] > 1 \
                or len(logged.get(row[0], [])) > 1:
            applied_twice.append(index)
        if row[2] == "applied" and cancels_by_order[order_key] >= 1 \
                and statuses.get(order_key) == "CANCELLED" and changes_by_delivery[row[0]] >= 1:
            applied += 1
        elif index in acked_first:
            lost.append(index)  # acknowledged but its effect never happened
        else:
            unapplied.append(index)
    # One event per change: the history's lines a delivery caused against the order.* events
    # (both committed in one transaction, so a kill leaves both or neither).
    changes = Counter(
        (f"order:{order_id}", "order." + event.replace("shipments_recorded", "shipment_recorded"))
        for order_id, event in rows(engine, "SELECT order_id, event FROM order_changes "
                                            "WHERE event NOT IN ('created', 'deferred')"))
    published = Counter(tuple(r) for r in rows(engine, "SELECT order_key, type FROM events "
                                     "WHERE type LIKE 'order.%'"))
    events_mismatch = sorted(set(changes.items()) ^ set(published.items()))
    return {"stored": len(stored), "applied": applied, "lost": len(lost),
            "events": sum(published.values()), "events_mismatch": len(events_mismatch),
            "applied_twice": len(applied_twice), "never_acknowledged": len(not_acked),
            "unapplied_after_resend": len(unapplied), "wrong_delivery_id": len(wrong_id),
            "processed_log_lines": sum(len(v) for v in logged.values()),
            "violations": {"lost": lost[:20], "applied_twice": applied_twice[:20],
                           "unapplied": unapplied[:20], "wrong_id": wrong_id[:20],
                           "events_mismatch": [list(map(str, m)) for m in events_mismatch[:20]]}}


def summary(result: dict) -> str:
    return (f"sent {result['deliveries_sent']} deliveries ({result['requests']} requests), "
            f"acknowledged on first try {result['acknowledged_first_try']}, "
            f"not acknowledged {result['not_acknowledged_first_try']} (re-sent until 2xx), "
            f"stored {result['stored']}, applied {result['applied']}, "
            f"lost {result['lost']}, applied twice {result['applied_twice']}; "
            f"killed {result['kills_web']} web workers and {result['kills_worker']} worker "
            f"processes; {result['total_seconds']}s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3, help="orderhooks worker processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None,
                        help=f"PostgreSQL URL of a database to drop and re-create "
                             f"(default {DEFAULT_PG})")
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(0.2, 1.0),
                        metavar=("MIN", "MAX"), help="seconds between kills")
    parser.add_argument("--min-burst-seconds", type=float, default=0.0,
                        help="spread the burst over at least this long")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    url = prepare_database(args.database_url, args.sqlite)
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(
        prefix="orderhooks-chaos-logs-"))
    result = run(url, deliveries=args.deliveries, channels=args.channels,
                 web_workers=args.web_workers, worker_procs=args.workers, seed=args.seed,
                 log_dir=log_dir, kill_interval=tuple(args.kill_every),
                 min_burst_seconds=args.min_burst_seconds,
                 out=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else summary(result))
    print(f"logs: {log_dir}", file=sys.stderr)
    ok = (result["lost"] == 0 and result["applied_twice"] == 0
          and result["applied"] == result["deliveries_sent"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
