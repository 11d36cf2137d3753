"""Instructions per intake request, counted by valgrind's callgrind: a figure that other load on
the machine does not move, for comparing two versions of the code side by side on a busy machine
(CPU time per request moves by 10 % between identical runs there; instruction counts by well
under 1 %).

    python -m bench.instructions [--channel bigcommerce] [--http] [--tree DIR ...]

Each tree (default: this one; another version: ``git worktree add /tmp/old <commit>``) is run
twice under callgrind, with ``--requests`` requests each after the same warm-up, and the figure
is the difference of the two totals over the difference of the requests: start-up and warm-up
cancel out. In-process (default): the WSGI test client into the app, as ``bench/anatomy.py``
does. ``--http``: one gunicorn worker (the tree's ``core/gunicorn_conf.py``, 8 threads) under
callgrind, sequential keep-alive requests from one connection; the figure is the worker
process's, so the HTTP server's own work (event loop, parsing, threads) is in it. The channel
cache keeps its entries for an hour in both: a reload every few seconds of valgrind's slow wall
clock would otherwise be counted per request. Needs valgrind (``apt-get install valgrind``);
each run takes a minute or more."""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
CACHE_SECONDS = 3600.0
WARMUP = 100


def channel_template(app, channel: str):
    """One channel of ``channel`` in ``app``'s database, and the template of its requests.
    Only what ``bench.fill`` and ``bench.targets`` have had since 060a3d8, so that older trees
    can be counted too."""
    from bench import fill, targets
    if channel.startswith("shopify"):  # the cancel body or an orders/create kind
        cid, _ = fill.create_channel(app, "shopify", "bench", {
            "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
            "client_secret": targets.SHOPIFY_SECRET})
        secret = targets.SHOPIFY_SECRET
    else:
        cid, secret = fill.create_channel(app, "bigcommerce", "bench", {
            "store_hash": "bench", "access_token": "t", "api_base_url": "http://127.0.0.1:9"})
    return targets.template(channel, channel_id=cid, secret=secret)


def log_as_deployed() -> None:
    """The service's log level (a line per delivery) with the lines written to /dev/null."""
    import logging
    logging.getLogger("orderhooks").setLevel(logging.INFO)
    sink = open(os.devnull, "w")
    for handler in logging.getLogger("orderhooks").handlers:
        if hasattr(handler, "setStream"):
            handler.setStream(sink)


def _setup(channel: str, url: str):
    """A migrated SQLite database with one channel of ``channel``; returns (app, template)."""
    from bench import fill
    from bench.common import upgrade
    upgrade(url)
    app = fill.make_app(url, CHANNEL_CACHE_SECONDS=CACHE_SECONDS)
    return app, channel_template(app, channel)


def child_inprocess(channel: str, requests: int, workdir: Path) -> None:
    """Runs under callgrind: warm-up, then ``requests`` requests through the WSGI test client."""
    app, tpl = _setup(channel, f"sqlite:///{workdir / 'count.db'}")
    log_as_deployed()
    client = app.test_client()
    for i in range(WARMUP + requests):
        path, headers, body = tpl.render(f"c{i}")
        answer = client.post(path, data=body, headers=headers)
        assert answer.status_code == 200, (answer.status_code, answer.get_data()[:200])


def child_http(channel: str, requests: int, workdir: Path) -> None:
    """Starts one gunicorn worker under callgrind (output in ``workdir``), sends the warm-up and
    ``requests`` requests on one keep-alive connection, stops it."""
    import http.client
    from bench.common import GUNICORN_CONF, free_port, orderhooks_env, wait_http
    url = f"sqlite:///{workdir / 'count.db'}"
    app, tpl = _setup(channel, url)
    app.extensions["orderhooks.db"].dispose()
    port = free_port()
    env = orderhooks_env(url, PYTHONHASHSEED=0,
                         PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(dir=workdir))
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/gunicorn.%p.out",
           os.path.realpath(sys.executable), "-m", "gunicorn", "-c", str(GUNICORN_CONF),
           "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8",
           "--timeout", "900", f"core:create_app({{'CHANNEL_CACHE_SECONDS': {CACHE_SECONDS}}})"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(workdir / "gunicorn.log", "w"),
                              start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=900, proc=server)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for i in range(WARMUP + requests):
            path, headers, body = tpl.render(f"c{i}")
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
        connection.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=600)


def _summary(path: str) -> int:
    for line in open(path):
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"{path}: no callgrind summary")


def count(tree: Path, channel: str, requests: int, http: bool) -> int:
    """Instructions of one run: the in-process child's, or the gunicorn worker's (its largest
    output: the master's is the smaller)."""
    workdir = Path(tempfile.mkdtemp(prefix="orderhooks-instructions-"))
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    child = [os.path.realpath(sys.executable), str(HERE), "--child",
             "http" if http else "inprocess", "--channel", channel,
             "--requests", str(requests), "--workdir", str(workdir)]
    if not http:
        child = ["valgrind", "--tool=callgrind",
                 f"--callgrind-out-file={workdir}/inprocess.%p.out", *child]
    try:
        subprocess.run(child, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pattern = "gunicorn.*.out" if http else "inprocess.*.out"
        return max(_summary(p) for p in glob.glob(str(workdir / pattern)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def per_request(tree: Path, channel: str, low: int, high: int, http: bool) -> float:
    return (count(tree, channel, high, http) - count(tree, channel, low, http)) / (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channel", default="bigcommerce", choices=("bigcommerce", "shopify"))
    parser.add_argument("--http", action="store_true",
                        help="count a gunicorn worker's instructions (else in-process)")
    parser.add_argument("--tree", action="append", default=None,
                        help="a checkout to count (repeatable; default: this one)")
    parser.add_argument("--requests", default="100,400",
                        help="requests of the two runs whose difference counts")
    parser.add_argument("--child", choices=("inprocess", "http"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # Run as a file from another tree's directory: ``bench`` is that tree's (PYTHONPATH),
        # not this file's folder, which Python put first on the path.
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]
        run = child_http if args.child == "http" else child_inprocess
        run(args.channel, int(args.requests), Path(args.workdir))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    low, high = (int(x) for x in args.requests.split(","))
    trees = [Path(t).resolve() for t in (args.tree or [ROOT])]
    results: dict[Path, float] = {}

    def one(tree: Path) -> None:
        results[tree] = per_request(tree, args.channel, low, high, args.http)

    # Trees in parallel: counts do not depend on what else runs.
    threads = [threading.Thread(target=one, args=(tree,)) for tree in trees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    where = "gunicorn worker" if args.http else "in-process"
    for tree in trees:
        print(f"{tree}: {results[tree]:,.0f} instructions per {args.channel} request ({where})")


if __name__ == "__main__":
    main()
