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
