"""Load generators: wrk (Debian's, with a Lua script for distinct requests) at fixed concurrency
for a fixed time, a Python closed-loop fallback with the same shape (threads + http.client
keep-alive, in two processes), and a Python open-loop generator at a fixed rate (wrk2 is not in
Debian) whose latencies are measured from each request's *scheduled* time, so a slow server is
not hidden by the generator waiting for it (no coordinated omission).

Every generator returns the same dict: requests, seconds, rps, p50_ms, p90_ms, p99_ms, max_ms,
errors (non-2xx + socket errors), error_detail, generator.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing as mp
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from .targets import MARK, Template

LUA = r"""
local counter = 0
local threads = {}
local path = [====[__PATH__]====]
local body_t = [====[__BODY__]====]
local headers = __HEADERS__
local run = "__RUN__"
local needs = __NEEDS__

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function request()
  counter = counter + 1
  if not needs then
    return wrk.format("POST", path, headers, body_t)
  end
  local n = run .. "t" .. tid .. "c" .. counter
  local h = {}
  for k, v in pairs(headers) do h[k] = (v:gsub("@N@", n)) end
  return wrk.format("POST", path, h, (body_t:gsub("@N@", n)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string_table(headers: dict[str, str]) -> str:
    items = ", ".join(f'["{k}"] = [====[{v}]====]' for k, v in headers.items())
    return "{" + items + "}"


def wrk(url: str, tpl: Template, *, connections: int, seconds: float, threads: int = 2,
        run_id: str = "r") -> dict:
    needs = MARK in tpl.body or any(MARK in v for v in tpl.headers.values())
    script = (LUA.replace("__PATH__", tpl.path).replace("__HEADERS__",
                                                          _lua_string_table(tpl.headers))
              .replace("__RUN__", run_id).replace("__NEEDS__", "true" if needs else "false")
              .replace("__BODY__", tpl.body))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s",
           "--timeout", "10s", "-s", fh.name, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    Path(fh.name).unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.split(" ", 1)[1])
    secs = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {"generator": f"wrk -t{threads} -c{connections} -d{int(seconds)}s",
            "requests": raw["requests"], "seconds": round(secs, 2),
            "rps": round(raw["requests"] / secs, 1),
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
            "errors": raw["status"] + socket_errors,
            "error_detail": {k: raw[k] for k in ("status", "connect", "read", "write", "timeout")},
            "output_tail": proc.stdout.strip().splitlines()[-6:]}


# -- Python generators ----------------------------------------------------------------------

def _send(conn_holder: list, host: str, port: int, tpl: Template, unique: str):
    """One POST; reconnects when the server closed the connection (gunicorn sync workers do)."""
    path, headers, body = tpl.render(unique)
    for attempt in (0, 1):
        conn = conn_holder[0]
        if conn is None:
            conn = conn_holder[0] = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conn.close()
                conn_holder[0] = None
            return response.status
        except (ConnectionError, http.client.HTTPException, OSError):
            conn.close()
            conn_holder[0] = None
            if attempt:
                raise
    return None


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def _summary(latencies: list[float], statuses: dict, socket_errors: int, seconds: float,
             generator: str) -> dict:
    latencies.sort()
    non2xx = sum(n for s, n in statuses.items() if not (200 <= int(s) < 400))
    total = len(latencies)
    return {"generator": generator, "requests": total, "seconds": round(seconds, 2),
            "rps": round(total / seconds, 1) if seconds else 0.0,
            "p50_ms": round(_percentile(latencies, 50) * 1000, 3),
            "p90_ms": round(_percentile(latencies, 90) * 1000, 3),
            "p99_ms": round(_percentile(latencies, 99) * 1000, 3),
            "max_ms": round(latencies[-1] * 1000, 3) if latencies else 0.0,
            "errors": non2xx + socket_errors,
            "error_detail": {"status": non2xx, "socket": socket_errors,
                             "statuses": {str(k): v for k, v in statuses.items()}}}


def _closed_proc(host, port, tpl, threads, seconds, run_id, proc_index, out):
    latencies, statuses, errors = [], {}, [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(t):
        holder, n, mine = [None], 0, []
        while time.monotonic() < stop_at:
            n += 1
            started = time.monotonic()
            try:
                status = _send(holder, host, port, tpl, f"{run_id}p{proc_index}t{t}c{n}")
            except Exception:  # noqa: BLE001
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.monotonic() - started)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((latencies, statuses, errors[0]))


def python_closed(url: str, tpl: Template, *, connections: int, seconds: float,
                  processes: int = 2, run_id: str = "r") -> dict:
    """Closed loop: ``connections`` threads over ``processes`` processes, each sending the next
    request as soon as the previous one is answered, for ``seconds``."""
    host, port = _hostport(url)
    return _run_procs(host, port, tpl, connections, seconds, processes, run_id,
                      f"python closed-loop c={connections} d={int(seconds)}s ({processes} procs)")


class _OpenLoop:
    """The open-loop generator's event loop: request k is due at start + k/rate and goes out on
    an idle keep-alive connection at that moment (a new connection is opened when none is idle,
    up to ``max_connections``; past that, due requests wait in order for the next free one).
    Latency counts from the due time, so time spent waiting for a connection or in the server's
    queue is latency. One asyncio loop over raw sockets with the requests rendered beforehand,
    so that the generator's own CPU per request stays far below the server's: a generator that
    competes with the server for the machine's cores measures its own saturation, not the
    server's tail (docs/performance.md)."""

    def __init__(self, host: str, port: int, requests: list[bytes], rate: float,
                 max_connections: int, warm_connections: int, on_answer=None):
        self.host, self.port, self.requests, self.rate = host, port, requests, rate
        self.max_connections, self.warm = max_connections, warm_connections
        #: Called as ``on_answer(index, status, at)`` for each answer (``at``: the loop's
        #: clock, time.monotonic), for a caller that follows each request further.
        self.on_answer = on_answer
        self._index: dict[float, int] = {}
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.idle: deque = deque()
        self.waiting: deque = deque()  # (due, request) with no connection free yet
        self.open = self.peak = 0
        self.done = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.finished = loop.create_future()
        for _ in range(self.warm):
            self.open += 1
            conn = await self._connect()
            if conn is not None:
                self.idle.append(conn)
        start = loop.time() + 0.1
        total = len(self.requests)
        k = 0
        while k < total:
            now = loop.time()
            while k < total and (due := start + k / self.rate) <= now:
                if self.on_answer is not None:
                    self._index[due] = k  # dues are distinct: one per request
                self._dispatch(due, self.requests[k])
                k += 1
            if k < total:
                await asyncio.sleep(max(0.0, start + k / self.rate - loop.time()))
        if self.done < total:
            try:
                await asyncio.wait_for(self.finished, timeout=60)
            except asyncio.TimeoutError:  # never answered: errors
                self.errors += total - self.done
        for conn in list(self.idle):
            conn.transport.close()

    async def _connect(self):
        """A new connection (``self.open`` already counts it), or None."""
        self.peak = max(self.peak, self.open)
        try:
            _transport, conn = await self.loop.create_connection(
                lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.open -= 1
            return None
        return conn

    def _dispatch(self, due: float, request: bytes) -> None:
        while self.idle:
            conn = self.idle.popleft()
            if not conn.closed:
                conn.send(due, request)
                return
        self.waiting.append((due, request))
        self._grow()

    def _grow(self) -> None:
        """One more connection for the waiting requests, unless ``max_connections`` are open
        or being opened."""
        if self.open < self.max_connections:
            self.open += 1
            self.loop.create_task(self._connect_and_serve())

    async def _connect_and_serve(self) -> None:
        conn = await self._connect()
        if conn is None:
            if self.waiting:  # nothing to send them on: count them as errors
                self.waiting.popleft()
                self._finish(None)
            return
        self._ready(conn)

    def _ready(self, conn) -> None:
        """``conn`` is free: it takes the oldest waiting request, or goes idle."""
        if self.waiting:
            due, request = self.waiting.popleft()
            conn.send(due, request)
        else:
            self.idle.append(conn)

    def _finish(self, status: int | None, due: float | None = None) -> None:
        if status is None:
            self.errors += 1
        else:
            now = self.loop.time()
            self.latencies.append(now - due)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if self.on_answer is not None:
                self.on_answer(self._index[due], status, now)
        self.done += 1
        if self.done >= len(self.requests) and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, conn) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if self.waiting:
            self._grow()


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: sends a rendered request, reads one response
    (Content-Length or chunked), hands itself back to the loop."""

    def __init__(self, gen: _OpenLoop):
        self.gen = gen
        self.buf = bytearray()
        self.due = None
        self.closed = False
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, due: float, request: bytes) -> None:
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.due is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            try:
                status = int(head[9:12])
            except ValueError:
                status = 0
            body_at = end + 4
            length = _header(head, b"content-length")
            if length is not None:
                stop = body_at + int(length)
            elif b"chunked" in (_header(head, b"transfer-encoding") or b""):
                tail = self.buf.find(b"0\r\n\r\n", body_at)
                if tail < 0:
                    return
                stop = tail + 5
            else:
                stop = body_at
            if len(self.buf) < stop:
                return
            del self.buf[:stop]
            due, self.due = self.due, None
            self.gen._finish(status, due)
            if _header(head, b"connection") == b"close":
                self.transport.close()
                return
            self.gen._ready(self)

    def connection_lost(self, _exc) -> None:
        self.closed = True
        if self.due is not None:
            self.due = None
            self.gen._finish(None)
        self.gen.lost(self)


def _header(head: bytes, name: bytes) -> bytes | None:
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    stop = head.find(b"\r\n", start)
    return head[start:stop if stop >= 0 else len(head)].strip()


def _raw_request(host: str, port: int, tpl: Template, unique: str) -> bytes:
    return raw_post(host, port, *tpl.render(unique))


def raw_post(host: str, port: int, path: str, headers: dict, body: bytes) -> bytes:
    """An HTTP/1.1 POST as bytes on the wire, for the open loop."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def open_loop(url: str, requests: list[bytes], *, rate: float, on_answer,
              max_connections: int = 256, warm_connections: int = 16) -> dict:
    """The open loop over requests rendered by the caller (:func:`raw_post`), request k due at
    start + k/rate; ``on_answer(k, status, at)`` hears each answer as it comes."""
    host, port = _hostport(url)
    gen = _OpenLoop(host, port, requests, rate, max_connections, warm_connections,
                    on_answer=on_answer)
    asyncio.run(gen.run())
    return {"errors": gen.errors, "statuses": dict(gen.statuses),
            "connections_peak": gen.peak}


