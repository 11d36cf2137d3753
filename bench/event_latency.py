"""Time from a channel delivery's 2xx to its event's arrival at a loopback webhook receiver.

Real processes (tests/reliability/live.py's Stack): gunicorn (2 workers) with the intake, the
worker and sender processes ``orderhooks serve`` starts for the database (``--layout serve``,
the default; ``--worker-processes`` and ``--sender-process`` set its two settings) or one
``orderhooks worker`` with its sender as a thread (``--layout thread``, for trees without
``orderhooks sender``), with the default idle sleep, and a receiver for one endpoint subscribed
to ``order.cancelled``: an asyncio server in a process of its own that answers 204 and parses
bodies only at the end, so neither its parsing nor its interpreter lock is the load
generator's. Deliveries
are sent open loop at a fixed rate (one asyncio loop, requests rendered beforehand), each for
its own order; a delivery's latency runs from the moment its 2xx was read to the moment the
receiver got the signed ``order.cancelled`` POST for its order.

* ``--channel shopify`` (the default): signed ``orders/cancelled`` deliveries, built as the
  intake bench builds them (bench/targets.py), for orders that exist in a valid cancellation
  status: nothing is read from a channel API.
* ``--channel bigcommerce``: ``store/order/statusUpdated`` deliveries; each cancellation reads
  its order once from the BigCommerce stand-in.

Rates: ``--rate`` (repeatable) and ``--half``: half the intake's maximum for that channel and
database, taken from bench/results/latest.json (``--half latest``, the README's figure) or
measured first on the same stack (``--half measure``: a closed loop of ``--max-seconds``, 16
connections, before the worker starts; the deliveries it stored are removed). Each rate runs on
a fresh database and stack. With no ``--rate`` and no ``--half``: 10/s, 100/s and half of the
README's maximum.

Where the time goes comes from the database's own timestamps (wall clock, the same machine):
received -> processed (the intake's insert to the worker's apply), event -> message (the
batch's commit, numbering and fan-out), message -> arrived (to the receiver) and message ->
delivered (the attempt recorded). ``cpu`` has the cores each part used from the first delivery
sent to the last event arrived: the web (gunicorn's processes), each worker and sender process,
the receiver, the load generator (this process), the PostgreSQL server (every ``postgres``
process on the machine) and the machine as a whole (other sessions' work included).

    python -m bench.event_latency --sqlite
    python -m bench.event_latency --sqlite --rate 100 --seconds 20
    python -m bench.event_latency --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_events \\
        --half measure
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

from bench import fill, loadgen, targets
from bench.common import RESULTS, fresh_database, log, machine, upgrade
from tests.reliability import live
from tests.reliability.live import Stack, delivery_body, wait_for

#: Seconds of deliveries per rate, unless ``--seconds`` says otherwise: enough for a p99 of
#: 100 deliveries at the trickle.
DEFAULT_SECONDS = 10.0
REFERENCE_RATES = (10.0, 100.0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def spread(values: list[float]) -> dict:
    if not values:
        return {}
    return {"p50_ms": round(statistics.median(values), 1),
            "p90_ms": round(percentile(values, 0.90), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1)}


def readme_max(channel: str, db: str) -> float | None:
    """The intake's req/s for ``channel`` on ``db`` in bench/results/latest.json (the median
    round of the README's run), or None."""
    try:
        report = json.loads((RESULTS / "latest.json").read_text())
    except (OSError, ValueError):
        return None
    for row in report.get("intake") or []:
        if (row.get("target"), row.get("channel"), row.get("db")) == ("intake", channel, db):
            return float(row["rps"])
    return None


