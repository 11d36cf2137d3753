"""Intake: baseline H (bare Flask), baseline M (a hand-written receiver: HMAC and one committed
INSERT) and orderhooks' webhook routes under the same gunicorn, closed loop at fixed
concurrency; then the intake's p99 in an open loop at half its maximum, with M at that rate.

intake/M compares with the faster M of two gunicorn worker kinds, so the service's choice of
worker cannot flatter the ratio; M and intake run back to back ``--rounds`` times and the median
round counts, so one noisy run decides nothing."""
from __future__ import annotations

import os
import random
import statistics

import requests

from .. import baseline_m, fill, loadgen, targets
from ..common import ADMIN_TOKEN, CpuMeter, count_rows, log, median_round, orderhooks_env, upgrade

#: What a half-rate run keeps of the load generator's result.
HALF_RATE_KEYS = ("generator", "target_rps", "rps", "requests", "p50_ms", "p90_ms", "p99_ms",
                  "max_ms", "errors", "connections_peak", "machine_load", "rounds_p99_ms")


def run(session) -> list[dict]:
    """Baseline H per channel, then M and intake per database and channel."""
    rows = []
    for channel in session.channels:
        log(f"intake: baseline H ({channel} body)")
        proc, url = session.start_web("baseline_h", "bench.baseline_h:app", dict(os.environ))
        tpl = targets.template("h" if channel == "bigcommerce" else "h-shopify")
        rows.append({"target": "H", "db": "-", "channel": channel,
                     "gunicorn": session.gunicorn_label(),
                     **session.closed_run(url, tpl, proc, session.generator(channel))})
        session.procs.stop(proc)
    for db in session.dbs:
        for channel in session.channels:
            rows.extend(rounds(session, db, channel))
    return rows


def run_create(session) -> list[dict]:
    """M and intake per database on Shopify ``orders/create`` bodies: the published sample
    (~15 kB) and a 200-line order (~100 kB), as ``rounds`` measures the other bodies."""
    if "shopify" not in session.channels:
        return []
    rows = []
    for db in session.dbs:
        for kind in targets.SHOPIFY_CREATE_LINES:
            rows.extend(rounds(session, db, kind))
    return rows


def rounds(session, db: str, channel: str) -> list[dict]:
    """M (under both kinds of gunicorn worker: whichever is faster is the baseline) and the
    intake, back to back, ``--rounds`` times; each target's row is its median round, and
    intake/M the median of the rounds' ratios (the same run's M each time). Then the intake's
    half-rate run, at half its median req/s."""
    runs = []
    for index in range(session.args.rounds):
        if session.args.rounds > 1:
            log(f"intake: round {index + 1} of {session.args.rounds} ({db}, {channel})")
        runs.append((baseline(session, db, channel), baseline(session, db, channel, sync=True),
                     intake(session, db, channel)))
    rows = [median_round([r[i] for r in runs]) for i in range(3)]
    ratios = [_ratios(m_threads, m_sync, measured) for m_threads, m_sync, measured in runs]
    row = rows[2]
    row["rounds_ratio_m"] = [x["ratio_m"] for x in ratios]
    row["ratio_m"] = statistics.median(row["rounds_ratio_m"])
    cpu = [x["cpu_ratio_m"] for x in ratios if x["cpu_ratio_m"] is not None]
    if cpu:
        row["rounds_cpu_ratio_m"] = cpu
        row["cpu_ratio_m"] = statistics.median(cpu)
    row["half_rate"] = half_rate(session, db, channel,
                                 statistics.median(r[2]["rps"] for r in runs))
    return rows


def _ratios(m_threads: dict, m_sync: dict, measured: dict) -> dict:
    """One round's intake / M, in req/s and in server CPU per request, against the faster M."""
    base = max(m_threads, m_sync, key=lambda x: x["rps"])
    return {"ratio_m": round(measured["rps"] / max(base["rps"], 1e-9), 3),
            "cpu_ratio_m": round(
                measured["server_cpu_ms_per_req"] / base["server_cpu_ms_per_req"], 3)
            if base.get("server_cpu_ms_per_req") else None}


def baseline(session, db: str, channel: str, sync: bool = False) -> dict:
    """Baseline M under load on a fresh database."""
    log(f"intake: baseline M on {db} ({channel} body; {session.gunicorn_label(sync)})")
    proc, web, url = start_m(session, db, channel, sync)
    result = session.closed_run(web, targets.template(f"m-{channel}"), proc,
                                session.generator(channel))
    session.procs.stop(proc)
    return {"target": "M", "db": db, "channel": channel,
            "rows_stored": count_rows(url, "m_inbox"),
            "gunicorn": session.gunicorn_label(sync), **result}


