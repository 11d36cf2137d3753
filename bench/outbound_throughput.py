"""Outbound webhook throughput: events/s from one sender (the thread ``orderhooks worker`` runs)
to a fast loopback receiver, beside a plain ``requests`` loop to the same receiver (the ceiling).

N ``order.cancelled`` events (``--orders`` distinct orders) are written and numbered before the
clock starts, in a fresh database each round; one endpoint points at the receiver; the sender's
loop (``Sender.run_forever``) runs in this process until the receiver has every event. The
receiver is an asyncio HTTP/1.1 server (keep-alive, 204 for every POST) in a process of its
own, so neither its parsing nor its GIL is the sender's. ``--slow`` adds a second endpoint
whose every answer takes ``--slow-seconds`` (and a third that is dead: connection refused)
beside the fast one: the fast one's rate should hold. ``--fanned`` turns the events into the
endpoint's messages before the clock starts (the state after an endpoint was down while they
were written: a backlog of pending messages).

Every round checks what the receiver got: each order's events in the order written (the first
arrival of each, as a receiver dropping repeats sees them), and reports the rate over each
tenth of the events (a rate falling with the backlog shows there)::

    python -m bench.outbound_throughput --events 3000 --rounds 3
    python -m bench.outbound_throughput --events 3000 --slow --pg-url postgresql+psycopg://...
    python -m bench.outbound_throughput --events 100000 --fanned --rounds 1
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.common import fresh_database, log, machine, upgrade


def serve(port_queue, slow_seconds: float) -> None:
    """The receiver process: every POST is answered 204 (``/slow`` after ``slow_seconds``) and
    its ``webhook-id`` logged per path; ``GET /count/<path>`` answers how many distinct ids that
    path got, ``GET /log/<path>`` every id in arrival order, ``GET /count/reset`` forgets."""
    import asyncio

    arrivals: dict[str, list[str]] = {}
    distinct: dict[str, set] = {}
    loop = asyncio.new_event_loop()

    class Receiver(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = bytearray()

        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if len(self.buffer) < end + 4 + length:
                    return
                del self.buffer[:end + 4 + length]
                self.answer(method, path, headers)

        def answer(self, method, path, headers):
            if method == "POST":
                webhook_id = headers.get("webhook-id")
                arrivals.setdefault(path, []).append(webhook_id)
                distinct.setdefault(path, set()).add(webhook_id)
                reply = b"HTTP/1.1 204 No Content\r\n\r\n"
                if path == "/slow":
                    loop.call_later(slow_seconds, self.write, reply)
                else:
                    self.write(reply)
                return
            if path == "/count/reset":
                arrivals.clear()
                distinct.clear()
                body = b"0"
            elif path.startswith("/log/"):
                body = "\n".join(arrivals.get(path[len("/log"):], ())).encode()
            else:
                body = str(len(distinct.get(path[len("/count"):], ()))).encode()
            self.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

        def write(self, data):
            if not self.transport.is_closing():
                self.transport.write(data)

    server = loop.run_until_complete(loop.create_server(Receiver, "127.0.0.1", 0))
    port_queue.put(server.sockets[0].getsockname()[1])
    loop.run_forever()


def count(base: str, path: str) -> int:
    return int(requests.get(f"{base}/count{path}", timeout=5).text)


def ceiling(base: str, n: int, threads: int) -> float:
    """Events/s of a plain loop: ``threads`` threads, one keep-alive session each, POSTing a
    body of an event's size to ``/plain``."""
    body = json.dumps({"id": "evt_x", "type": "order.cancelled", "data": {"order": {
        "id": 1, "status": "CANCELLED", "x": "y" * 400}}}).encode()
    per = n // threads

    def loop(k: int) -> None:
        with requests.Session() as s:
            for i in range(per):
                s.post(f"{base}/plain", data=body, headers={
                    "Content-Type": "application/json", "webhook-id": f"p{k}-{i}"}, timeout=10)

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per * threads / (time.perf_counter() - started)


def write_events(app, n: int, orders: int) -> dict[int, list[str]]:
    """Write and number ``n`` events; returns each order's event ids in the order written."""
    from core import events
    db = app.extensions["orderhooks.db"]
    written: dict[int, list[str]] = {}
    with app.app_context():
        for start in range(0, n, 1000):
            with db.session() as session:
                for i in range(start, min(n, start + 1000)):
                    order = i % orders
                    event = events.emit(session, "order.cancelled",
                                        {"order": {"id": order, "status": "CANCELLED", "seq": i,
                                                   "note": "y" * 300}},
                                        channel_id=None, order_key=f"order:{order}")
                    written.setdefault(order, []).append(event.event_id)
        while events.sequence(db):
            pass
    return written