class Shop:
    """The Shopify side: a channel and its orders created in-process (no subscription calls;
    the housekeeping that would check subscriptions is marked done), signed deliveries."""

    channel = "shopify"

    def __init__(self, database_url: str):
        self.app = fill.make_app(database_url, SECRET_KEY=live.SECRET_KEY)
        self.channel_id, _ = fill.create_channel(self.app, "shopify", "latency shop", {
            "shop_domain": targets.SHOP_DOMAIN, "access_token": "shpat_bench",
            "client_secret": targets.SHOPIFY_SECRET})
        fill.quiet_housekeeping(self.app)
        self.made = 0

    def start(self, stack: Stack) -> None:
        pass

    def orders(self, stack: Stack, count: int) -> list[int]:
        ids = list(range(self.made + 1, self.made + count + 1))
        fill.fill_orders(self.app, self.channel_id, count, start=self.made + 1)
        self.made += count
        return ids

    def requests(self, stack: Stack, order_ids: list[int], tag: str) -> list[bytes]:
        host, port = loadgen._hostport(stack.web_url)
        path = f"/webhooks/shopify/{self.channel_id}"
        return [loadgen.raw_post(host, port, path, headers, body)
                for headers, body in targets.shopify_requests(order_ids, tag)]

    def measure_max(self, stack: Stack, seconds: float) -> float:
        """The intake's req/s in a closed loop (16 connections, Python generator: Shopify
        bodies are signed each), before any worker runs; what it stored is removed."""
        tpl = targets.template("shopify", channel_id=self.channel_id,
                               secret=targets.SHOPIFY_SECRET)
        result = loadgen.python_closed(stack.web_url, tpl, connections=16, seconds=seconds)
        engine = live.db_engine(stack.database_url)
        try:
            with engine.begin() as conn:
                from sqlalchemy import text
                conn.execute(text("DELETE FROM deliveries WHERE topic = 'orders/cancelled'"))
        finally:
            engine.dispose()
        return float(result["rps"])

    def close(self) -> None:
        self.app.extensions["orderhooks.db"].dispose()


class Store:
    """The BigCommerce side: a channel on the stand-in (which answers every order as
    Cancelled), orders created through the admin API."""

    channel = "bigcommerce"

    def __init__(self, database_url: str):
        self.info: dict = {}
        self.made = 0

    def start(self, stack: Stack) -> None:
        stack.start_standin(default_status=5)

    def orders(self, stack: Stack, count: int) -> list[int]:
        from concurrent.futures import ThreadPoolExecutor
        if not self.info:
            self.info = stack.create_channel("lat")
        ids = list(range(self.made + 1, self.made + count + 1))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: stack.create_order(self.info["id"], n), ids))
        self.made += count
        return ids

    def requests(self, stack: Stack, order_ids: list[int], tag: str) -> list[bytes]:
        host, port = loadgen._hostport(stack.web_url)
        path = f"/webhooks/bigcommerce/{self.info['id']}"
        headers = {"Content-Type": "application/json", live.SECRET_HEADER: self.info["secret"]}
        return [loadgen.raw_post(host, port, path, headers,
                                 delivery_body("lat", n, salt=tag)[0]) for n in order_ids]

    def measure_max(self, stack: Stack, seconds: float) -> float:
        raise SystemExit("--half measure is for the Shopify path only")

    def close(self) -> None:
        pass


def receive(port_queue) -> None:
    """The receiver process: every POST is answered 204 and kept with the moment it was read
    whole (time.monotonic: the machine's clock, the bench's too); ``GET /arrivals`` answers
    channel order id -> its first ``order.cancelled``'s arrival, ``GET /count`` how many POSTs
    came. Bodies are parsed only when asked, so a POST costs the receiver its HTTP parsing."""
    import asyncio

    got: list[tuple[float, bytes]] = []
    loop = asyncio.new_event_loop()

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, bytearray()

        def data_received(self, data):
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                length = next((int(line.split(":", 1)[1]) for line in head[1:]
                               if line.lower().startswith("content-length:")), 0)
                if len(self.buffer) < end + 4 + length:
                    return
                body = bytes(self.buffer[end + 4:end + 4 + length])
                del self.buffer[:end + 4 + length]
                method, path = head[0].split(" ")[:2]
                if method == "POST":
                    got.append((time.monotonic(), body))
                    self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    continue
                answer = (arrivals_of(got) if path == "/arrivals" else len(got))
                text = json.dumps(answer).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                     % (len(text), text))

    server = loop.run_until_complete(loop.create_server(Protocol, "127.0.0.1", 0))
    port_queue.put(server.sockets[0].getsockname()[1])
    loop.run_forever()


