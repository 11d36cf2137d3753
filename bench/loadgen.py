"""Load generators: wrk (Debian's, with a Lua script for distinct requests) at fixed concurrency
for a fixed time, a Python closed-loop fallback with the same shape (threads + http.client
keep-alive, in two processes), and a Python open-loop generator at a fixed rate (wrk2 is not in
Debian) whose latencies are measured from each request's *scheduled* time, so a slow server is
not hidden by the generator waiting for it (no coordinated omission).

Every generator returns the same dict: requests, seconds, rps, p50_ms, p90_ms, p99_ms, max_ms,
errors (non-2xx + socket errors), error_detail, generator.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import shutil
import subprocess
import tempfile
import threading
import time
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
    return _run_procs(_closed_proc, host, port, tpl, connections, seconds, processes, run_id,
                      f"python closed-loop c={connections} d={int(seconds)}s ({processes} procs)")


def _open_proc(host, port, tpl, threads, seconds, run_id, proc_index, out, rate):
    """Requests at a fixed rate: request k is due at start + k/rate, whoever sends it; latency is
    measured from that due time."""
    latencies, statuses, errors = [], {}, [0]
    lock = threading.Lock()
    counter = iter(range(10**12))
    start = time.monotonic() + 0.2
    total = int(rate * seconds)

    def loop(t):
        holder, mine = [None], []
        while True:
            with lock:
                k = next(counter)
            if k >= total:
                break
            due = start + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                status = _send(holder, host, port, tpl, f"{run_id}p{proc_index}k{k}")
            except Exception:  # noqa: BLE001
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.monotonic() - due)
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


def python_open(url: str, tpl: Template, *, rate: float, seconds: float, threads: int = 32,
                processes: int = 2, run_id: str = "o") -> dict:
    host, port = _hostport(url)
    per_proc = rate / processes
    result = _run_procs(_open_proc, host, port, tpl, threads // processes, seconds, processes,
                        run_id, f"python open-loop {rate:.0f} req/s for {int(seconds)}s "
                                f"({processes} procs x {threads // processes} threads)",
                        extra=(per_proc,))
    result["target_rps"] = round(rate, 1)
    return result


def _run_procs(target, host, port, tpl, connections, seconds, processes, run_id, label,
               extra=()):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = max(1, connections // processes) if target is _closed_proc else connections
    procs = [ctx.Process(target=target, args=(host, port, tpl, per, seconds, run_id, i, out)
                         + tuple(extra)) for i in range(processes)]
    started = time.monotonic()
    for p in procs:
        p.start()
    parts = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    elapsed = seconds  # closed loop: every thread stops at start + seconds
    if target is _open_proc:  # the schedule spans ``seconds``; a late server stretches it
        elapsed = max(time.monotonic() - started - 0.2, seconds)
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
