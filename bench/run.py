"""The orderhooks benchmark: baselines and intake side by side, worker throughput, per-store
pacing (and bursts of product edits and order imports against the quota), worker memory and
profiles, on loopback on this machine. One command:

    python -m bench.run            # full run (1,000,000 orders, 10,000-delivery pacing burst)
    python -m bench.run --quick    # CI-ish: 100,000 orders, shorter runs, smaller bursts

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (``--readme`` also puts the
table in README.md). ``--only intake,worker,pacing,pacing_products,pacing_imports,rss,profile``
runs a part (the files then hold only that part). See ``python -m bench.run --help`` for every knob.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone

from .common import RESULTS, ROOT, log, machine, pg_settings
from .report import markdown, update_readme
from .session import Session
from .sections import bursts, intake, memory, pacing, profiles, worker

#: The sections in the order they run, each the function that measures it.
SECTIONS = {"intake": intake.run, "intake_create": intake.run_create, "worker": worker.run,
            "pacing": pacing.run, "pacing_products": bursts.run_products,
            "pacing_imports": bursts.run_imports, "rss": memory.run, "profile": profiles.run}


def code_version() -> dict:
    """The commit measured, and whether core/ or plugins/ had uncommitted changes."""
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return ""
    marker = ROOT / ".snapshot-commit"  # a copy made with `git archive` names its commit here
    if marker.exists():
        return {"commit": marker.read_text().strip(), "subject": "snapshot (git archive)",
                "uncommitted_in_core_or_plugins": 0}
    dirty = git("status", "--porcelain", "core", "plugins")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s"),
            "uncommitted_in_core_or_plugins": len(dirty.splitlines()) if dirty else 0}


def result_header(session, args) -> dict:
    """What the report says about the run as a whole: when, which code, which machine, which
    settings, what was skipped."""
    result: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run"] + sys.argv[1:]),
        "mode": "quick" if args.quick else "full", "machine": machine(),
        "settings": {"web_workers": args.web_workers, "connections": args.connections,
                     "duration_s": args.duration, "worker_procs": args.worker_procs,
                     "load_generator": {c: session.generator(c) for c in session.channels},
                     "web_threads": args.web_threads, "rounds": args.rounds,
                     "gunicorn": "core/gunicorn_conf.py for every target (threaded workers, "
                                 "balanced); baseline M also under sync workers, and the "
                                 "faster M is the baseline",
                     "sqlite": "WAL, synchronous=FULL, busy_timeout=30000 (core/db.py)"},
        "channels": session.channels, "databases": session.dbs, "notes": session.notes,
        "code": code_version()}
    if "postgresql" in session.dbs:
        result["settings"]["postgresql"] = pg_settings(args.pg_url)
    return result


def run(session, result: dict, sections) -> dict:
    """Each chosen section in turn; a section that fails is recorded as its error and the rest
    still run. Every process started is stopped at the end."""
    started = time.monotonic()
    try:
        for name in sections:
            t0 = time.monotonic()
            try:
                result[name] = SECTIONS[name](session)
            except Exception as exc:  # noqa: BLE001 — record it and go on with the rest
                traceback.print_exc()
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{name}: {time.monotonic() - t0:.0f}s")
    finally:
        session.procs.stop_all()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


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
    p.add_argument("--product-edits", type=int, default=None,
                   help="BigCommerce product edits in the product burst (default 10000; quick "
                        "2000)")
    p.add_argument("--import-orders", type=int, default=None,
                   help="new BigCommerce orders in the order imports burst (default 2000; quick "
                        "500)")
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
    args.product_edits = args.product_edits or (2000 if q else 10000)
    args.import_orders = args.import_orders or (500 if q else 2000)
    args.rss_deliveries = args.rss_deliveries or (20000 if q else 1_000_000)
    args.web_workers = args.web_workers or int(os.environ.get("ORDERHOOKS_WEB_WORKERS",
                                                              os.cpu_count() or 1))
    args.web_threads = args.web_threads or int(os.environ.get("ORDERHOOKS_WEB_THREADS", 8))
    return args


def _stop(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background
    args = parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    session = Session(args)
    result = run(session, result_header(session, args), sections)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in sections:
        if isinstance(result.get(name), (dict, list)):
            result.setdefault("section_runs", {})[name] = {
                "at": result["started_at"], "code": result["code"],
                "machine": result["machine"]}
    previous = RESULTS / "latest.json"
    if args.merge and previous.exists():
        merge(result, json.loads(previous.read_text()), sections)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (RESULTS / "latest.md").write_text(md)
    if args.readme:
        update_readme(md)
    print(md)
    return 0


def merge(result: dict, old: dict, sections) -> None:
    """Keep the sections of the last run that this one skipped (each section says when it ran,
    so the report can tell figures from different runs apart)."""
    for name in SECTIONS:
        if name not in sections and name in old:
            result[name] = old[name]
            if name in (old.get("section_runs") or {}):
                result.setdefault("section_runs", {})[name] = old["section_runs"][name]
    result["notes"] = list(dict.fromkeys((old.get("notes") or []) + result["notes"]))


if __name__ == "__main__":
    sys.exit(main())

