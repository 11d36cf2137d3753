"""Real processes on loopback for the reliability tests and ``bench/chaos.py``: gunicorn (the
production web server, several workers), ``orderhooks worker`` processes and the BigCommerce
stand-in, each on a free port of 127.0.0.1, with their logs in files.

Every wait here is bounded in time, and :class:`Stack` stops (then kills) everything it started.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "reliability-admin-token"
SECRET_KEY = "FFs5Qg11-F2repoJlnpVdrpReWh-96reeVAGnD_JDlg="  # a fixed Fernet key, tests only
PUBLIC_BASE_URL = "https://orderhooks.example.com"
SECRET_HEADER = "X-Orderhooks-Secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 — e.g. connection refused while starting
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


def _die_with_parent() -> None:
    """In the child, before exec: a SIGTERM when the test process dies. A test run that is
    killed (no teardown) must not leave a worker claiming deliveries in the shared test
    database, where the next run's tests would find them taken."""
    if sys.platform.startswith("linux"):
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child process with its stderr+stdout in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_dir: Path):
        self.name, self.cmd, self.env = name, cmd, env
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15.0) -> int | None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode

    def kill_group(self) -> None:
        """SIGKILL the process and anything it started (its own session)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_lines(self) -> list[str]:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace").splitlines()

    def json_logs(self) -> list[dict]:
        out = []
        for line in self.log_lines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


def children(pid: int) -> list[int]:
    """Live child pids of ``pid`` (gunicorn's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


class Stack:
    """gunicorn + workers + stand-in on loopback, sharing one database and metrics directory."""

    def __init__(self, database_url: str, log_dir: Path | None = None, *, env: dict | None = None):
        self.database_url = database_url
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="orderhooks-live-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_dir = self.log_dir / "metrics"
        self.metrics_dir.mkdir(exist_ok=True)
        self.procs: list[Proc] = []
        self.web: Proc | None = None
        self.workers: list[Proc] = []
        self.senders: list[Proc] = []
        self._sender_seq = 0
        self.standin: Proc | None = None
        self.web_url = self.standin_url = ""
        self._worker_seq = 0
        # Not inherited: our settings, and FLASK_RUN_FROM_CLI (flask's CLI, e.g. a CliRunner test,
        # leaves it set; it makes the stand-in's app.run() a no-op).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("ORDERHOOKS_") and k != "FLASK_RUN_FROM_CLI"}
        self.env.update({
            "ORDERHOOKS_DATABASE_URL": database_url,
            "ORDERHOOKS_ADMIN_TOKEN": ADMIN_TOKEN,
            "ORDERHOOKS_SECRET_KEY": SECRET_KEY,
            "ORDERHOOKS_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            # The stand-in's free port on loopback: the operator's allowance for it.
            "ORDERHOOKS_ALLOWED_API_BASE_URLS": "http://127.0.0.1:*",
            "ORDERHOOKS_WORKER_IDLE_SECONDS": "0.1",
            "ORDERHOOKS_CLAIM_SECONDS": "5",
            "ORDERHOOKS_RETRY_BASE_SECONDS": "1",
            "ORDERHOOKS_LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
            # Keep every outgoing call on loopback: anything else goes to a dead local proxy.
            "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        self.env.update(env or {})

    # -- processes ----------------------------------------------------------------------------

    def _start(self, name, cmd, env=None) -> Proc:
        proc = Proc(name, cmd, env or self.env, self.log_dir)
        self.procs.append(proc)
        return proc

    def start_standin(self, default_status: int | None = 5) -> str:
        port = free_port()
        cmd = [sys.executable, "-m", "tests.reliability.standin_server", "--port", str(port)]
        if default_status is not None:
            cmd += ["--default-status", str(default_status)]
        self.standin = self._start("standin", cmd)
        self.standin_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{self.standin_url}/_stats", timeout=2).ok, 30,
                 what="the stand-in")
        return self.standin_url

    def start_web(self, workers: int = 3, args: tuple = (), bind: str = "127.0.0.1:0") -> str:
        """Start gunicorn and wait until it is ready: bound (on a port of its own choosing, read
        from its log, so no other process can take the port in between) and every worker
        process loaded. The wait follows gunicorn's own lines and ends when it exits; its bound
        (``BOOT_LIMIT``) is only a backstop, far above any boot seen."""
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "core" / "gunicorn_conf.py"),
               "--bind", bind, "--workers", str(workers), *args, "core:create_app()"]
        self.web = self._start("web", cmd)
        listening = self._wait_log(self.web, "Listening at: ", lambda found: found >= 1)
        self.web_url = listening[-1].split("Listening at: ", 1)[1].split()[0]
        self._wait_log(self.web, "web.worker_ready", lambda found: found >= workers)
        wait_for(lambda: requests.get(f"{self.web_url}/healthz", timeout=10).ok, 30,
                 what="gunicorn's /healthz")
        return self.web_url

    BOOT_LIMIT = 600.0

    def _wait_log(self, proc: Proc, marker: str, enough) -> list[str]:
        deadline = time.monotonic() + self.BOOT_LIMIT
        while True:
            messages = []
            for entry in proc.json_logs():
                message = str(entry.get("message", entry.get("event", "")))
                if marker in message:
                    messages.append(message)
            if enough(len(messages)):
                return messages
            if not proc.alive() or time.monotonic() > deadline:
                tail = "\n".join(proc.log_lines()[-20:])
                raise RuntimeError(f"{proc.name} exited or did not log {marker!r} "
                                   f"({len(messages)} seen); its log ends:\n{tail}")
            time.sleep(0.1)

    def web_workers(self) -> list[int]:
        return children(self.web.pid) if self.web and self.web.alive() else []

    def start_worker(self, sender: bool = True, standby: bool = False) -> Proc:
        """Start ``orderhooks worker`` (with ``--no-sender`` unless ``sender``) and wait until
        its loop runs: a worker checks the database once at start and exits when it cannot
        reach it, so a test that takes the database away must not do so before the worker is
        up."""
        self._worker_seq += 1
        cmd = ([sys.executable, "-m", "core.cli", "worker"] + ([] if sender else ["--no-sender"])
               + (["--standby"] if standby else []))
        proc = self._start(f"worker-{self._worker_seq}", cmd)
        self.workers.append(proc)
        self._wait_log(proc, "worker.started", lambda found: found >= 1)
        return proc

    def start_sender(self) -> Proc:
        """Start ``orderhooks sender`` and wait until its loop runs."""
        self._sender_seq += 1
        proc = self._start(f"sender-{self._sender_seq}",
                           [sys.executable, "-m", "core.cli", "sender"])
        self.senders.append(proc)
        self._wait_log(proc, "sender.started", lambda found: found >= 1)
        return proc

    def start_background(self, worker_processes: int = 0, sender_process: str = "") -> list:
        """Start the processes ``orderhooks serve`` starts beside the web, as it lays them out
        (``core.cli.background_processes``; the two settings as their variables take them)."""
        from core.cli import background_processes
        separate = "" if sender_process == "" else sender_process.lower() in ("1", "true", "yes", "on")
        plan = background_processes({"DATABASE_URL": self.database_url,
                                     "WORKER_PROCESSES": worker_processes,
                                     "SENDER_PROCESS": separate})
        return [self.start_sender() if name == "sender" else
                self.start_worker(sender="--no-sender" not in cmd, standby="--standby" in cmd)
                for name, cmd in plan]

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive():
                try:
                    proc.stop(timeout=20)
                except Exception:  # noqa: BLE001
                    proc.kill_group()
            else:
                proc.kill_group()  # a dead gunicorn master's orphans, if any
                if not proc._log.closed:
                    proc._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------

    def admin(self, method: str, path: str, expect: int | tuple | None = None, **kwargs):
        response = requests.request(method, f"{self.web_url}/api/v1{path}", timeout=30,
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)
        if expect is not None:
            expected = expect if isinstance(expect, tuple) else (expect,)
            assert response.status_code in expected, (response.status_code, response.text)
        return response

    def create_channel(self, store: str, cancel=("AWAITING_SHIPMENT",),
                       fulfill=("AWAITING_SHIPMENT",)) -> dict:
        channel = self.admin("POST", "/channels", 201, json={
            "type": "bigcommerce", "name": f"store {store}",
            "credentials": {"store_hash": store, "access_token": "t",
                            "api_base_url": self.standin_url},
            "valid_cancellation_statuses": list(cancel),
            "valid_fulfillment_statuses": list(fulfill)}).json()
        hooks = requests.get(f"{self.standin_url}/stores/{store}/v3/hooks", timeout=10).json()
        mine = [h for h in hooks["data"] if h["destination"] == channel["webhook_url"]]
        assert mine, f"no hook created on the stand-in for {store}: {hooks}"
        channel["secret"] = mine[-1]["headers"][SECRET_HEADER]
        channel["store"] = store
        return channel

    def start_outbound(self, store: str, url: str) -> tuple[dict, dict]:
        """The stand-in, one web process, a channel for ``store`` and an outbound webhook
        endpoint at ``url``: (channel, endpoint as created, its secret included)."""
        self.start_standin(default_status=5)
        self.start_web(workers=1)
        channel = self.create_channel(store)
        return channel, self.admin("POST", "/webhook-endpoints", 201, json={"url": url}).json()

    def create_order(self, channel_id: int, order_id, status="AWAITING_SHIPMENT") -> dict:
        return self.admin("POST", "/orders", 201, json={
            "channel_id": channel_id, "channel_order_id": str(order_id),
            "status": status}).json()

    def control(self, path: str, payload: dict):
        return requests.post(f"{self.standin_url}{path}", json=payload, timeout=10).json()

    def post_delivery(self, channel: dict, body: bytes, timeout: float = 30.0, session=None):
        return (session or requests).post(
            f"{self.web_url}/webhooks/bigcommerce/{channel['id']}", data=body, timeout=timeout,
            headers={"Content-Type": "application/json", SECRET_HEADER: channel["secret"]})

    def metrics(self) -> str:
        return requests.get(f"{self.web_url}/metrics", timeout=10).text