def arrivals_of(got: list[tuple[float, bytes]]) -> dict[int, float]:
    """Channel order id -> when its first ``order.cancelled`` arrived."""
    found: dict[int, float] = {}
    for at, body in got:
        found.setdefault(int(json.loads(body)["data"]["order"]["channel_order_id"]), at)
    return found


class ReceiverProcess:
    """The loopback receiver in a process of its own (:func:`receive`): its parsing and its
    interpreter lock are not the load generator's, which shares this process."""

    def __init__(self):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        ports = ctx.Queue()
        self.process = ctx.Process(target=receive, args=(ports,), daemon=True)
        self.process.start()
        self.base = f"http://127.0.0.1:{ports.get(timeout=60)}"
        self.pid = self.process.pid

    def url(self, path: str) -> str:
        return self.base + path

    def count(self) -> int:
        import requests
        return int(requests.get(f"{self.base}/count", timeout=30).text)

    def arrivals(self) -> dict[int, float]:
        import requests
        return {int(k): v for k, v in requests.get(f"{self.base}/arrivals",
                                                   timeout=60).json().items()}

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(timeout=10)


def run(database_url: str, channel: str, rate: float | str, seconds: float, workdir: Path,
        idle: float = 0.5, max_seconds: float = 10.0, layout: str = "serve",
        worker_processes: int = 0, sender_process: str = "") -> dict:
    """One rate on a fresh stack; ``rate`` may be ``"measure"`` (half of the maximum measured
    here first). ``layout``: ``serve`` starts the processes ``orderhooks serve`` starts beside
    the web (its two settings given by ``worker_processes`` and ``sender_process``), ``thread``
    one ``orderhooks worker`` with its sender as a thread (the layout of trees without
    ``orderhooks sender``)."""
    side = (Shop if channel == "shopify" else Store)(database_url)
    receiver = ReceiverProcess()
    # INFO: the Stack waits for the worker's ``worker.started`` line before the clock starts
    env = {"ORDERHOOKS_ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
           "ORDERHOOKS_WORKER_IDLE_SECONDS": str(idle), "ORDERHOOKS_LOG_LEVEL": "INFO"}
    acked: dict[int, float] = {}
    statuses: dict[int, int] = {}
    measured_max = None
    loads = [os.getloadavg()[0]]
    try:
        with Stack(database_url, workdir / "live", env=env) as stack:
            side.start(stack)
            stack.start_web(workers=2)
            stack.admin("POST", "/webhook-endpoints", 201,
                        json={"url": receiver.url("/hooks"), "event_types": ["order.cancelled"]})
            if rate == "measure":
                log(f"measuring the intake's maximum ({max_seconds:g} s closed loop)")
                measured_max = side.measure_max(stack, max_seconds)
                rate = measured_max / 2
            count = max(1, int(rate * seconds))
            order_ids = side.orders(stack, count)
            requests = side.requests(stack, order_ids, f"lat{time.time_ns()}")
            if layout == "serve":
                stack.start_background(worker_processes, sender_process)
            else:
                stack.start_worker()
            time.sleep(2.0)  # the worker is up and idle
            loads.append(os.getloadavg()[0])

            def on_answer(k: int, status: int, at: float) -> None:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    acked[order_ids[k]] = at

            log(f"sending {count} {channel} deliveries at {rate:.1f}/s")
            cpu_before, cpu_started = cpu_ticks(stack, receiver.pid), time.monotonic()
            sent = loadgen.open_loop(stack.web_url, requests, rate=rate, on_answer=on_answer)
            send_seconds = time.monotonic() - cpu_started
            loads.append(os.getloadavg()[0])
            wait_for(lambda: receiver.count() >= len(acked), 180, interval=0.2,
                     what="every event at the receiver")
            cpu = cpu_share(cpu_before, cpu_ticks(stack, receiver.pid),
                            time.monotonic() - cpu_started)
            loads.append(os.getloadavg()[0])
        arrived = receiver.arrivals()
    finally:
        receiver.stop()
        side.close()
    latencies = [(arrived[n] - acked[n]) * 1000 for n in acked if n in arrived]
    result = {"channel": channel, "layout": [p.name for p in stack.workers + getattr(
                  stack, "senders", [])], "rate": round(rate, 1), "deliveries": count,
              "acknowledged": len(acked), "errors": sent["errors"] + sum(
                  v for s, v in statuses.items() if s != 200),
              "arrived": len(latencies), **spread(latencies),
              "load_average": [round(x, 2) for x in loads], "cpu": cpu,
              "send_seconds": round(send_seconds, 1), "connections_peak": sent["connections_peak"],
              "stages": stages(database_url, acked, arrived)}
    # CPU per delivery, end to end: the rate two cores could carry is 2000 / the sum's ms
    result["cpu_ms_per_delivery"] = {
        name: round(share * cpu["seconds"] * 1000 / max(1, len(acked)), 2)
        for name, share in cpu.items() if name not in ("seconds", "machine")}
    if measured_max is not None:
        result["measured_max_rps"] = round(measured_max, 1)
    return result


