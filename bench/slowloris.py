"""Slow clients against the web tier: ``--sockets`` connections that send a request head one
byte every ``--interval`` seconds (re-opened whenever the server closes one, so that many stay
open) for ``--seconds``, while genuine deliveries are sent one after another; reports how long
each genuine delivery took to be answered. Three targets, each on a fresh SQLite database:

- ``orderhooks``: gunicorn with core/gunicorn_conf.py (core.gunicorn_ext.ThreadWorker);
- ``nginx``: the same behind deploy/nginx/orderhooks.conf (Debian's nginx, scripts/install-nginx);
- ``stock-gthread``: gunicorn's own gthread worker with the same settings, for comparison.

    python -m bench.slowloris                      # 200 sockets for 60 s, every target
    python -m bench.slowloris --seconds 15 --only orderhooks

Writes bench/results/slowloris.json and bench/results/slowloris.md. The short version runs in
the test suite: tests/reliability/test_slow_clients.py and test_behind_nginx.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.live import (Nginx, SlowClients, Stack, install_nginx,  # noqa: E402
                                    timed_deliveries)

RESULTS = ROOT / "bench" / "results"
TARGETS = ("orderhooks", "nginx", "stock-gthread")


def run_target(target: str, sockets: int, seconds: float, interval: float, workers: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"orderhooks-slowloris-{target}-"))
    url = f"sqlite:///{workdir / 'orderhooks.db'}"
    with Stack(url, workdir / "live") as stack:
        subprocess.run([sys.executable, "-m", "core.cli", "db", "upgrade"], env=stack.env,
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        stack.start_standin()
        args = ("--worker-class", "gthread") if target == "stock-gthread" else ()
        stack.start_web(workers=workers, args=args)
        channel = stack.create_channel("slow" + target.replace("-", ""))
        proxy = None
        base_url = stack.web_url
        if target == "nginx":
            proxy = Nginx(stack.web_url.split("//", 1)[1], workdir / "nginx")
            base_url = proxy.url
        port = int(base_url.rsplit(":", 1)[1])
        try:
            before = timed_deliveries(stack, channel, base_url, 2.0)
            slow = SlowClients("127.0.0.1", port, sockets, interval=interval,
                               max_seconds=seconds + 30)
            try:
                during = timed_deliveries(stack, channel, base_url, seconds, timeout=10.0)
                open_at_end = slow.open()
            finally:
                slow.close()
        finally:
            if proxy:
                proxy.stop()
    answered = [s for s, outcome in during if outcome == 200]
    return {
        "target": target, "slow_sockets": sockets, "seconds": seconds, "interval_s": interval,
        "web_processes": workers, "slow_sockets_open_at_end": open_at_end,
        "slow_sockets_closed_by_server": slow.closed_by_server, "connect_refused": slow.refused,
        "deliveries": len(during), "answered_200": len(answered),
        "failed": len(during) - len(answered),
        "outcomes": sorted({str(o) for _, o in during}),
        "within_1s": sum(1 for s, o in during if o == 200 and s < 1.0),
        "max_s": round(max(s for s, _ in during), 3) if during else None,
        "median_s": round(statistics.median(answered), 4) if answered else None,
        "before_attack_median_s": round(statistics.median(s for s, _ in before), 4),
    }


def markdown(run: dict) -> str:
    lines = [f"Run {run['at']} of commit {run['commit']} (`{run['command']}`). Machine: "
             f"{run['machine']}. Everything on loopback, SQLite.", "",
             f"{run['rows'][0]['slow_sockets']} slow sockets (one header byte every "
             f"{run['rows'][0]['interval_s']:g} s each; a socket the server closes is opened "
             f"again) for {run['rows'][0]['seconds']:g} s, while genuine BigCommerce deliveries "
             "are sent one after another (0.25 s apart, 10 s client timeout).", "",
             "| target | deliveries | answered 200 | within 1 s | median s | max s | median s "
             "before | slow sockets open at end | closed by server (re-opened) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in run["rows"]:
        lines.append(f"| {row['target']} | {row['deliveries']} | {row['answered_200']} | "
                     f"{row['within_1s']} | {row['median_s']} | {row['max_s']} | "
                     f"{row['before_attack_median_s']} | {row['slow_sockets_open_at_end']} | "
                     f"{row['slow_sockets_closed_by_server']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--only", default=",".join(TARGETS))
    parser.add_argument("--out", default=str(RESULTS / "slowloris"))
    args = parser.parse_args(argv)
    targets = [t for t in args.only.split(",") if t]
    if "nginx" in targets and install_nginx() is None:
        print("nginx cannot be installed here: skipping the nginx target", file=sys.stderr)
        targets.remove("nginx")
    rows = []
    for target in targets:
        row = run_target(target, args.sockets, args.seconds, args.interval, args.workers)
        print(json.dumps(row), flush=True)
        rows.append(row)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    run = {"at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "commit": commit,
           "command": "python -m bench.slowloris " + " ".join(argv or sys.argv[1:]),
           "machine": f"{os.cpu_count()} cores, {platform.platform()}, load average "
                      f"{os.getloadavg()[0]:.1f} at the end", "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(run, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(run))
    print(markdown(run))
    return 0 if all(r["failed"] == 0 and r["within_1s"] == r["deliveries"]
                    for r in rows if r["target"] != "stock-gthread") else 1


if __name__ == "__main__":
    sys.exit(main())