def delivery_body(store: str, order_id, *, status: int = 5, salt: str = "") -> tuple[bytes, str]:
    """A BigCommerce ``store/order/statusUpdated`` delivery; returns (body, dedupe key)."""
    payload = {"scope": "store/order/statusUpdated", "store_id": "1025646",
               "data": {"type": "order", "id": int(order_id),
                        "status": {"previous_status_id": 11, "new_status_id": status}},
               "created_at": int(time.time()), "producer": f"stores/{store}"}
    digest = hashlib.sha1(f"{store}:{order_id}:{status}:{salt}".encode()).hexdigest()
    payload["hash"] = digest
    return json.dumps(payload).encode(), f"store/order/statusUpdated:{digest}"


def metric_sum(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` in a Prometheus text exposition whose labels include
    ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def db_engine(url: str):
    from sqlalchemy import create_engine
    return create_engine(url)


def scalar(engine, sql: str, **params):
    from sqlalchemy import text
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(engine, sql: str, **params) -> list:
    from sqlalchemy import text
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def wait_processed(engine, expected: int, timeout: float) -> int:
    """Wait until ``expected`` deliveries are done; returns how many are."""
    try:
        wait_for(lambda: scalar(engine, "SELECT count(*) FROM deliveries WHERE state = 'done'")
                 >= expected, timeout, interval=0.25, what=f"{expected} processed deliveries")
    except TimeoutError:
        pass
    return scalar(engine, "SELECT count(*) FROM deliveries WHERE state = 'done'")


def processed_log_counts(stack: Stack) -> dict[int, list[str]]:
    """delivery id -> names of the worker processes that logged ``worker.processed`` for it."""
    seen: dict[int, list[str]] = {}
    for proc in stack.workers:
        for entry in proc.json_logs():
            if entry.get("event") == "worker.processed":
                seen.setdefault(int(entry["delivery_id"]), []).append(proc.name)
    return seen


class SlowClients:
    """``count`` connections that send a request head one byte every ``interval`` seconds (a
    slow-loris attack), until :meth:`close`; a connection the server closes is opened again, so
    ``count`` stay open. One thread drives them all; its loop is bounded by ``max_seconds``."""

    HEAD = (b"POST /webhooks/bigcommerce/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nX-Padding: " + b"x" * 4000)

    def __init__(self, host: str, port: int, count: int, interval: float = 3.0,
                 max_seconds: float = 120.0):
        self.address = (host, port)
        self.sockets: list[socket.socket] = []
        self.refused = 0
        for _ in range(count):
            self._connect()
        self.interval, self.deadline = interval, time.monotonic() + max_seconds
        self.sent = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        # open() must not count while a socket the server closed is being replaced.
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        position = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            byte = self.HEAD[position % len(self.HEAD):position % len(self.HEAD) + 1]
            for sock in list(self.sockets):
                try:
                    sock.send(byte)
                    self.sent += 1
                except OSError:
                    with self._lock:
                        self.sockets.remove(sock)
                        sock.close()
                        self.closed_by_server += 1
                        self._connect()
            position += 1
            self._stop.wait(self.interval)

    def _connect(self) -> None:
        try:
            self.sockets.append(socket.create_connection(self.address, timeout=5))
        except OSError:
            self.refused += 1

    def open(self) -> int:
        with self._lock:
            return len(self.sockets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


NGINX_CONF = ROOT / "deploy" / "nginx" / "orderhooks.conf"


class Nginx:
    """Debian's nginx running ``deploy/nginx/orderhooks.conf`` in front of ``upstream`` (HOST:PORT),
    in a directory of its own; only the file's two addresses are rewritten."""

    def __init__(self, upstream: str, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = NGINX_CONF.read_text()
        assert "server 127.0.0.1:8000 " in site and "listen 80;" in site
        site = site.replace("server 127.0.0.1:8000 ", f"server {upstream} ")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        (self.dir / "orderhooks.conf").write_text(site)
        temp = "\n".join(f"  {kind}_temp_path {self.dir / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.getuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.dir / 'error.log'} warn;\ndaemon off;\n"
            "events { worker_connections 2048; }\n"
            f"http {{\n  access_log off;\n{temp}\n  include {self.dir / 'orderhooks.conf'};\n}}\n")
        self.log = open(self.dir / "nginx.out", "ab")
        self.popen = subprocess.Popen(
            [nginx_binary(), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
             "-e", str(self.dir / "error.log")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.popen.poll() is None and _connects(self.port), 30, what="nginx")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self.log.close()


def _connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def nginx_binary() -> str | None:
    import shutil
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def install_nginx() -> str | None:
    """nginx's path, installed by scripts/install-nginx if missing; None when it cannot be."""
    if nginx_binary() is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-nginx")], check=False,
                       timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return nginx_binary()


def timed_deliveries(stack: "Stack", channel: dict, base_url: str, seconds: float,
                     gap: float = 0.25, timeout: float = 10.0) -> list[tuple[float, object]]:
    """Genuine deliveries, one after another for ``seconds``: (seconds to answer, status code or
    the error's name) each."""
    results = []
    end, n = time.monotonic() + seconds, 0
    salt = str(time.monotonic_ns())
    while time.monotonic() < end:
        body, _key = delivery_body(channel["store"], n, salt=salt)
        n += 1
        started = time.monotonic()
        try:
            answer = requests.post(
                f"{base_url}/webhooks/bigcommerce/{channel['id']}", data=body, timeout=timeout,
                headers={"Content-Type": "application/json", SECRET_HEADER: channel["secret"]})
            outcome = answer.status_code
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        results.append((time.monotonic() - started, outcome))
        time.sleep(gap)
    return results


def assert_answered_under_slow_clients(stack: "Stack", channel: dict, base_url: str,
                                       sockets: int = 200, seconds: float = 12.0) -> None:
    """``sockets`` slow-loris connections on ``base_url`` for ``seconds`` (one header byte every
    2 s, re-opened when closed), while genuine deliveries go one after another: every delivery
    answered 200 within 1 s, all through the attack, with every slow socket still open."""
    port = int(base_url.rsplit(":", 1)[1])
    slow = SlowClients("127.0.0.1", port, sockets, interval=2.0, max_seconds=seconds + 60)
    try:
        results = timed_deliveries(stack, channel, base_url, seconds)
        still_open = slow.open()
    finally:
        slow.close()
    assert still_open == sockets and slow.refused == 0, (still_open, slow.refused)
    assert {outcome for _, outcome in results} == {200}, results
    assert max(answered for answered, _ in results) < 1.0, results
    assert len(results) >= seconds  # deliveries went on through the whole attack
