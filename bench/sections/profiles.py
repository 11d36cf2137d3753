"""Profiles with py-spy (sampling, attached to the running processes; ``--idle`` so that time
spent waiting on fsync, the database or the channel API shows too) of the intake's gunicorn
workers and of one worker, plus the intake's in-process anatomy (``bench/anatomy.py``). Writes
the top functions (self and inclusive time) to ``bench/results/profile-*.txt``."""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from .. import fill
from ..anatomy import anatomy
from ..common import RESULTS
from ..peek import Peek
from . import intake


def run(session) -> list[dict]:
    """Per channel: the intake and a worker under py-spy, then the in-process anatomy."""
    out = []
    for channel in session.channels:
        out.append(profile_intake(session, channel))
        out.append(profile_worker(session, channel))
        path = anatomy(channel, 2000, session.workdir)
        out.append({"file": f"bench/results/{Path(path).name}",
                    "what": f"intake ({channel}) CPU per request in-process vs H and M, and "
                            "a CPU-time cProfile"})
    return out


def summarize(raw_path, title: str, focus: str, top: int = 35, idle: bool = True) -> str:
    """py-spy's raw (collapsed) stacks → top functions by self and by inclusive samples, over
    the stacks that pass through ``focus`` (e.g. the request handler: the gunicorn master and
    idle accept loops are left out)."""
    self_c, incl_c, total, everything = Counter(), Counter(), 0, 0
    for line in open(raw_path):
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        everything += n
        frames = [_func(f) for f in stack.split(";") if not f.startswith("process ")]
        if not any(f.startswith(focus + " ") for f in frames):
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl_c[f] += n
    total = total or 1
    view = ("WALL-CLOCK view (--idle: waiting on locks, fsync, sockets counts)" if idle
            else "ON-CPU view (only samples where the thread was running)")
    out = [title, view, f"samples: {everything} (py-spy, 100 Hz); {total} inside {focus} = "
                        "100 % below", "",
           "== self time (where the samples were) =="]
    for f, n in self_c.most_common(top):
        out.append(f"{100 * n / total:6.1f}%  {f}")
    out += ["", "== inclusive time (the function or anything it called) =="]
    for f, n in incl_c.most_common(top + 25):
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


def _pyspy(pid: int, raw_path, subprocesses: bool, seconds: float | None = None,
           idle: bool = True):
    """py-spy record; ``idle``: also sample threads that wait (wall-clock view), else only
    threads on the CPU (where CPU time goes)."""
    # py-spy sits beside this interpreter in a virtualenv that is not on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    program = shutil.which("py-spy") or (str(beside) if beside.exists() else "py-spy")
    cmd = [program, "record", "-r", "100", "-f", "raw", "-o", str(raw_path), "-p", str(pid),
           "--nonblocking"] + (["--idle"] if idle else [])
    if subprocesses:
        cmd.append("--subprocesses")
    if seconds:
        cmd += ["-d", str(int(seconds))]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_intake(session, channel: str) -> dict:
    """orderhooks intake on SQLite under the closed-loop load, every gunicorn worker sampled:
    first wall-clock, then on-CPU."""
    seconds = max(6, int(session.args.duration))
    _db_url, url, tpl, proc = intake.setup(session, "sqlite", channel, name="profile_intake")
    generator = session.generator(channel)
    session.load(url, tpl, session.args.warmup, "w", generator)
    load = threading.Thread(target=session.load,
                            args=(url, tpl, 2 * seconds + 6, "p", generator))
    load.start()
    time.sleep(1)
    parts = []
    for idle in (True, False):
        raw = session.workdir / f"profile-intake-{channel}-{'wall' if idle else 'cpu'}.raw"
        spy = _pyspy(proc.pid, raw, subprocesses=True, seconds=seconds, idle=idle)
        spy.wait(timeout=seconds + 60)
        parts.append(summarize(raw, f"orderhooks intake, {channel}, SQLite, "
                                    f"{session.args.web_workers}x{session.args.web_threads} "
                                    f"gunicorn workers x threads under "
                                    f"{session.args.connections} connections, {seconds}s",
                               "ThreadWorker.handle_request", idle=idle))
    load.join()
    session.procs.stop(proc)
    out = RESULTS / f"profile-intake-{channel}.txt"
    out.write_text("\n\n".join(parts))
    return {"file": f"bench/results/{out.name}",
            "what": f"intake ({channel}, SQLite) under closed-loop load, wall-clock and on-CPU"}


def profile_worker(session, channel: str, count: int | None = None) -> dict:
    """One ``orderhooks worker`` emptying a pre-filled inbox (SQLite), twice: wall-clock, then
    on-CPU."""
    count = count or (3000 if session.args.quick else 6000)
    parts = []
    for idle in (True, False):
        url, app = session.migrated("sqlite", "profile_worker")
        _cid, rows = session.pending(app, channel, "benchprofile", count,
                                     random.sample(range(1, count + 1), count), "prof")
        # Due a few seconds from now: the worker has started and py-spy is attached by then,
        # and the bulk insert (which holds SQLite's write lock) is over.
        due = datetime.utcnow() + timedelta(seconds=8)
        fill.insert_deliveries(app, (r[:11] + (due,) for r in rows))
        peek = Peek(url)
        worker = session.start_workers(url, 1, name="worker-profile-")[0]
        time.sleep(4.0)
        raw = session.workdir / f"profile-worker-{channel}-{'wall' if idle else 'cpu'}.raw"
        spy = _pyspy(worker.pid, raw, subprocesses=False, idle=idle)
        session.wait_done(peek, 1 + count, 1, timeout=120, procs=[worker])  # history rows first
        started = time.monotonic()
        session.wait_done(peek, 1 + count, count, timeout=300, procs=[worker])
        elapsed = time.monotonic() - started
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
        session.procs.stop(worker)
        peek.close()
        app.extensions["orderhooks.db"].dispose()
        parts.append(summarize(raw, f"orderhooks worker, {channel}, SQLite, {count} deliveries "
                                    f"in ~{elapsed:.0f}s (one process)", "Worker.run_once",
                               idle=idle))
    out = RESULTS / f"profile-worker-{channel}.txt"
    out.write_text("\n\n".join(parts))
    return {"file": f"bench/results/{out.name}",
            "what": f"one worker applying {count:,} {channel} deliveries (SQLite), wall-clock "
                    "and on-CPU"}

