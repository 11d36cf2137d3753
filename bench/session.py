"""What every section of one benchmark run shares: its options, the processes it started, the
stand-in channel API, fresh databases, channels, workers, the load generator, and the gate that
waits for the machine to go quiet before a measurement."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from core.config import from_env

from . import fill, loadgen, targets
from .common import (PY, CpuMeter, Procs, free_port, fresh_database, gunicorn_cmd, log,
                     metrics_env, orderhooks_env, pg_available, tree_cpu, upgrade, wait_http,
                     wait_quiet)
from .peek import Peek

#: gunicorn's advice for sync workers, used where baseline M is also measured under them.
SYNC_WORKERS = (os.cpu_count() or 1) * 2 + 1


def shopify_available() -> bool:
    try:
        import plugins.shopify.plugin  # noqa: F401 — only whether it imports
    except Exception:  # noqa: BLE001
        return False
    return True


class Session:
    """One run's shared state. ``args`` are bench.run's parsed options; ``notes`` collects what
    the report should say about the run (a database skipped, a round timed out)."""

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
        self.standin_url = None
        #: Deliveries a worker claims at once (its environment is the benchmark's).
        self.worker_batch = from_env()["WORKER_BATCH"]
        self.standin_procs: dict = {}

    # -- databases and channels -------------------------------------------------------------

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

    def migrated(self, kind: str, name: str, separate: bool = False):
        """A fresh database (see ``fresh``) at the schema's head, and the app in-process on it
        for filling. Returns (database url, app)."""
        url = self.fresh(kind, name, separate)
        upgrade(url)
        return url, fill.make_app(url)

    def make_channel(self, app, channel: str, store: str) -> int:
        """A channel created in-process: BigCommerce on the shared stand-in (store hash
        ``store``), or the benchmark's Shopify shop. Returns its id."""
        if channel == "bigcommerce":
            return fill.create_channel(app, "bigcommerce", f"bench {store}", {
                "store_hash": store, "access_token": "t", "api_base_url": self.standin()})[0]
        return fill.create_channel(app, "shopify", "bench shop", {
            "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
            "client_secret": targets.SHOPIFY_SECRET})[0]

    def pending(self, app, channel: str, store: str, orders: int, order_ids, tag: str,
                history: bool = True):
        """A channel with ``orders`` orders (and their history unless told otherwise), and the
        rows of one pending delivery per id of ``order_ids``, not yet inserted; housekeeping is
        marked done, so no worker calls a channel API for subscriptions meanwhile. Returns
        (channel id, rows)."""
        cid = self.make_channel(app, channel, store)
        fill.fill_orders(app, cid, orders, history=history)
        fill.quiet_housekeeping(app)
        return cid, fill.delivery_rows(app, cid, channel,
                                       self.requests_for(channel, order_ids, tag, store),
                                       datetime.utcnow())

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

    # -- processes ----------------------------------------------------------------------------

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

    def gunicorn_label(self, sync: bool = False) -> str:
        if sync:
            return f"sync x{SYNC_WORKERS}"
        return f"threads {self.args.web_workers}x{self.args.web_threads}"

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

    def start_workers(self, url: str, count: int, name: str = "worker", **env) -> list:
        return [self.procs.start(f"{name}{i}", [PY, "-m", "core.cli", "worker"],
                                 orderhooks_env(url, **env)) for i in range(count)]

    def wait_done(self, peek: Peek, first_id: int, count: int, timeout: float,
                  procs: list | None = None) -> bool:
        """Whether ``count`` deliveries from ``first_id`` on were done within ``timeout`` s;
        raises when every worker process has exited, since nothing would finish them."""
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

    # -- load and measurement -----------------------------------------------------------------

    def generator(self, channel: str) -> str:
        """The closed-loop generator for every target of a channel's rows (H, M, intake):
        ``wrk`` where it is installed and can send the channel's deliveries, else ``python``.
        wrk's Lua cannot sign each request, so a channel whose deliveries are signed per request
        (Shopify) is loaded by the Python generator on every side: on a machine of few cores
        the generator takes CPU from the server under test, and a ratio of two runs loaded by
        different generators measures the generators too."""
        if self.use_wrk and not targets.template(channel, channel_id=0, secret="-").signed:
            return "wrk"
        return "python"

    def load(self, url: str, tpl, seconds: float, run_id: str, generator: str) -> dict:
        if generator == "wrk":
            if tpl.signed:
                raise ValueError("wrk cannot sign each request; load this target with python")
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

    def closed_run(self, url: str, tpl, server, generator: str) -> dict:
        """Warm-up, then the measured run. Also the server's own CPU per request (its gunicorn
        process tree): a cost that other processes competing for the CPU barely change."""
        self.load(url, tpl, self.args.warmup, "w", generator)
        gate = self.quiet()
        meter = CpuMeter()
        cpu0 = tree_cpu(server)
        result = self.load(url, tpl, self.args.duration, "m", generator)
        cpu = tree_cpu(server) - cpu0
        result["server_cpu_ms_per_req"] = round(1000 * cpu / max(result["requests"], 1), 3)
        result["server_cores"] = round(cpu / result["seconds"], 2)
        return {**result, "machine_load": {**gate, **meter.read()}}