def python_open(url: str, tpl: Template, *, rate: float, seconds: float,
                max_connections: int = 256, warm_connections: int = 16,
                run_id: str = "o") -> dict:
    """Requests at ``rate`` per second for ``seconds`` from one asyncio loop in this process
    (rendered before the clock starts), latencies from each request's scheduled time."""
    host, port = _hostport(url)
    total = int(rate * seconds)
    requests = [_raw_request(host, port, tpl, f"{run_id}o{k}") for k in range(total)]
    gen = _OpenLoop(host, port, requests, rate, max_connections, warm_connections)
    started = time.monotonic()
    asyncio.run(gen.run())
    elapsed = max(time.monotonic() - started - 0.1, seconds)  # a late server stretches it
    result = _summary(gen.latencies, gen.statuses, gen.errors, elapsed,
                      f"python open-loop (asyncio) {rate:.0f} req/s for {int(seconds)}s, "
                      f"up to {max_connections} connections")
    result["target_rps"] = round(rate, 1)
    result["connections_peak"] = gen.peak
    return result


def _run_procs(host, port, tpl, connections, seconds, processes, run_id, label):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = max(1, connections // processes)
    procs = [ctx.Process(target=_closed_proc, args=(host, port, tpl, per, seconds, run_id, i, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    parts = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    elapsed = seconds  # closed loop: every thread stops at start + seconds
    latencies, statuses, errors = [], {}, 0
    for lat, st, err in parts:
        latencies.extend(lat)
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
        errors += err
    return _summary(latencies, statuses, errors, elapsed, label)


def _hostport(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost"), "the benchmark only targets loopback"
    return host, int(port)