def start_m(session, db: str, channel: str, sync: bool = False):
    """Baseline M on a fresh database. Returns (gunicorn process, web url, database url)."""
    url = session.fresh(db, "baseline_m")
    env = dict(os.environ, BENCH_M_DATABASE=url, BENCH_M_SECRET=targets.M_SECRET)
    baseline_m.create_table(url)
    return (*session.start_web("baseline_m", "bench.baseline_m:app", env, sync=sync), url)


def setup(session, db: str, channel: str, name: str = "intake"):
    """A fresh database, orderhooks under gunicorn, one channel, and one valid delivery that
    must be accepted: a run never measures an intake that refuses valid deliveries. Returns
    (database url, web url, request template, gunicorn process)."""
    url = session.fresh(db, name)
    upgrade(url)
    env = orderhooks_env(url)
    secret, channel_id = None, None
    if channel.startswith("shopify"):
        # In-process: there is no Shopify API on loopback to subscribe with.
        app = fill.make_app(url)
        channel_id = session.make_channel(app, "shopify", "shop")
        app.extensions["orderhooks.db"].dispose()
        secret = targets.SHOPIFY_SECRET
    proc, web = session.start_web("orderhooks_web", "core:create_app()", env)
    if channel == "bigcommerce":
        channel_id, secret = _bigcommerce_channel(session, web)
    tpl = targets.template(channel, channel_id=channel_id, secret=secret)
    path, headers, body = tpl.render("preflight")
    answer = requests.post(f"{web}{path}", data=body, headers=headers, timeout=30)
    if answer.status_code != 200:
        session.procs.stop(proc)
        raise RuntimeError(f"intake preflight ({db}, {channel}): a valid delivery got "
                           f"{answer.status_code}: {answer.text[:300]}")
    return url, web, tpl, proc


def _bigcommerce_channel(session, web: str) -> tuple[int, str]:
    """A BigCommerce channel created through the admin API, which subscribes on the stand-in;
    the webhook secret is the header the service put on the hook. Returns (id, secret)."""
    store = f"intake{random.randrange(10**6)}"
    answer = requests.post(f"{web}/api/v1/channels", timeout=30, headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}"}, json={
        "type": "bigcommerce", "name": "bench store", "credentials": {
            "store_hash": store, "access_token": "t", "api_base_url": session.standin()},
        "valid_cancellation_statuses": [fill.VALID],
        "valid_fulfillment_statuses": [fill.VALID]})
    answer.raise_for_status()
    hooks = requests.get(f"{session.standin()}/stores/{store}/v3/hooks", timeout=10).json()
    return answer.json()["id"], hooks["data"][0]["headers"]["X-Orderhooks-Secret"]


def intake(session, db: str, channel: str) -> dict:
    """orderhooks' intake under load on a fresh database."""
    log(f"intake: orderhooks on {db}, {channel}")
    url, web, tpl, proc = setup(session, db, channel)
    result = session.closed_run(web, tpl, proc, session.generator(channel))
    session.procs.stop(proc)
    return {"target": "intake", "db": db, "channel": channel,
            "rows_stored": count_rows(url, "deliveries"),
            "gunicorn": session.gunicorn_label(), **result}


def half_rate(session, db: str, channel: str, max_rps: float) -> dict:
    """An open loop at half the intake's measured req/s (a fresh database and server), then
    baseline M at the same rate: the tail that the disk's commits alone give (a slow fsync
    shows in PostgreSQL as backends waiting on ``IO/WALSync``). ``--rounds`` pairs, intake and
    M alternating: each reports its median round's figures (by p99), with every round's p99
    beside them, since one stalled fsync in a round decides that round's p99."""
    rate = max(1.0, max_rps / 2)
    halves, floors = [], []
    for index in range(session.args.rounds):
        log(f"intake: open loop at {rate:.0f} req/s (half of {max_rps:.1f}; {db}, {channel}; "
            f"round {index + 1} of {session.args.rounds})")
        _url, web, tpl, proc = setup(session, db, channel)
        halves.append(open_run(session, web, tpl, rate, channel))
        session.procs.stop(proc)
        log(f"intake: baseline M, open loop at {rate:.0f} req/s ({db}, {channel})")
        proc, web, _url = start_m(session, db, channel)
        floors.append(open_run(session, web, targets.template(f"m-{channel}"), rate, channel))
        session.procs.stop(proc)
    half, floor = median_round(halves, "p99_ms"), median_round(floors, "p99_ms")
    return {**{k: half[k] for k in HALF_RATE_KEYS if k in half},
            "baseline_m": {k: floor[k] for k in HALF_RATE_KEYS if k in floor}}


def open_run(session, web: str, tpl, rate: float, channel: str) -> dict:
    """Warm-up (the channel's closed loop), then the measured open loop at ``rate`` req/s."""
    session.load(web, tpl, session.args.warmup, "hw", session.generator(channel))
    gate = session.quiet()
    meter = CpuMeter()
    result = loadgen.python_open(web, tpl, rate=rate, seconds=session.args.duration)
    result["machine_load"] = {**gate, **meter.read()}
    return result
