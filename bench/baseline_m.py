"""Baseline M: the minimum a durable webhook receiver must do, written by hand as a plain WSGI
callable (no framework, no ORM): read the raw body, verify an HMAC-SHA256 over it, INSERT the body
into the database with one committed transaction, answer 200.

Same durability settings as ``core/db.py``: on SQLite, WAL, ``synchronous`` (FULL by default),
``busy_timeout`` and a ``BEGIN IMMEDIATE`` transaction per delivery; on PostgreSQL, an ordinary
commit (the server's ``synchronous_commit``).

    BENCH_M_DATABASE=sqlite:////tmp/m.db BENCH_M_SECRET=s \
        python -m gunicorn -c core/gunicorn_conf.py 'bench.baseline_m:app'

Signature header: ``X-Bench-Signature: <hex HMAC-SHA256(secret, body)>``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
from datetime import datetime, timezone

SECRET = os.environ.get("BENCH_M_SECRET", "bench-m-secret").encode()
DATABASE = os.environ.get("BENCH_M_DATABASE", "sqlite:////tmp/orderhooks-bench-m.db")
SYNCHRONOUS = os.environ.get("ORDERHOOKS_SQLITE_SYNCHRONOUS", "FULL")
MAX_BODY = 1024 * 1024

SQLITE_TABLE = ("CREATE TABLE IF NOT EXISTS m_inbox (id INTEGER PRIMARY KEY, "
                "received_at TEXT NOT NULL, body BLOB NOT NULL)")
PG_TABLE = ("CREATE TABLE IF NOT EXISTS m_inbox (id BIGSERIAL PRIMARY KEY, "
            "received_at TIMESTAMP NOT NULL, body BYTEA NOT NULL)")

#: One connection per thread (gunicorn's gthread workers run several threads per process).
_local = threading.local()


def _connect(database: str = DATABASE):
    if database.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(database.split("///", 1)[1], timeout=30,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn
    import psycopg
    return psycopg.connect(database.replace("postgresql+psycopg://", "postgresql://"),
                           connect_timeout=5)


def create_table(database: str = DATABASE) -> None:
    conn = _connect(database)
    if database.startswith("sqlite"):
        conn.execute(SQLITE_TABLE)
    else:
        conn.execute(PG_TABLE)
        conn.commit()
    conn.close()


def _insert(body: bytes) -> None:
    _conn = getattr(_local, "conn", None)
    if _conn is None:
        _conn = _local.conn = _connect(DATABASE)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if DATABASE.startswith("sqlite"):
        _conn.execute("BEGIN IMMEDIATE")
        try:
            _conn.execute("INSERT INTO m_inbox (received_at, body) VALUES (?, ?)",
                          (now.isoformat(" "), body))
            _conn.execute("COMMIT")
        except BaseException:
            _conn.execute("ROLLBACK")
            raise
    else:
        with _conn.transaction():
            _conn.execute("INSERT INTO m_inbox (received_at, body) VALUES (%s, %s)", (now, body))


def _answer(start_response, status: str, text: bytes):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def app(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        return _answer(start_response, "405 Method Not Allowed", b"")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY:
        return _answer(start_response, "413 Payload Too Large", b"")
    body = environ["wsgi.input"].read(length)
    given = environ.get("HTTP_X_BENCH_SIGNATURE", "")
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return _answer(start_response, "401 Unauthorized", b"bad signature")
    try:
        _insert(body)
    except Exception:  # noqa: BLE001 — the sender retries
        _local.conn = None
        return _answer(start_response, "503 Service Unavailable", b"")
    return _answer(start_response, "200 OK", b"ok")
