"""Where an intake request's CPU goes, measured in-process (no gunicorn, no HTTP, no load
generator): the same requests through baseline H, baseline M and the orderhooks app via WSGI
test clients, on SQLite with the same pragmas, timed with ``time.process_time`` (this process's
CPU only, so other processes on the machine cannot inflate it), then cProfile of the intake.

    python -m bench.anatomy [--requests 2000]

Writes ``bench/results/profile-intake-<channel>-inprocess.txt``."""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from werkzeug.test import Client

from . import fill, targets
from .common import RESULTS, sqlite_url, upgrade
from .instructions import channel_template, log_as_deployed


def _timed(call, n: int, tpl, tag: str) -> dict:
    for i in range(min(200, n)):
        call(tpl, f"{tag}w{i}")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        call(tpl, f"{tag}m{i}")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_ms": round(1000 * cpu / n, 3), "wall_ms": round(1000 * wall / n, 3)}


def _caller(client: Client):
    def call(tpl, unique):
        path, headers, body = tpl.render(unique)
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == 200, (response.status_code, response.get_data()[:200])
    return call


#: The edge's steps (``core.edge.WebhookEdge``) and the inbox's, in the order a request takes them.
STEPS = (("edge", "_route"), ("edge", "_read_body"), ("edge", "_find_channel"),
         ("edge", "_authenticate"), ("edge", "_inspect"), ("edge", "_store"),
         ("inbox", "store"), ("inbox", "_transaction"))


def steps(call, n: int, tpl, tag: str) -> list[str]:
    """CPU time of each step of ``n`` intake requests (this thread's CPU, ``time.thread_time``:
    the commit's fsync wait is not in it), the median per request: each step's method wrapped
    for the run, then restored."""
    from core import edge, inbox
    owners = {"edge": edge.WebhookEdge, "inbox": inbox.Writer}
    spent: dict[str, list[int]] = {}
    saved = []

    def timed(name, method):
        def wrapper(*args, **kwargs):
            started = time.thread_time_ns()
            try:
                return method(*args, **kwargs)
            finally:
                spent.setdefault(name, []).append(time.thread_time_ns() - started)
        return wrapper

    for owner, name in STEPS:
        cls = owners[owner]
        raw = cls.__dict__[name]
        saved.append((cls, name, raw))
        method = raw.__func__ if isinstance(raw, staticmethod) else raw
        wrapped = timed(f"{owner}.{name}", method)
        setattr(cls, name, staticmethod(wrapped) if isinstance(raw, staticmethod) else wrapped)
    try:
        for i in range(n):
            call(tpl, f"{tag}{i}")
    finally:
        for cls, name, raw in saved:
            setattr(cls, name, raw)
    return [f"  {name:22s} {statistics.median(values) / 1e6:7.3f} ms"
            for name, values in spent.items()]


def anatomy(channel: str, n: int, workdir: Path) -> str:
    from . import baseline_h, baseline_m
    lines = []
    # H
    h = _timed(_caller(Client(baseline_h.app)), n, targets.template(
        "h" if channel == "bigcommerce" else "h-shopify"), "h")
    # M (same SQLite pragmas)
    m_url = sqlite_url(workdir, "anatomy_m")
    baseline_m.DATABASE, baseline_m._local.conn = m_url, None
    baseline_m.create_table(m_url)
    m = _timed(_caller(Client(baseline_m.app)), n, targets.template(f"m-{channel}"), "m")
    # intake
    url = sqlite_url(workdir, "anatomy_intake")
    upgrade(url)
    app = fill.make_app(url, CHANNEL_CACHE_SECONDS=5.0)  # the production default
    log_as_deployed()
    tpl = channel_template(app, channel)
    call = _caller(app.test_client())
    intake = _timed(call, n, tpl, "i")
    by_step = steps(call, n, tpl, "s")
    profiler = cProfile.Profile(time.process_time)  # CPU only: fsync waits and other load excluded
    profiler.enable()
    for i in range(n):
        call(tpl, f"p{i}")
    profiler.disable()
    app.extensions["orderhooks.db"].dispose()
    lines += [f"In-process CPU per request, {channel} body, SQLite (WAL, synchronous=FULL), "
              f"{n} requests each, WSGI test clients (no gunicorn, no HTTP parsing):", "",
              f"  baseline H   {h['cpu_ms']:7.3f} ms CPU   ({h['wall_ms']:.3f} ms wall)",
              f"  baseline M   {m['cpu_ms']:7.3f} ms CPU   ({m['wall_ms']:.3f} ms wall)",
              f"  intake       {intake['cpu_ms']:7.3f} ms CPU   ({intake['wall_ms']:.3f} ms wall)"
              f"   = {intake['cpu_ms'] / m['cpu_ms']:.2f} x M,"
              f" +{intake['cpu_ms'] - m['cpu_ms']:.3f} ms", "",
              "(wall includes the fsync of each commit; CPU does not)", "",
              "CPU per step, median of the requests (steps nest: inbox.store is inside "
              "edge._store, inbox._transaction inside inbox.store):", *by_step, "",
              f"cProfile (CPU time) of {n} intake requests (the profiler inflates the absolute times; the "
              "proportions are what matters):", ""]
    for sort, count in (("tottime", 30), ("cumulative", 60)):
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats(sort).print_stats(count)
        text = buffer.getvalue()
        text = text.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
        text = "\n".join(line.replace("/root/.pyenv/versions/3.11.7/lib/python3.11/"
                                      "site-packages/", "") for line in text.splitlines())
        lines += [f"== sorted by {sort} ==", text]
    out = RESULTS / f"profile-intake-{channel}-inprocess.txt"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--channels", default="bigcommerce,shopify")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderhooks-anatomy-"))
    for channel in args.channels.split(","):
        print(anatomy(channel, args.requests, workdir))


if __name__ == "__main__":
    main()
