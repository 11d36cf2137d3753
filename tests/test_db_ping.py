"""Pooled PostgreSQL connections are pinged only after sitting unused (core.db._ping_when_idle):
a busy worker pays no round trip per transaction for it, and a connection the server dropped
is still replaced, before use when it was idle, at its first failed statement when it was not."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core import db as core_db


@pytest.fixture
def pg(app):
    db = app.extensions["orderhooks.db"]
    if db.is_sqlite:
        pytest.skip("SQLite has no server to drop a connection")
    return db


def _pings(engine, monkeypatch) -> list:
    """Every ping of ``engine``'s connections (the dialect's, as pool_pre_ping would call)."""
    seen: list = []
    original = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping",
                        lambda connection: seen.append(connection) or original(connection))
    return seen


def _backend(db) -> int:
    with db.session() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(db, pid: int) -> None:
    """The server drops backend ``pid``, as a restart or an idle timeout would (asked on a
    connection outside the pool: the pool's one is the victim)."""
    import psycopg
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_connection_in_use_is_not_pinged_and_one_left_idle_is(pg, monkeypatch):
    pings = _pings(pg.engine, monkeypatch)
    for _ in range(3):
        _backend(pg)
    assert pings == []
    monkeypatch.setattr(core_db, "PING_IDLE_SECONDS", 0.0)  # every connection counts as idle
    _backend(pg)
    assert len(pings) == 1


def test_an_idle_connection_is_pinged_and_replaced_when_the_server_dropped_it(pg, monkeypatch):
    pid = _backend(pg)
    monkeypatch.setattr(core_db, "PING_IDLE_SECONDS", 0.0)  # every connection counts as idle
    _terminate(pg, pid)
    assert _backend(pg) != pid  # the ping failed, the pool connected again: no error


def test_a_busy_connection_dropped_by_the_server_fails_once_then_the_pool_recovers(pg):
    pid = _backend(pg)
    _terminate(pg, pid)
    with pytest.raises(OperationalError):
        _backend(pg)
    assert _backend(pg) != pid
