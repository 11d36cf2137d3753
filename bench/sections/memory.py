"""Worker memory: RSS and RssAnon of one ``orderhooks worker`` through ``--rss-deliveries``
BigCommerce deliveries (the target's length is 1,000,000), sampled every second. RssAnon is the
process's own memory (heap, stacks), where a leak would show; the rest of RSS is file pages,
mostly SQLite's memory-mapped database, which the kernel reclaims at will."""
from __future__ import annotations

import time
from pathlib import Path

from .. import fill
from ..common import CpuMeter, log
from ..peek import Peek

MIB = 2**20


def run(session) -> dict:
    import psutil
    n = session.args.rss_deliveries
    channel = "bigcommerce"
    log(f"rss: {n:,} {channel} deliveries through one worker")
    url, app = session.migrated("sqlite", "rss")
    cid, rows = session.pending(app, channel, "benchrss", n, range(1, n + 1), "rss",
                                history=False)
    fill.insert_deliveries(app, rows)
    peek = Peek(url)
    gate = session.quiet()
    meter = CpuMeter()
    worker = session.start_workers(url, 1, name="worker-rss-")[0]
    proc = psutil.Process(worker.pid)
    samples, started = [], time.monotonic()
    rss_start = None
    deadline = started + max(300.0, n / 50)
    done = 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if worker.poll() is not None:
            break
        # What is still waiting (a range of ix_deliveries_claim), not a count of every
        # processed row: a scan each second would hold a read snapshot open most of the time
        # and keep the WAL from being reset, which would grow the very file pages measured.
        done = n - peek.one("SELECT count(*) FROM deliveries WHERE channel_id = ? "
                            "AND state IN ('pending', 'processing')", (cid,))[0]
        rss, anon = proc.memory_info().rss, rss_anon(worker.pid)
        samples.append((round(time.monotonic() - started, 1), done, rss, anon))
        if rss_start is None and done >= min(1000, n):
            rss_start = (done, rss, anon)
        if done >= n:
            break
    load = {**gate, **meter.read()}
    session.procs.stop(worker)
    peek.close()
    app.extensions["orderhooks.db"].dispose()
    return figures(n, done, channel, samples, rss_start, load)


def figures(n: int, done: int, channel: str, samples: list[tuple], rss_start: tuple | None,
            load: dict) -> dict:
    """The section's result from (seconds, done, RSS, RssAnon) samples; the start is the first
    sample after 1,000 deliveries, once imports and caches have settled."""
    end = samples[-1] if samples else (0, 0, 0, 0)
    step = max(1, len(samples) // 40)
    return {"deliveries_target": n, "processed": done, "channel": channel, "db": "sqlite",
            "seconds": end[0], "rss_first_sample_mib": round(samples[0][2] / MIB, 1)
            if samples else None,
            "rss_start_mib": round(rss_start[1] / MIB, 1) if rss_start else None,
            "rss_start_after": rss_start[0] if rss_start else None,
            "rss_end_mib": round(end[2] / MIB, 1),
            "rss_max_mib": round(max(s[2] for s in samples) / MIB, 1) if samples else None,
            "anon_start_mib": round(rss_start[2] / MIB, 1) if rss_start else None,
            "anon_end_mib": round(end[3] / MIB, 1),
            "anon_max_mib": round(max(s[3] for s in samples) / MIB, 1) if samples else None,
            "machine_load": load,
            "samples": [(t, d, round(r / MIB, 1), round(a / MIB, 1))
                        for t, d, r, a in samples[::step]]}


def rss_anon(pid: int) -> int:
    """RssAnon of a process in bytes (0 where /proc does not say)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
