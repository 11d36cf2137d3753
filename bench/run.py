"""The orderhooks benchmark: baselines and intake side by side, worker throughput, per-store
pacing, worker memory and profiles, on loopback on this machine. One command:

    python -m bench.run            # full run (1,000,000 orders, 10,000-delivery pacing burst)
    python -m bench.run --quick    # CI-ish: 100,000 orders, shorter runs, smaller bursts

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (``--readme`` also puts the
table in README.md). ``--only intake,worker,pacing,rss,profile`` runs a part (the files then hold
only that part). See ``python -m bench.run --help`` for every knob.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from core.config import from_env

from . import fill, loadgen, targets
from .common import (ADMIN_TOKEN, PY, RESULTS, CpuMeter, Procs, free_port, fresh_database,
                     gunicorn_cmd, machine, metrics_env, orderhooks_env, pg_available,
                     pg_settings, tree_cpu, upgrade, wait_http, wait_quiet)
from .peek import Peek, as_datetime

SECTIONS = ("intake", "worker", "pacing", "rss", "profile")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def shopify_available() -> bool:
    try:
        import plugins.shopify.plugin  # noqa: F401 — only whether it imports
    except Exception:  # noqa: BLE001
        return False
    return True


def code_version() -> dict:
    """The commit measured, and whether core/ or plugins/ had uncommitted changes."""
    import subprocess
    from .common import ROOT

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return ""
    marker = ROOT / ".snapshot-commit"  # a copy made with `git archive` (see README)
    if marker.exists():
        return {"commit": marker.read_text().strip(), "subject": "snapshot (git archive)",
                "uncommitted_in_core_or_plugins": 0}
    dirty = git("status", "--porcelain", "core", "plugins")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "uncommitted_in_core_or_plugins": len(dirty.splitlines()) if dirty else 0}


#: gunicorn's advice for sync workers, used where baseline M is also measured under them.
SYNC_WORKERS = (os.cpu_count() or 1) * 2 + 1

class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logdir = self.workdir / "logs"
        self.logdir.mkdir(exist_ok=True)
        self.procs = Procs(self.logdir)
        self.channels = ["bigcommerce"] + (["shopify"] if shopify_available() else [])
        self.dbs = ["sqlite"]
        self.notes: list[str] = []
        if not args.no_pg:
            why = pg_available(args.pg_url)
            if why is None:
                self.dbs.append("postgresql")
            else:
                self.notes.append(f"PostgreSQL skipped: {why}")
        if "shopify" not in self.channels:
            self.notes.append("Shopify skipped: plugins.shopify.plugin does not import")
        self.use_wrk = loadgen.have_wrk() and not args.python_loadgen
        self.result: dict = {
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench.run"] + sys.argv[1:]),
            "mode": "quick" if args.quick else "full", "machine": machine(),
            "settings": {"web_workers": args.web_workers, "connections": args.connections,
                         "duration_s": args.duration, "worker_procs": args.worker_procs,
                         "load_generator": "wrk" if self.use_wrk else "python",
                         "web_threads": args.web_threads, "rounds": args.rounds,
                         "gunicorn": "core/gunicorn_conf.py for every target (threaded workers, "
                                     "balanced); baseline M also under sync workers, and the "
                                     "faster M is the baseline",
                         "sqlite": "WAL, synchronous=FULL, busy_timeout=30000 (core/db.py)"},
            "channels": self.channels, "databases": self.dbs, "notes": self.notes,
            "code": code_version()}
        if "postgresql" in self.dbs:
            self.result["settings"]["postgresql"] = pg_settings(args.pg_url)
        self.standin_url = None
        #: Deliveries a worker claims at once (its environment is the benchmark's).
        self.worker_batch = from_env()["WORKER_BATCH"]
        self.standin_procs: dict = {}

    # -- helpers ------------------------------------------------------------------------------

    def fresh(self, kind: str, name: str, separate: bool = False) -> str:
        """An empty database. On PostgreSQL, the bench database's schema is reset, or with
        ``separate`` a database of its own (``<bench db>_<name>``), created if missing."""
        pg_url = self.args.pg_url
        if kind == "postgresql" and separate:
            pg_url = f"{pg_url}_{name}"
            problem = pg_available(pg_url)
            if problem:
                raise RuntimeError(f"PostgreSQL database {pg_url}: {problem}")
        return fresh_database(kind, name, self.workdir, pg_url)

    def start_standin(self, name: str, *extra: str) -> str:
        port = free_port()
        proc = self.procs.start(name, [PY, "-m", "bench.standin", "--port", str(port), *extra])
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_stats", proc=proc)
        self.standin_procs[url] = proc
        return url

    def standin(self) -> str:
        """The shared stand-in: unlimited quota, orders never PUT are Cancelled (status 5)."""
        if self.standin_url is None:
            self.standin_url = self.start_standin("standin", "--default-status", "5")
        return self.standin_url

    def start_web(self, name: str, app_spec: str, env: dict, sync: bool = False):
        """gunicorn with orderhooks' settings; ``sync``: gunicorn's sync workers instead
        (2 x cores + 1 of them, gunicorn's advice for sync workers)."""
        port = free_port()
        cmd = (gunicorn_cmd(app_spec, port, SYNC_WORKERS, 1, "sync") if sync
               else gunicorn_cmd(app_spec, port, self.args.web_workers, self.args.web_threads))
        proc = self.procs.start(name, cmd, metrics_env(env))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz" if app_spec.startswith("core") else url, proc=proc)
        return proc, url

    def load(self, url: str, tpl, seconds: float, run_id: str) -> dict:
        if self.use_wrk and not tpl.signed:  # wrk's Lua cannot sign each request
            return loadgen.wrk(url, tpl, connections=self.args.connections, seconds=seconds,
                               run_id=run_id)
        return loadgen.python_closed(url, tpl, connections=self.args.connections,
                                     seconds=seconds, run_id=run_id)

    def quiet(self) -> dict:
        """Wait for other sessions' load to drop before a measurement (up to --quiet-wait)."""
        gate = wait_quiet(self.args.quiet_wait, self.args.quiet_threshold)
        if not gate["quiet"]:
            log(f"machine not quiet after {gate['waited_s']}s "
                f"({gate['foreign_cores_before']} cores used by other processes); measuring")
        return gate

    def closed_run(self, url: str, tpl, server) -> dict:
        """Warm-up, then the measured run. Also the server's own CPU per request (its gunicorn
        process tree): a cost that other processes competing for the CPU barely change."""
        self.load(url, tpl, self.args.warmup, "w")
        gate = self.quiet()
        meter = CpuMeter()
        cpu0 = tree_cpu(server)
        result = self.load(url, tpl, self.args.duration, "m")
        cpu = tree_cpu(server) - cpu0
        result["server_cpu_ms_per_req"] = round(1000 * cpu / max(result["requests"], 1), 3)
        result["server_cores"] = round(cpu / result["seconds"], 2)
        return {**result, "machine_load": {**gate, **meter.read()}}

    # -- intake -------------------------------------------------------------------------------

    def run_intake(self) -> list[dict]:
        rows = []
        for channel in self.channels:
            log(f"intake: baseline H ({channel} body)")
            proc, url = self.start_web("baseline_h", "bench.baseline_h:app", dict(os.environ))
            tpl = targets.template("h" if channel == "bigcommerce" else "h-shopify")
            rows.append({"target": "H", "db": "-", "channel": channel,
                         "gunicorn": self.gunicorn_label(),
                         **self.closed_run(url, tpl, proc)})
            self.procs.stop(proc)
        for db in self.dbs:
            for channel in self.channels:
                rows.extend(self.intake_rounds(db, channel))
        return rows

    def intake_rounds(self, db: str, channel: str) -> list[dict]:
        """M (under both kinds of gunicorn worker: whichever is faster is the baseline) and the
        intake, back to back, ``--rounds`` times; each target's row is its median round, and
        intake/M the median of the rounds' ratios (the same run's M each time), so that one
        noisy run decides nothing. Then the intake's half-rate run, at half its median req/s."""
        rounds = []
        for index in range(self.args.rounds):
            if self.args.rounds > 1:
                log(f"intake: round {index + 1} of {self.args.rounds} ({db}, {channel})")
            rounds.append((self.baseline_m(db, channel), self.baseline_m(db, channel, sync=True),
                           self.intake(db, channel)))
        rows = [_median_round([r[i] for r in rounds]) for i in range(3)]
        ratios = []
        for m_threads, m_sync, intake in rounds:
            base = max(m_threads, m_sync, key=lambda x: x["rps"])
            ratios.append({"ratio_m": round(intake["rps"] / max(base["rps"], 1e-9), 3),
                           "cpu_ratio_m": round(
                               intake["server_cpu_ms_per_req"] / base["server_cpu_ms_per_req"],
                               3) if base.get("server_cpu_ms_per_req") else None})
        intake = rows[2]
        intake["rounds_ratio_m"] = [x["ratio_m"] for x in ratios]
        intake["ratio_m"] = statistics.median(intake["rounds_ratio_m"])
        cpu = [x["cpu_ratio_m"] for x in ratios if x["cpu_ratio_m"] is not None]
        if cpu:
            intake["rounds_cpu_ratio_m"] = cpu
            intake["cpu_ratio_m"] = statistics.median(cpu)
        intake["half_rate"] = self.half_rate(db, channel, statistics.median(
            r[2]["rps"] for r in rounds))
        return rows

    def gunicorn_label(self, sync: bool = False) -> str:
        if sync:
            return f"sync x{SYNC_WORKERS}"
        return f"threads {self.args.web_workers}x{self.args.web_threads}"

    def baseline_m(self, db: str, channel: str, sync: bool = False) -> dict:
        log(f"intake: baseline M on {db} ({channel} body; {self.gunicorn_label(sync)})")
        proc, web, url = self.start_m(db, channel, sync)
        result = self.closed_run(web, targets.template(f"m-{channel}"), proc)
        self.procs.stop(proc)
        peek = Peek(url)
        stored = peek.one("SELECT count(*) FROM m_inbox")[0]
        peek.close()
        return {"target": "M", "db": db, "channel": channel, "rows_stored": stored,
                "gunicorn": self.gunicorn_label(sync), **result}

    def start_m(self, db: str, channel: str, sync: bool = False):
        """Baseline M on a fresh database. Returns (gunicorn process, web url, database url)."""
        url = self.fresh(db, "baseline_m")
        env = dict(os.environ, BENCH_M_DATABASE=url, BENCH_M_SECRET=targets.M_SECRET)
        from . import baseline_m
        baseline_m.create_table(url)
        return (*self.start_web("baseline_m", "bench.baseline_m:app", env, sync=sync), url)

    def setup_intake(self, db: str, channel: str, name: str = "intake"):
        """A fresh database, orderhooks under gunicorn, one channel. Returns (database url,
        web url, request template, gunicorn process)."""
        url = self.fresh(db, name)
        upgrade(url)
        env = orderhooks_env(url)
        secret, channel_id = None, None
        if channel == "shopify":
            # In-process: there is no Shopify API on loopback to subscribe with.
            app = fill.make_app(url)
            channel_id, _ = fill.create_channel(app, "shopify", "bench shop", {
                "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
                "client_secret": targets.SHOPIFY_SECRET})
            app.extensions["orderhooks.db"].dispose()
            secret = targets.SHOPIFY_SECRET
        proc, web = self.start_web("orderhooks_web", "core:create_app()", env)
        if channel == "bigcommerce":
            # Through the admin API, which subscribes on the stand-in; the secret is the header
            # the service put on the hook.
            store = f"intake{random.randrange(10**6)}"
            answer = requests.post(f"{web}/api/v1/channels", timeout=30, headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}, json={
                "type": "bigcommerce", "name": "bench store", "credentials": {
                    "store_hash": store, "access_token": "t", "api_base_url": self.standin()},
                "valid_cancellation_statuses": [fill.VALID],
                "valid_fulfillment_statuses": [fill.VALID]})
            answer.raise_for_status()
            channel_id = answer.json()["id"]
            hooks = requests.get(f"{self.standin()}/stores/{store}/v3/hooks", timeout=10).json()
            secret = hooks["data"][0]["headers"]["X-Orderhooks-Secret"]
        tpl = targets.template(channel, channel_id=channel_id, secret=secret)
        path, headers, body = tpl.render("preflight")
        answer = requests.post(f"{web}{path}", data=body, headers=headers, timeout=30)
        if answer.status_code != 200:  # never measure an intake that refuses valid deliveries
            self.procs.stop(proc)
            raise RuntimeError(f"intake preflight ({db}, {channel}): a valid delivery got "
                               f"{answer.status_code}: {answer.text[:300]}")
        return url, web, tpl, proc

    def intake(self, db: str, channel: str) -> dict:
        log(f"intake: orderhooks on {db}, {channel}")
        url, web, tpl, proc = self.setup_intake(db, channel)
        result = self.closed_run(web, tpl, proc)
        self.procs.stop(proc)
        peek = Peek(url)
        stored = peek.one("SELECT count(*) FROM deliveries")[0]
        peek.close()
        return {"target": "intake", "db": db, "channel": channel, "rows_stored": stored,
                "gunicorn": self.gunicorn_label(), **result}

    def half_rate(self, db: str, channel: str, max_rps: float) -> dict:
        """An open loop at half the intake's measured req/s (a fresh database and server), then
        baseline M at the same rate: what the disk's commits alone cost the tail (on this VM a
        commit's fsync now and then takes hundreds of milliseconds; PostgreSQL shows it as
        backends waiting on ``IO/WALSync``). ``--rounds`` pairs, intake and M alternating: each
        reports its median round's figures (by p99), with every round's p99 beside them, since
        one stalled fsync in a round decides that round's p99."""
        rate = max(1.0, max_rps / 2)
        keep = ("generator", "target_rps", "rps", "requests", "p50_ms", "p90_ms", "p99_ms",
                "max_ms", "errors", "connections_peak", "machine_load", "rounds_p99_ms")
        halves, floors = [], []
        for index in range(self.args.rounds):
            log(f"intake: open loop at {rate:.0f} req/s (half of {max_rps:.1f}; {db}, {channel}; "
                f"round {index + 1} of {self.args.rounds})")
            _url, web, tpl, proc = self.setup_intake(db, channel)
            halves.append(self.open_run(web, tpl, rate))
            self.procs.stop(proc)
            log(f"intake: baseline M, open loop at {rate:.0f} req/s ({db}, {channel})")
            proc, web, _url = self.start_m(db, channel)
            floors.append(self.open_run(web, targets.template(f"m-{channel}"), rate))
            self.procs.stop(proc)
        half, floor = _median_round(halves, "p99_ms"), _median_round(floors, "p99_ms")
        return {**{k: half[k] for k in keep if k in half},
                "baseline_m": {k: floor[k] for k in keep if k in floor}}

    def open_run(self, web: str, tpl, rate: float) -> dict:
        self.load(web, tpl, self.args.warmup, "hw")
        gate = self.quiet()
        meter = CpuMeter()
        result = loadgen.python_open(web, tpl, rate=rate, seconds=self.args.duration)
        result["machine_load"] = {**gate, **meter.read()}
        return result

    # -- worker throughput --------------------------------------------------------------------

    def start_workers(self, url: str, count: int, name: str = "worker", **env) -> list:
        return [self.procs.start(f"{name}{i}", [PY, "-m", "core.cli", "worker"],
                                 orderhooks_env(url, **env)) for i in range(count)]

    def requests_for(self, channel: str, order_ids, tag: str, store: str = ""):
        """(headers, body) of one applied-able delivery per order: BigCommerce statusUpdated
        (thin; the stand-in answers Cancelled) or Shopify orders/cancelled (full payload)."""
        if channel == "bigcommerce":
            for oid in order_ids:
                body = json.dumps(targets.bigcommerce_body(store, int(oid),
                                                           hash_=f"{tag}-{oid}")).encode()
                yield {"Content-Type": "application/json"}, body
        else:
            yield from targets.shopify_requests(order_ids, tag)

    def wait_done(self, peek: Peek, first_id: int, count: int, timeout: float,
                  procs: list | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = peek.one("SELECT count(*) FROM deliveries WHERE id >= ? AND state = 'done'",
                            (first_id,))[0]
            if done >= count:
                return True
            if procs and all(p.poll() is not None for p in procs):
                raise RuntimeError("every worker process exited; see bench logs")
            time.sleep(0.1)
        return False

    def span(self, peek: Peek, first_id: int, procs: int = 1) -> dict:
        """A round's deliveries, and the time its workers took for them. The clock starts at
        the end of the first batch: ``processed_at`` is stamped while a batch is recorded, so
        the first batch's claim and translation come before any stamp. Counting from the
        first stamp instead gave a round of B batches B - 1 batches' time for B batches'
        deliveries: +11 % for a 500-delivery round (the small databases') and +1 % for a
        5,000-delivery one (the big ones'), which flattered the small database in the ratio
        of target 3. So: the deliveries after the first ``WORKER_BATCH`` stamps of each worker
        process (``procs`` first batches), over the time from the last of those stamps to the
        round's last."""
        row = peek.one("SELECT count(*), max(processed_at), "
                       "sum(CASE WHEN outcome = 'applied' THEN 1 ELSE 0 END) "
                       "FROM deliveries WHERE id >= ? AND state = 'done'", (first_id,))
        count, hi, applied = row
        skip = min(self.worker_batch * procs, count)
        start = peek.one("SELECT processed_at FROM deliveries WHERE id >= ? AND state = 'done' "
                         "ORDER BY processed_at LIMIT 1 OFFSET ?", (first_id, max(0, skip - 1)))
        seconds = ((as_datetime(hi) - as_datetime(start[0])).total_seconds()
                   if count > skip and start else 0.0)
        return {"count": count, "applied": int(applied or 0), "seconds": seconds,
                "timed": count - skip if seconds else 0}

    def run_worker(self) -> list[dict]:
        rows = []
        for db in self.dbs:
            rows.extend(self.worker_rounds(db))
        return rows

    def worker_rounds(self, db: str) -> list[dict]:
        """Every database size filled first, then ``--rounds`` rounds that measure each size in
        turn (channel, worker processes): each row is its median round, and "vs smallest db"
        the median of each round's own ratio, so a slow moment of the machine does not land on
        one size only (one 5,000-delivery measurement lasts a few seconds: its ratio swung
        0.67-0.97 across identical runs here)."""
        dbs = {orders: self.worker_db(db, orders) for orders in self.args.orders}
        results: dict[tuple, list[dict]] = {}
        try:
            for index in range(self.args.rounds):
                if self.args.rounds > 1:
                    log(f"worker: round {index + 1} of {self.args.rounds} ({db})")
                for orders, (url, app, peek, per_channel, channel_ids, fill_s) in dbs.items():
                    for channel in self.channels:
                        for procs_count in self.args.worker_procs:
                            results.setdefault((channel, procs_count, orders), []).append(
                                self.worker_channel(app, peek, url, db, orders, per_channel,
                                                    channel, channel_ids[channel], procs_count,
                                                    fill_s))
        finally:
            for _url, app, peek, *_ in dbs.values():
                peek.close()
                app.extensions["orderhooks.db"].dispose()
        rows = []
        smallest = min(self.args.orders)
        for (channel, procs_count, orders), runs in sorted(
                results.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
            row = _median_round(runs, "applied_per_s")
            small = results[(channel, procs_count, smallest)]
            ratios = [run["applied_per_s"] / base["applied_per_s"] if base["applied_per_s"]
                      else 0.0 for run, base in zip(runs, small)]
            row["vs_smallest_db_rounds"] = [round(x, 3) for x in ratios]
            row["vs_smallest_db"] = round(statistics.median(ratios), 3)
            rows.append(row)
        return rows

    def worker_db(self, db: str, orders: int):
        """A database (its own, so every size stays at hand) with ``orders`` orders per the
        channels together. Returns (url, app, peek, orders per channel, channel ids, fill s)."""
        log(f"worker: filling {db} with {orders:,} orders")
        url = self.fresh(db, f"worker{orders}", separate=True)
        upgrade(url)
        app = fill.make_app(url)
        per_channel = orders // len(self.channels)
        channel_ids = {}
        started = time.monotonic()
        for channel in self.channels:
            channel_ids[channel] = self.make_worker_channel(app, channel, "benchworker")
            fill.fill_orders(app, channel_ids[channel], per_channel)
        fill_seconds = time.monotonic() - started
        fill.quiet_housekeeping(app)
        return url, app, Peek(url), per_channel, channel_ids, fill_seconds

    def make_worker_channel(self, app, channel: str, store: str) -> int:
        if channel == "bigcommerce":
            return fill.create_channel(app, "bigcommerce", f"bench {store}", {
                "store_hash": store, "access_token": "t", "api_base_url": self.standin()})[0]
        return fill.create_channel(app, "shopify", "bench shop", {
            "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
            "client_secret": targets.SHOPIFY_SECRET})[0]

    def worker_channel(self, app, peek, url, db, orders, per_channel, channel, channel_id,
                       procs_count, fill_seconds) -> dict:
        total = self.args.worker_deliveries
        log(f"worker: {channel} on {db}, {orders:,} orders, {procs_count} worker process(es), "
            f"{total:,} deliveries")
        workers = self.start_workers(url, procs_count, name=f"worker-{channel}-")
        time.sleep(2.0)  # imports and first idle poll: not part of the measurement
        remaining, rounds, applied, processed, seconds, timed = total, 0, 0, 0, 0.0, 0
        lost, loads, worker_cpu, api_cpu = 0, [], 0.0, 0.0
        try:
            while remaining > 0:
                size = min(remaining, per_channel)
                fill.reset_orders(app, channel_id)
                ids = random.sample(range(1, per_channel + 1), size)
                first_id = (peek.one("SELECT coalesce(max(id), 0) FROM deliveries")[0]) + 1
                tag = f"{db}{orders}{procs_count}r{rounds}{random.randrange(10**9)}"
                rows = fill.delivery_rows(app, channel_id, channel,
                                          self.requests_for(channel, ids, tag, "benchworker"),
                                          datetime.utcnow())
                rows = list(rows)
                gate = self.quiet()
                meter = CpuMeter()
                cpu0 = sum(tree_cpu(w) for w in workers)
                api0 = tree_cpu(self.standin_procs[self.standin()])
                fill.insert_deliveries(app, rows)
                ok = self.wait_done(peek, first_id, size, timeout=max(120, size / 20),
                                    procs=workers)
                worker_cpu += sum(tree_cpu(w) for w in workers) - cpu0
                api_cpu += tree_cpu(self.standin_procs[self.standin()]) - api0
                loads.append({**gate, **meter.read()})
                got = self.span(peek, first_id, procs_count)
                lost += size - got["count"]
                applied += got["applied"]
                processed += got["count"]
                seconds += got["seconds"]
                timed += got["timed"]
                remaining -= size
                rounds += 1
                if not ok:
                    self.notes.append(f"worker {channel}/{db}/{orders}: timed out")
                    break
        finally:
            for w in workers:
                self.procs.stop(w)
        rate = timed / seconds if seconds else 0.0
        return {"db": db, "orders": orders, "channel": channel, "worker_procs": procs_count,
                "deliveries": processed, "applied": applied, "rounds": rounds,
                "seconds": round(seconds, 2), "applied_per_s": round(rate * applied /
                                                                     max(processed, 1), 1),
                "processed_per_s": round(rate, 1), "not_done": lost,
                "worker_cpu_ms_per_delivery": round(1000 * worker_cpu / max(processed, 1), 3),
                "standin_cpu_ms_per_delivery": round(1000 * api_cpu / max(processed, 1), 3)
                if channel == "bigcommerce" else None,
                "fill_seconds": round(fill_seconds, 1),
                "machine_load": {"foreign_cores": max(x["foreign_cores"] for x in loads),
                                 "rounds": loads} if loads else {}}

    # -- per-store pacing ---------------------------------------------------------------------

    def run_pacing(self) -> dict:
        a = self.args
        factor = a.pacing_factor
        window = 30.0 / factor
        quota = 150
        log(f"pacing: {a.pacing_deliveries:,} deliveries over 5 stores, quota {quota} per "
            f"{window:g}s (factor {factor:g})")
        standin = self.start_standin("standin_quota", "--quota", str(quota), "--window",
                                     str(window), "--default-status", "5")
        url = self.fresh("sqlite" if a.pacing_db == "sqlite" else "postgresql", "pacing")
        upgrade(url)
        app = fill.make_app(url)
        shares = [0.6, 0.1, 0.1, 0.1, 0.1]
        stores = [f"store{i + 1}" for i in range(5)]
        channel_of, plan = {}, []
        for store, share in zip(stores, shares):
            cid = fill.create_channel(app, "bigcommerce", store, {
                "store_hash": store, "access_token": "t", "api_base_url": standin})[0]
            channel_of[store] = cid
            want = int(a.pacing_deliveries * share)
            # Per order: statusUpdated + updated, and every 5th also shipment/created: the
            # deliveries BigCommerce sends together when an order is cancelled or shipped.
            order_id, made = 0, 0
            while made < want:
                order_id += 1
                scopes = ["store/order/statusUpdated", "store/order/updated"]
                if order_id % 5 == 0:
                    scopes.append("store/shipment/created")
                for scope in scopes[:want - made]:
                    plan.append((store, order_id, scope))
                    made += 1
            fill.fill_orders(app, cid, order_id, history=False)
        fill.quiet_housekeeping(app)
        # The burst: orders in random order, stores interleaved; an order's deliveries arrive
        # together (BigCommerce sends statusUpdated and updated at once), give or take a couple
        # of other orders' deliveries in between.
        groups: dict[tuple[str, int], list[int]] = {}
        for index, (store, oid, _scope) in enumerate(plan):
            groups.setdefault((store, oid), []).append(index)
        keys = list(groups)
        random.shuffle(keys)
        position = {}
        for rank, key in enumerate(keys):
            for index in groups[key]:
                position[index] = rank + random.uniform(0, 2)
        arrival = {index: n for n, index in enumerate(sorted(position, key=position.get))}
        built = []
        for store in stores:
            mine = [(i, oid, scope) for i, (s, oid, scope) in enumerate(plan) if s == store]

            def reqs(mine=mine, store=store):
                for i, oid, scope in mine:
                    body = targets.bigcommerce_body(store, oid, scope=scope,
                                                    hash_=f"p{i}-{scope}-{oid}")
                    yield {"Content-Type": "application/json"}, json.dumps(body).encode()
            rows = list(fill.delivery_rows(app, channel_of[store], "bigcommerce", reqs(),
                                           datetime.utcnow()))
            built += [(arrival[i], r) for (i, _, _), r in zip(mine, rows)]
        orders_total = len(groups)
        peek = Peek(url)
        total = len(plan)
        per_store_deliveries = [sum(1 for s, _, _ in plan if s == st) for st in stores]
        minimum = max(per_store_deliveries) / quota * window
        workers = self.start_workers(url, a.worker_procs[0], name="worker-pacing-")
        time.sleep(2.0)  # the workers are up and idle when the burst lands
        gate = self.quiet()
        requests.post(f"{standin}/_reset", timeout=10)
        meter = CpuMeter()
        started = time.monotonic()
        burst_at = datetime.utcnow()
        # Delivery n of the burst is received at burst_at + n µs, in one transaction.
        fill.insert_deliveries(app, (
            r[:6] + (burst_at + timedelta(microseconds=n),) + r[7:11]
            + (burst_at + timedelta(microseconds=n),) for n, r in sorted(built,
                                                                          key=lambda x: x[0])))
        timeout = max(120.0, minimum * 4)
        ok = self.wait_done(peek, 1, total, timeout=timeout, procs=workers)
        elapsed = time.monotonic() - started
        load = {**gate, **meter.read()}
        for w in workers:
            self.procs.stop(w)
        stats = requests.get(f"{standin}/_stats", timeout=10).json()
        calls = requests.get(f"{standin}/_calls", timeout=10).json()
        per_store = []
        for store in stores:
            cid = channel_of[store]
            rows = peek.all("SELECT received_at, processed_at, state, outcome FROM deliveries "
                            "WHERE channel_id = ?", (cid,))
            delays = [(as_datetime(p) - as_datetime(r)).total_seconds()
                      for r, p, s, _ in rows if s == "done" and p is not None]
            outcomes: dict[str, int] = {}
            for _, _, s, o in rows:
                key = o or s
                outcomes[key] = outcomes.get(key, 0) + 1
            times = sorted(calls["stores"].get(store, []))
            peak, j = 0, 0  # any sliding window
            for i, t in enumerate(times):
                while times[j] <= t - window:
                    j += 1
                peak = max(peak, i - j + 1)
            fixed, start, used = 0, None, 0  # the stand-in's own windows (as it enforces them)
            for t in times:
                if start is None or t - start >= window:
                    start, used = t, 0
                used += 1
                fixed = max(fixed, used)
            s = stats.get(store, {})
            per_store.append({
                "store": store, "deliveries": len(rows), "orders": sum(
                    1 for x in {(st, o) for st, o, _ in plan if st == store}),
                "api_calls": s.get("calls", 0), "order_reads": s.get("order_reads", 0),
                "shipment_reads": s.get("shipment_reads", 0), "429s": s.get("throttled", 0),
                "max_calls_in_api_window": fixed, "max_calls_in_any_window": peak,
                "quota": quota,
                "calls_per_delivery": round(s.get("calls", 0) / max(len(rows), 1), 2),
                "median_delay_s": round(statistics.median(delays), 1) if delays else None,
                "p95_delay_s": round(sorted(delays)[int(len(delays) * 0.95) - 1], 1)
                if delays else None,
                "max_delay_s": round(max(delays), 1) if delays else None,
                "outcomes": outcomes,
                "not_done": sum(1 for _, _, st, _ in rows if st != "done")})
        dead = peek.one("SELECT count(*) FROM deliveries WHERE outcome IN ('dead', 'failed')")[0]
        peek.close()
        app.extensions["orderhooks.db"].dispose()
        self.procs.stop(self.procs.started[[p.bench_name for p in self.procs.started]
                                            .index("standin_quota")])
        all_calls = sum(p["api_calls"] for p in per_store)
        return {"deliveries": total, "orders": orders_total, "stores": 5,
                "shares": shares, "quota": quota, "window_s": window, "factor": factor,
                "worker_procs": a.worker_procs[0], "db": a.pacing_db,
                "finished": ok, "elapsed_s": round(elapsed, 1),
                "lower_bound_s": round(minimum, 1),
                "lower_bound_coalesced_s": round(max(
                    sum(1 for x in {(s, o) for s, o, _ in plan if s == st})
                    for st in stores) / quota * window, 1),
                "429s": sum(p["429s"] for p in per_store),
                "api_calls": all_calls,
                "api_calls_per_delivery": round(all_calls / total, 3),
                "ideal_calls_per_delivery": round(orders_total / total, 3),
                "lost": sum(p["not_done"] for p in per_store) + dead,
                "dead_or_failed": dead, "machine_load": load, "per_store": per_store}

    # -- memory -------------------------------------------------------------------------------

    def run_rss(self) -> dict:
        import psutil
        n = self.args.rss_deliveries
        channel = "bigcommerce"
        log(f"rss: {n:,} {channel} deliveries through one worker")
        url = self.fresh("sqlite", "rss")
        upgrade(url)
        app = fill.make_app(url)
        cid = self.make_worker_channel(app, channel, "benchrss")
        fill.fill_orders(app, cid, n, history=False)
        fill.quiet_housekeeping(app)
        rows = fill.delivery_rows(app, cid, channel,
                                  self.requests_for(channel, range(1, n + 1), "rss", "benchrss"),
                                  datetime.utcnow())
        fill.insert_deliveries(app, rows)
        peek = Peek(url)
        gate = self.quiet()
        meter = CpuMeter()
        worker = self.start_workers(url, 1, name="worker-rss-")[0]
        proc = psutil.Process(worker.pid)
        samples, started = [], time.monotonic()
        rss_start = None
        deadline = started + max(300.0, n / 50)
        done = 0
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if worker.poll() is not None:
                break
            # What is still waiting (a range of ix_deliveries_claim), not a count over every
            # processed row each second: that scan held a read snapshot open most of the time
            # and kept the WAL from being reset.
            done = n - peek.one("SELECT count(*) FROM deliveries WHERE channel_id = ? "
                                "AND state IN ('pending', 'processing')", (cid,))[0]
            rss, anon = proc.memory_info().rss, _rss_anon(worker.pid)
            samples.append((round(time.monotonic() - started, 1), done, rss, anon))
            if rss_start is None and done >= min(1000, n):
                rss_start = (done, rss, anon)
            if done >= n:
                break
        load = {**gate, **meter.read()}
        self.procs.stop(worker)
        peek.close()
        app.extensions["orderhooks.db"].dispose()
        end = samples[-1] if samples else (0, 0, 0, 0)
        step = max(1, len(samples) // 40)
        return {"deliveries_target": n, "processed": done, "channel": channel, "db": "sqlite",
                "seconds": end[0], "rss_first_sample_mib": round(samples[0][2] / 2**20, 1)
                if samples else None,
                "rss_start_mib": round(rss_start[1] / 2**20, 1) if rss_start else None,
                "rss_start_after": rss_start[0] if rss_start else None,
                "rss_end_mib": round(end[2] / 2**20, 1),
                "rss_max_mib": round(max(s[2] for s in samples) / 2**20, 1) if samples else None,
                # RssAnon: the process's own memory (heap, stacks), where a leak would show;
                # the rest of RSS is file pages, mostly SQLite's memory-mapped database.
                "anon_start_mib": round(rss_start[2] / 2**20, 1) if rss_start else None,
                "anon_end_mib": round(end[3] / 2**20, 1),
                "anon_max_mib": round(max(s[3] for s in samples) / 2**20, 1) if samples else None,
                "machine_load": load,
                "samples": [(t, d, round(r / 2**20, 1), round(a / 2**20, 1))
                            for t, d, r, a in samples[::step]]}

    # -- profiles -----------------------------------------------------------------------------

    def run_profile(self) -> list[dict]:
        from .anatomy import anatomy
        from .profile import profile_intake, profile_worker
        out = []
        for channel in self.channels:
            out.append(profile_intake(self, channel))
            out.append(profile_worker(self, channel))
            path = anatomy(channel, 2000, self.workdir)
            out.append({"file": f"bench/results/{Path(path).name}",
                        "what": f"intake ({channel}) CPU per request in-process vs H and M, and "
                                "a CPU-time cProfile"})
        return out

    # -- all ----------------------------------------------------------------------------------

    def run(self, sections) -> dict:
        started = time.monotonic()
        runners = {"intake": self.run_intake, "worker": self.run_worker,
                   "pacing": self.run_pacing, "rss": self.run_rss, "profile": self.run_profile}
        try:
            for name in sections:
                t0 = time.monotonic()
                try:
                    self.result[name] = runners[name]()
                except Exception as exc:  # noqa: BLE001 — record it and go on with the rest
                    traceback.print_exc()
                    self.result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"{name}: {time.monotonic() - t0:.0f}s")
        finally:
            self.procs.stop_all()
        self.result["seconds"] = round(time.monotonic() - started, 1)
        return self.result


def _median_round(results: list[dict], key: str = "rps") -> dict:
    """The round with the median ``key`` (the lower middle one of an even count), with every
    round's value beside it (``rounds_<key>``)."""
    chosen = dict(sorted(results, key=lambda x: x[key])[(len(results) - 1) // 2])
    if len(results) > 1:
        chosen[f"rounds_{key}"] = [x[key] for x in results]
    return chosen


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="100,000 orders instead of 1,000,000, shorter runs, smaller bursts")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run: {','.join(SECTIONS)}")
    p.add_argument("--pg-url", default=os.environ.get(
        "BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/orderhooks_bench"))
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    p.add_argument("--python-loadgen", action="store_true",
                   help="use the Python load generator even where wrk is installed")
    p.add_argument("--web-workers", type=int, default=None,
                   help="gunicorn workers for every HTTP target (default: orderhooks' own, "
                        "one per core)")
    p.add_argument("--web-threads", type=int, default=None,
                   help="threads per gunicorn worker (default: orderhooks' own, 8)")
    p.add_argument("--connections", type=int, default=16, help="load generator concurrency")
    p.add_argument("--duration", type=float, default=None, help="seconds per measured load run")
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up load")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of M and intake back to back per database and channel, and of "
                        "the worker's measurements per database size; the median counts "
                        "(default 3; quick 1)")
    p.add_argument("--orders", default=None,
                   help="comma-separated order counts for worker throughput "
                        "(default 1000,1000000; quick 1000,100000)")
    p.add_argument("--worker-deliveries", type=int, default=None,
                   help="deliveries per worker-throughput measurement (default 5000; quick 2000)")
    p.add_argument("--worker-procs", default=None,
                   help="comma-separated worker process counts to measure (default 1,2; quick "
                        "1); the pacing run uses the first")
    p.add_argument("--pacing-deliveries", type=int, default=None,
                   help="deliveries in the pacing burst (default 10000; quick 2000)")
    p.add_argument("--pacing-factor", type=float, default=10.0,
                   help="time compression of the stand-in's quota window: 150 requests per "
                        "30/FACTOR seconds (1 = BigCommerce's real 150 per 30 s; default 10)")
    p.add_argument("--pacing-db", default="sqlite", choices=("sqlite", "postgresql"))
    p.add_argument("--rss-deliveries", type=int, default=None,
                   help="deliveries in the worker memory run (default 1000000, the target; "
                        "quick 20000)")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="seconds to wait, before each measurement, for other processes on the "
                        "machine to go quiet (their CPU use is reported either way)")
    p.add_argument("--quiet-threshold", type=float, default=0.2,
                   help="cores other processes may use for the machine to count as quiet")
    p.add_argument("--workdir", default="/tmp/orderhooks-bench",
                   help="databases and logs of the run")
    p.add_argument("--merge", action="store_true",
                   help="keep the sections of bench/results/latest.json that this run skips")
    p.add_argument("--readme", action="store_true",
                   help="also replace the table in README.md's Benchmarks section")
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (8.0 if q else 15.0)
    args.warmup = args.warmup or (2.0 if q else 3.0)
    args.rounds = max(1, args.rounds or (1 if q else 3))
    args.orders = [int(x) for x in (args.orders or ("1000,100000" if q else
                                                     "1000,1000000")).split(",")]
    args.worker_deliveries = args.worker_deliveries or (2000 if q else 5000)
    args.worker_procs = [int(x) for x in (args.worker_procs or ("1" if q else "1,2"))
                         .split(",")]
    args.pacing_deliveries = args.pacing_deliveries or (2000 if q else 10000)
    args.rss_deliveries = args.rss_deliveries or (20000 if q else 1_000_000)
    args.web_workers = args.web_workers or int(os.environ.get("ORDERHOOKS_WEB_WORKERS",
                                                              os.cpu_count() or 1))
    args.web_threads = args.web_threads or int(os.environ.get("ORDERHOOKS_WEB_THREADS", 8))
    return args


def _stop(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    import signal
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background
    args = parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    bench = Bench(args)
    result = bench.run(sections)
    from .report import markdown, update_readme
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in sections:
        if isinstance(result.get(name), (dict, list)):
            result.setdefault("section_runs", {})[name] = {
                "at": result["started_at"], "code": result["code"],
                "machine": result["machine"]}
    previous = RESULTS / "latest.json"
    if args.merge and previous.exists():
        # Keep the other sections of the last run (each section says when it ran).
        old = json.loads(previous.read_text())
        for name in SECTIONS:
            if name not in sections and name in old:
                result[name] = old[name]
                if name in (old.get("section_runs") or {}):
                    result.setdefault("section_runs", {})[name] = old["section_runs"][name]
        result["notes"] = list(dict.fromkeys((old.get("notes") or []) + result["notes"]))
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (RESULTS / "latest.md").write_text(md)
    if args.readme:
        update_readme(md)
    print(md)
    return 0


def _rss_anon(pid: int) -> int:
    """RssAnon of a process in bytes (0 where /proc does not say)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

