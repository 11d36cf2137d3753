"""Database faults: PostgreSQL stopped and restarted during intake. Requests
answer 503 while it is down (never 2xx), and the same running service — gunicorn and the worker,
not restarted — recovers by itself afterwards.

The test stops a throwaway PostgreSQL cluster of its own (initdb into a temporary directory, on a
free port of 127.0.0.1), never the shared server other tests use; it is always stopped and
removed afterwards."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from core.db import Database

from .conftest import postgres_only
from .live import Stack, db_engine, delivery_body, free_port, scalar, wait_for


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="orderhooks-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(_pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd, check=True, timeout=60):
        if self.as_postgres:
            cmd = ("runuser", "-u", "postgres", "--") + cmd
        return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True)

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                  "-t", "30", "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 "
                                    f"-k {self.dir} -c fsync=off", "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "30", "stop",
                  check=False)

    def ready(self) -> bool:
        return self._run(_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                         check=False, timeout=10).returncode == 0

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(self.ready, timeout, interval=0.2, what="pg_isready")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    if not _pg_bin("initdb") or not _pg_bin("pg_ctl"):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.destroy()  # always: stop it and remove its files


@postgres_only("it stops and restarts a PostgreSQL server (a throwaway cluster of its "
               "own)")
def _delivery_breakdown(engine) -> str:
    """Where the deliveries stand, grouped, for a failure message."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT state, outcome, attempts, left(coalesce(reason, ''), 120), count(*), "
            "min(next_attempt_at), max(next_attempt_at), now() AT TIME ZONE 'utc' "
            "FROM deliveries GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC").all()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows)


def test_postgresql_restart_during_intake_503_then_recovers_without_restart(cluster, tmp_path):
    db = Database(cluster.url)
    db.upgrade()
    db.dispose()
    with Stack(cluster.url, tmp_path / "live", env={"ORDERHOOKS_CLAIM_SECONDS": "5"}) as stack:
        stack.start_standin(default_status=5)
        stack.start_web(workers=2)
        channel = stack.create_channel("dbfault")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: stack.create_order(channel["id"], n), range(250)))
        worker = stack.start_worker()
        web_pid, web_children = stack.web.pid, set(stack.web_workers())

        log: list[tuple[int, float, float, object]] = []  # (order, start, end, status)
        stop_sending = threading.Event()

        def sender():
            session, n = requests.Session(), 0
            while not stop_sending.is_set() and n < 250:
                body = delivery_body("dbfault", n)[0]
                start = time.monotonic()
                try:
                    response = stack.post_delivery(channel, body, timeout=15, session=session)
                    status = response.status_code
                    if status == 503:
                        assert response.headers.get("Retry-After")
                        assert response.json()["error"] == "database_unavailable"
                        text = response.text.lower()
                        assert "traceback" not in text and "select" not in text
                except requests.RequestException as exc:
                    status, session = type(exc).__name__, requests.Session()
                log.append((n, start, time.monotonic(), status))
                n += 1
                time.sleep(0.02)

        t0 = time.monotonic()
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        try:
            time.sleep(1.5)
            stop_called = time.monotonic()
            cluster.stop("fast")
            stopped = time.monotonic()
            time.sleep(3.0)  # intake goes on while the database is down
            readyz = requests.get(f"{stack.web_url}/readyz", timeout=10)
            admin = stack.admin("GET", "/deliveries")
            start_called = time.monotonic()
        finally:
            cluster.start()  # always restart (and wait for pg_isready)
        restarted = time.monotonic()
        try:
            wait_for(lambda: log and log[-1][1] > restarted and log[-1][3] == 200, 30,
                     what="2xx again after the restart")
            time.sleep(2.0)
        finally:
            stop_sending.set()
            thread.join(timeout=30)

        assert readyz.status_code == 503 and readyz.json()["database"] == "unreachable"
        assert admin.status_code == 503, admin.text
        down = [e for e in log if e[1] >= stopped and e[2] <= start_called]
        assert down, "no request was sent while the database was down"
        assert {e[3] for e in down} == {503}, {e[3] for e in down}  # never 2xx, never 500
        assert all(e[3] in (200, 503) for e in log), {e[3] for e in log}
        after = [e for e in log if e[1] > restarted]
        assert after and all(e[3] == 200 for e in after), after[:5]  # recovered at once

        # The channel re-sends what was refused; everything acknowledged is stored and applied.
        refused = sorted({e[0] for e in log if e[3] != 200})
        for n in refused:
            answer = stack.post_delivery(channel, delivery_body("dbfault", n)[0])
            assert answer.status_code == 200, answer.text
        sent = {e[0] for e in log}
        engine = db_engine(cluster.url)
        try:
            assert scalar(engine, "SELECT count(*) FROM deliveries") == len(sent)
            try:
                wait_for(lambda: scalar(engine, "SELECT count(*) FROM deliveries WHERE outcome = "
                                                "'applied'") == len(sent), 60,
                         what="every delivery applied")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{_delivery_breakdown(engine)}\nworker log ends:\n"
                                     + "\n".join(worker.log_lines()[-40:])) from None
            assert scalar(engine, "SELECT count(*) FROM order_changes WHERE event = "
                                  "'cancelled'") == len(sent)
        finally:
            engine.dispose()
        print(f"\n(settled in {time.monotonic() - t0:.1f}s)")
        print(f"\ndatabase restart: {len(log)} requests, {len(down)} while down (all 503), "
              f"{len(refused)} re-sent, {len(sent)} stored and applied once; stop took "
              f"{stopped - stop_called:.1f}s, restart {restarted - start_called:.1f}s")
        # the same processes recovered: nothing was restarted
        assert stack.web.alive() and stack.web.pid == web_pid
        assert worker.alive() and len(stack.workers) == 1
        assert set(stack.web_workers()) == web_children
