"""Processes, ports, databases and the machine, for the benchmark; its progress log and the
median of repeated rounds."""
from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GUNICORN_CONF = ROOT / "core" / "gunicorn_conf.py"
PY = sys.executable  # the real interpreter (py-spy cannot follow pyenv shims)

ADMIN_TOKEN = "bench-admin-token"
SECRET_KEY = "IhDc0D2_do2FOlK7fTDXx1H2NKTnG-mHAXIYZeE5JKc="  # a fixed Fernet key, benchmark only
PUBLIC_BASE_URL = "https://bench.example.com"
#: The stand-ins run on loopback, on free ports: the operator's allowance for them.
ALLOWED_API_BASE_URLS = "http://127.0.0.1:*"


def log(message: str) -> None:
    """Progress on stderr, stamped: stdout carries the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median_round(results: list[dict], key: str = "rps") -> dict:
    """The round with the median ``key`` (the lower middle one of an even count), with every
    round's value beside it (``rounds_<key>``): one noisy round decides nothing."""
    chosen = dict(sorted(results, key=lambda x: x[key])[(len(results) - 1) // 2])
    if len(results) > 1:
        chosen[f"rounds_{key}"] = [x[key] for x in results]
    return chosen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Procs:
    """Every process the benchmark starts, stopped by pid (process group) at the end."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or dict(os.environ), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.bench_name = name
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        """SIGTERM to its process group (gunicorn's workers, a worker's children), SIGKILL
        after ``timeout`` s."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.started)):
            self.stop(proc)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def orderhooks_env(database_url: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({"ORDERHOOKS_DATABASE_URL": database_url, "ORDERHOOKS_ADMIN_TOKEN": ADMIN_TOKEN,
                "ORDERHOOKS_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
                "ORDERHOOKS_ALLOWED_API_BASE_URLS": ALLOWED_API_BASE_URLS,
                "ORDERHOOKS_SECRET_KEY": SECRET_KEY})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def gunicorn_cmd(app_spec: str, port: int, workers: int, threads: int,
                 worker_class: str | None = None) -> list[str]:
    """Every HTTP target runs under the same gunicorn settings: orderhooks' own config file
    (threaded workers), with ``worker_class`` only where a baseline is also measured under
    gunicorn's sync workers."""
    cmd = [PY, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers), "--threads", str(threads)]
    if worker_class:
        cmd += ["--worker-class", worker_class]
    return cmd + [app_spec]


def metrics_env(env: dict) -> dict:
    """What ``orderhooks web`` does: a shared Prometheus directory for the gunicorn workers."""
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orderhooks-bench-metrics-")
    return env


# -- databases --------------------------------------------------------------------------------

def sqlite_url(workdir: Path, name: str) -> str:
    path = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def pg_available(url: str) -> str | None:
    """None if the bench database can be used (created if missing), else why not."""
    import psycopg
    base = url.replace("postgresql+psycopg://", "postgresql://")
    dbname = base.rsplit("/", 1)[1]
    admin = base.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (dbname,)).fetchone():
                conn.execute(f'CREATE DATABASE "{dbname}"')
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def pg_reset(url: str) -> str:
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


def pg_settings(url: str) -> dict:
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_level")
        return {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in names}


def fresh_database(kind: str, name: str, workdir: Path, pg_url: str) -> str:
    if kind == "sqlite":
        return sqlite_url(workdir, name)
    return pg_reset(pg_url)


def upgrade(url: str) -> None:
    from core.db import Database
    db = Database(url)
    db.upgrade()
    db.dispose()


def count_rows(url: str, table: str) -> int:
    """Rows stored in ``table``: a run counts only what reached the database."""
    from .peek import Peek
    peek = Peek(url)
    try:
        return peek.one(f"SELECT count(*) FROM {table}")[0]
    finally:
        peek.close()


# -- the machine ----------------------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    from importlib.metadata import version
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "flask": version("flask"), "sqlalchemy": version("sqlalchemy"),
            "gunicorn": version("gunicorn"), "psycopg": version("psycopg"),
            "sqlite": __import__("sqlite3").sqlite_version}


# -- other load on the machine ------------------------------------------------------------------

def _cpu_seconds(processes) -> float:
    """CPU seconds of these psutil processes, each with the children it reaped."""
    import psutil
    total = 0.0
    for member in processes:
        try:
            c = member.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _mine_cpu() -> float:
    """CPU seconds used by this process and everything it started (live or reaped)."""
    import psutil
    me = psutil.Process()
    return _cpu_seconds([me, *me.children(recursive=True)])


def _busy_cpu() -> float:
    import psutil
    c = psutil.cpu_times()
    return sum(c) - c.idle - getattr(c, "iowait", 0.0)


class CpuMeter:
    """How much CPU the rest of the machine (other sessions, tests...) used while we measured:
    system busy time minus this benchmark's own process tree, in cores."""

    def __init__(self):
        self.t0, self.busy0, self.mine0 = time.monotonic(), _busy_cpu(), _mine_cpu()

    def read(self) -> dict:
        wall = time.monotonic() - self.t0
        busy, mine = _busy_cpu() - self.busy0, _mine_cpu() - self.mine0
        return {"busy_cores": round(busy / wall, 2), "bench_cores": round(mine / wall, 2),
                "foreign_cores": round(max(0.0, busy - mine) / wall, 2)}


def wait_quiet(max_wait: float, threshold: float = 0.2, sample: float = 2.0) -> dict:
    """Wait (up to ``max_wait`` s) until other processes use less than ``threshold`` cores."""
    started = time.monotonic()
    last = None
    while True:
        meter = CpuMeter()
        time.sleep(sample)
        last = meter.read()["foreign_cores"]
        waited = time.monotonic() - started
        if last < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "foreign_cores_before": last,
                    "quiet": last < threshold}


def tree_cpu(proc) -> float:
    """CPU seconds of a process and its descendants (live, plus the reaped ones it waited for)."""
    import psutil
    try:
        root = psutil.Process(proc.pid)
        return _cpu_seconds([root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0.0