def _ticks(stat_path: Path) -> int:
    """utime + stime of a /proc stat file, in clock ticks (0 once the process is gone)."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def cpu_ticks(stack: Stack, receiver_pid: int) -> dict[str, int]:
    """CPU ticks so far per part of the run: each process the stack started (gunicorn's master
    and its workers together), the receiver's process, this process (the load generator), the
    database server's processes and the whole machine."""
    found: dict[str, int] = {"bench-receiver": _ticks(Path(f"/proc/{receiver_pid}/stat")),
                             "bench-loadgen": _ticks(Path("/proc/self/stat"))}
    for proc in stack.procs:
        pids = [proc.pid] + live.children(proc.pid)
        found[proc.name] = sum(_ticks(Path(f"/proc/{pid}/stat")) for pid in pids)
    # the database server's processes (PostgreSQL: every backend on the machine, ours and any
    # other session's), and the machine's busy time (all CPUs, whoever used them)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found["postgres"] = found.get("postgres", 0) + _ticks(entry / "stat")
            except OSError:
                continue
    total = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    found["machine"] = sum(total) - total[3] - total[4]  # less idle and iowait
    return found


def cpu_share(before: dict[str, int], after: dict[str, int], seconds: float) -> dict:
    """Cores used per part between two :func:`cpu_ticks`."""
    hz = os.sysconf("SC_CLK_TCK")
    return {name: round(max(0, after[name] - before.get(name, 0)) / hz / seconds, 2)
            for name in after} | {"seconds": round(seconds, 1)}


