"""Profiles with py-spy (sampling, attached to the running processes; ``--idle`` so that time
spent waiting on fsync, the database or the channel API shows too). Writes the top functions
(self and inclusive time) to ``bench/results/profile-*.txt``."""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime

from . import fill, loadgen, targets
from .common import RESULTS
from .peek import Peek


def summarize(raw_path, title: str, top: int = 35) -> str:
    """py-spy's raw (collapsed) stacks → top functions by self and by inclusive samples."""
    self_c, incl_c, total = Counter(), Counter(), 0
    for line in open(raw_path):
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_func(f) for f in stack.split(";")]
        self_c[frames[-1]] += n
        for f in set(frames):
            incl_c[f] += n
    out = [title, f"samples: {total} (py-spy, 100 Hz, --idle)", "",
           "== self time (where the samples were) =="]
    for f, n in self_c.most_common(top):
        out.append(f"{100 * n / total:6.1f}%  {f}")
    out += ["", "== inclusive time (the function or anything it called) =="]
    for f, n in incl_c.most_common(top + 15):
        out.append(f"{100 * n / total:6.1f}%  {f}")
    return "\n".join(out) + "\n"


def _func(frame: str) -> str:
    # "name (path/to/file.py:123)" -> "name (file path without line)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def _pyspy(pid: int, raw_path, subprocesses: bool, seconds: float | None = None):
    cmd = [shutil.which("py-spy") or "py-spy", "record", "--idle", "-r", "100", "-f", "raw",
           "-o", str(raw_path), "-p", str(pid), "--nonblocking"]
    if subprocesses:
        cmd.append("--subprocesses")
    if seconds:
        cmd += ["-d", str(int(seconds))]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_intake(bench, channel: str) -> dict:
    """orderhooks intake on SQLite under the closed-loop load, every gunicorn worker sampled."""
    seconds = max(6, int(bench.args.duration))
    _db_url, url, tpl, proc = bench.setup_intake("sqlite", channel, name="profile_intake")
    bench.load(url, tpl, bench.args.warmup, "w")
    raw = bench.workdir / f"profile-intake-{channel}.raw"
    load = threading.Thread(target=bench.load, args=(url, tpl, seconds + 2, "p"))
    load.start()
    time.sleep(1)
    spy = _pyspy(proc.pid, raw, subprocesses=True, seconds=seconds)
    spy.wait(timeout=seconds + 60)
    load.join()
    bench.procs.stop(proc)
    out = RESULTS / f"profile-intake-{channel}.txt"
    out.write_text(summarize(raw, f"orderhooks intake, {channel}, SQLite, {bench.args.web_workers}"
                                  f" gunicorn workers under {bench.args.connections} "
                                  f"connections, {seconds}s (all gunicorn processes)"))
    return {"file": f"bench/results/{out.name}",
            "what": f"intake ({channel}, SQLite) under closed-loop load"}


def profile_worker(bench, channel: str, count: int | None = None) -> dict:
    """One ``orderhooks worker`` emptying a pre-filled inbox (SQLite, 10,000 orders)."""
    count = count or (3000 if bench.args.quick else 6000)
    url = bench.fresh("sqlite", "profile_worker")
    fill_upgrade(url)
    app = fill.make_app(url)
    cid = bench.make_worker_channel(app, channel, "benchprofile")
    fill.fill_orders(app, cid, count)
    fill.quiet_housekeeping(app)
    ids = random.sample(range(1, count + 1), count)
    rows = fill.delivery_rows(app, cid, channel, bench.requests_for(channel, ids, "prof",
                                                                    "benchprofile"),
                              datetime.utcnow())
    peek = Peek(url)
    worker = bench.start_workers(url, 1, name="worker-profile-")[0]
    time.sleep(2.0)
    raw = bench.workdir / f"profile-worker-{channel}.raw"
    spy = _pyspy(worker.pid, raw, subprocesses=False)
    time.sleep(0.5)
    fill.insert_deliveries(app, rows)
    started = time.monotonic()
    bench.wait_done(peek, 1 + count, count, timeout=300, procs=[worker])  # history rows first
    elapsed = time.monotonic() - started
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
    bench.procs.stop(worker)
    peek.close()
    app.extensions["orderhooks.db"].dispose()
    out = RESULTS / f"profile-worker-{channel}.txt"
    out.write_text(summarize(raw, f"orderhooks worker, {channel}, SQLite, {count} deliveries "
                                  f"in ~{elapsed:.0f}s (one process; includes a short idle "
                                  "tail)"))
    return {"file": f"bench/results/{out.name}",
            "what": f"one worker applying {count:,} {channel} deliveries (SQLite)"}


def fill_upgrade(url: str) -> None:
    from .common import upgrade
    upgrade(url)


_ = loadgen, targets  # used through bench
