"""What a split production deployment relies on from the commands themselves: ``ORDERHOOKS_BIND``
reaches gunicorn, each gunicorn instance keeps a control socket of its own, ``serve`` refuses a
taken port before it starts anything, and a standalone worker serves its own metrics."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from core import cli
from core.testing import SECRET_KEY

from .live import (ROOT, Stack, db_engine, delivery_body, free_port, metric_sum, wait_for,
                   wait_processed)


@pytest.fixture
def exec_calls(monkeypatch, database_url):
    """``orderhooks web`` replaces itself with gunicorn: the command it would run, instead."""
    calls = []
    monkeypatch.setattr(cli.os, "execvpe", lambda path, argv, env: calls.append(argv))
    monkeypatch.setattr(cli.os, "chdir", lambda path: None)
    monkeypatch.setenv("ORDERHOOKS_DATABASE_URL", database_url)
    monkeypatch.setenv("ORDERHOOKS_SECRET_KEY", SECRET_KEY)  # a server database needs its own
    return calls


def _bind_of(argv: list[str]) -> str:
    return argv[argv.index("--bind") + 1]


def test_web_listens_where_orderhooks_bind_says_and_the_option_wins(exec_calls):
    runner = CliRunner()
    from_env, from_option = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    result = runner.invoke(cli.main, ["web"], env={"ORDERHOOKS_BIND": from_env})
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli.main, ["web", "--bind", from_option],
                           env={"ORDERHOOKS_BIND": from_env})
    assert result.exit_code == 0, result.output
    assert [_bind_of(argv) for argv in exec_calls] == [from_env, from_option]


def _control_socket(stack: Stack) -> Path:
    lines = [e.get("message", "") for e in stack.web.json_logs()]
    found = [m.split("Control socket listening at ", 1)[1] for m in lines
             if "Control socket listening at " in m]
    assert found, lines
    return Path(found[-1].strip())


def test_two_gunicorn_instances_keep_their_own_control_sockets(database_url, tmp_path):
    with Stack(database_url, tmp_path / "one") as one, Stack(database_url, tmp_path / "two") as two:
        one.start_web(workers=1)
        two.start_web(workers=1)
        first = wait_for(lambda: _control_socket(one), 30, what="the first control socket")
        second = wait_for(lambda: _control_socket(two), 30, what="the second control socket")
        assert first != second and first.exists() and second.exists()
        one.stop()
        assert not first.exists() and second.exists()  # stopping one leaves the other's


def test_serve_stops_with_one_line_when_its_port_is_taken(database_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(database_url, tmp_path / "live")
        done = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--bind",
                               f"127.0.0.1:{port}"], env=stack.env, cwd=ROOT, timeout=120,
                              capture_output=True, text=True)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0], done.stderr
    assert "ORDERHOOKS_BIND" in errors[0]
    assert "worker.started" not in done.stderr and "orderhooks serving" not in done.stderr


def test_a_standalone_worker_serves_its_own_metrics(stack, database_url):
    stack.start_standin(default_status=5)
    stack.start_web(workers=1)
    channel = stack.create_channel("alone")
    stack.create_order(channel["id"], 7)
    assert stack.post_delivery(channel, delivery_body("alone", 7)[0]).status_code == 200
    port = free_port()
    env = {k: v for k, v in stack.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}  # shares nothing
    env["ORDERHOOKS_WORKER_METRICS_BIND"] = f"127.0.0.1:{port}"
    stack.workers.append(stack._start("worker-alone", [sys.executable, "-m", "core.cli", "worker"],
                                      env))
    engine = db_engine(database_url)
    assert wait_processed(engine, 1, 120) == 1
    engine.dispose()
    text = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text, 30,
                    what="the worker's /metrics")
    assert metric_sum(text, "orderhooks_delivery_outcomes_total", outcome="applied") == 1
    # ...and the web's /metrics, which shares no directory with it, does not have it.
    assert metric_sum(stack.metrics(), "orderhooks_delivery_outcomes_total") == 0