def stages(database_url: str, acked: dict[int, float], arrived: dict[int, float]) -> dict:
    """Where the time went, per delivery, from the database's timestamps (naive UTC) and the
    bench's clock (monotonic, moved to the wall clock by one offset)."""
    from sqlalchemy import text
    offset = time.time() - time.monotonic()
    engine = live.db_engine(database_url)
    try:
        with engine.connect() as conn:
            deliveries = {row[0]: row[1:] for row in conn.execute(text(
                "SELECT id, channel_order_id, received_at, processed_at FROM deliveries "
                "WHERE state = 'done' AND topic <> 'history'"))}
            rows = conn.execute(text(
                "SELECT e.occurred_at, e.data, m.created_at, m.delivered_at FROM events e "
                "JOIN webhook_messages m ON m.event_id = e.id "
                "WHERE e.type = 'order.cancelled'")).all()
    finally:
        engine.dispose()

    def wall(value) -> float:
        if isinstance(value, str):  # SQLite hands back text
            from datetime import datetime
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc).timestamp()

    parts: dict[str, list[float]] = {"ack_to_processed": [], "received_to_processed": [],
                                     "event_to_message": [], "message_to_arrived": [],
                                     "message_to_delivered": []}
    for occurred, data, created, delivered in rows:
        data = json.loads(data) if isinstance(data, str) else data
        found = deliveries.get(data.get("delivery_id"))
        if found is None:
            continue
        order_id, received, processed = found
        order_id = int(order_id)
        if order_id not in acked or order_id not in arrived:
            continue
        processed_at = wall(processed)
        message_at = wall(created)
        parts["ack_to_processed"].append((processed_at - (acked[order_id] + offset)) * 1000)
        parts["received_to_processed"].append((processed_at - wall(received)) * 1000)
        parts["event_to_message"].append((message_at - wall(occurred)) * 1000)
        parts["message_to_arrived"].append((arrived[order_id] + offset - message_at) * 1000)
        if delivered is not None:
            parts["message_to_delivered"].append((wall(delivered) - message_at) * 1000)
    return {name: spread(values) for name, values in parts.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--channel", choices=("shopify", "bigcommerce"), default="shopify")
    parser.add_argument("--rate", type=float, action="append", default=None,
                        help="deliveries per second (repeatable)")
    parser.add_argument("--half", choices=("latest", "measure"), default=None,
                        help="also run at half the intake's maximum: from "
                             "bench/results/latest.json, or measured first on the stack")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="the closed loop of --half measure")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument("--idle", type=float, default=0.5, help="the worker's idle sleep: a "
                        "long one shows what the doorbell saves")
    parser.add_argument("--layout", choices=("serve", "thread"), default="serve",
                        help="serve: the processes `orderhooks serve` starts (default); "
                             "thread: one `orderhooks worker`, its sender a thread")
    parser.add_argument("--worker-processes", type=int, default=0,
                        help="ORDERHOOKS_WORKER_PROCESSES of the serve layout (0: its default)")
    parser.add_argument("--sender-process", choices=("", "yes", "no"), default="",
                        help="ORDERHOOKS_SENDER_PROCESS of the serve layout (default: unset)")
    parser.add_argument("--out", default=str(RESULTS / "event-latency.json"))
    args = parser.parse_args(argv)
    rates: list = list(args.rate or [])
    half = args.half or (None if args.rate else "latest")
    if not args.rate and not args.half:
        rates = list(REFERENCE_RATES)
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    results = []
    for kind in (["sqlite"] if args.sqlite else []) + (["postgresql"] if args.pg_url else []):
        plan = list(rates)
        if half == "latest":
            top = readme_max(args.channel, kind)
            if top is None:
                log(f"no intake figure for {args.channel}/{kind} in latest.json: no half rate")
            else:
                plan.append(top / 2)
        elif half == "measure":
            plan.append("measure")
        for index, rate in enumerate(plan):
            url = fresh_database(kind, f"events{index}", workdir, args.pg_url or "")
            upgrade(url)
            result = {"db": kind, "idle_seconds": args.idle,
                      **run(url, args.channel, rate, args.seconds, workdir / f"{kind}{index}",
                            args.idle, args.max_seconds, args.layout,
                            args.worker_processes, args.sender_process)}
            if half == "latest" and index == len(plan) - 1 and rate not in rates:
                result["half_of"] = round(2 * rate, 1)
            log(json.dumps(result))
            results.append(result)
    report = {"machine": machine(), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