def in_order(arrived: list[str], written: dict[int, list[str]]) -> bool:
    """Whether each order's events first arrived in the order they were written."""
    place = {event_id: (order, n) for order, ids in written.items()
             for n, event_id in enumerate(ids)}
    reached: dict[int, int] = {}
    for event_id in dict.fromkeys(arrived):  # first arrivals: a receiver drops repeats
        order, n = place[event_id]
        if n != reached.get(order, 0):
            return False
        reached[order] = n + 1
    return True


def tenths(samples: list[tuple[float, int]], n: int) -> list[float]:
    """Events/s over each tenth of the events, from (seconds, count) samples."""
    rates, last_t, last_c = [], 0.0, 0
    for k in range(1, 11):
        goal = n * k // 10
        t, c = next(((t, c) for t, c in samples if c >= goal), samples[-1])
        if c > last_c and t > last_t:
            rates.append(round((c - last_c) / (t - last_t), 1))
        last_t, last_c = t, c
    return rates


def one_round(url: str, base: str, n: int, orders: int, slow: bool, fanned: bool) -> dict:
    from bench.fill import make_app
    from core import endpoints
    from core.sender import Sender
    app = make_app(url, ALLOWED_WEBHOOK_URLS="http://127.0.0.1:*", WEBHOOK_TIMEOUT_SECONDS=5.0)
    db = app.extensions["orderhooks.db"]
    box = app.extensions["orderhooks.box"]
    requests.get(f"{base}/count/reset", timeout=5)
    with app.app_context(), db.session() as session:
        fast_id = endpoints.create(session, box, url=f"{base}/fast")[0].id
        if slow:
            endpoints.create(session, box, url=f"{base}/slow")
            endpoints.create(session, box, url="http://127.0.0.1:9/dead")
    written = write_events(app, n, orders)
    sender = Sender(app, "bench")
    if fanned:
        with app.app_context():
            while sender._fan_out(fast_id):
                pass
    stopping = threading.Event()
    samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    thread = threading.Thread(target=sender.run_forever, args=(stopping,), daemon=True)
    with app.app_context():
        thread.start()
        deadline = started + 3600
        got = 0
        while got < n and time.perf_counter() < deadline:
            time.sleep(0.05)
            got = count(base, "/fast")
            samples.append((time.perf_counter() - started, got))
        elapsed = next(t for t, c in samples if c >= got)
        slow_got = count(base, "/slow") if slow else None
        stopping.set()
        from core import events
        events.wake()
        thread.join(timeout=30)
    db.dispose()
    arrived = requests.get(f"{base}/log/fast", timeout=30).text.split("\n")
    return {"events": n, "seconds": round(elapsed, 2), "events_per_s": round(n / elapsed, 1),
            "in_order_per_order": in_order(arrived, written),
            "repeats": len(arrived) - len(set(arrived)),
            "per_tenth_events_per_s": tenths(samples, n),
            **({"slow_endpoint_got": slow_got} if slow else {})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--orders", type=int, default=1000, help="distinct order keys")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="a slow and a dead endpoint beside")
    parser.add_argument("--slow-seconds", type=float, default=1.0)
    parser.add_argument("--fanned", action="store_true",
                        help="the events are the endpoint's pending messages before the clock")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--ceiling-threads", type=int, default=1)
    args = parser.parse_args(argv)
    queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(queue, args.slow_seconds), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{queue.get(timeout=10)}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    kind = "postgresql" if args.pg_url else "sqlite"
    rounds = []
    try:
        for r in range(args.rounds):
            url = fresh_database(kind, f"outbound{r}", workdir, args.pg_url or "")
            upgrade(url)
            plain = ceiling(base, min(args.events, 2000), args.ceiling_threads)
            result = one_round(url, base, args.events, args.orders, args.slow, args.fanned)
            result["ceiling_per_s"] = round(plain, 1)
            log(json.dumps(result))
            rounds.append(result)
    finally:
        server.terminate()
    report = {"machine": machine(), "db": kind, "slow": args.slow, "fanned": args.fanned,
              "median_events_per_s": statistics.median(r["events_per_s"] for r in rounds),
              "median_ceiling_per_s": statistics.median(r["ceiling_per_s"] for r in rounds),
              "rounds": rounds}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
