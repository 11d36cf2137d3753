"""Engine and sessions. SQLite (WAL, busy timeout, BEGIN IMMEDIATE) by default; any PostgreSQL
through ``ORDERHOOKS_DATABASE_URL``."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import orjson
from flask import Flask, current_app, g
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
#: How long a SQLite writer waits for the write lock: SQLite's busy timeout, and the wait for
#: this process's other writers (past it, SQLite's own lock decides).
SQLITE_BUSY_SECONDS = 30
#: The execution option that marks a read-only session's connection (:meth:`Database.reading`).
READ_ONLY = "orderhooks_read_only"

log = logging.getLogger("orderhooks.db")


def writer_queue_path(database: str | None) -> str | None:
    """The file beside a SQLite database on which every process's writers queue (``flock``):
    the intake's group commits (core/inbox.py) and :meth:`Database.session`'s transactions
    alike; None for a database in memory."""
    return f"{database}-intake.lock" if database and database != ":memory:" else None


class WritersQueue:
    """A place in the queue of a SQLite file's writers: an ``flock`` on the file beside it,
    through a handle of this process's own (flock excludes open files, not processes). The
    kernel hands the lock to the next waiter the moment it is released, where SQLite's busy
    handler has each waiter sleep and poll. Without the file (a database in memory, a directory
    it cannot be made in) :meth:`take` is False and SQLite's busy handler alone decides."""

    def __init__(self, database: str | None):
        self.path = writer_queue_path(database)
        self._fd = self._pid = None

    def take(self) -> bool:
        """Wait for this process's turn (blocking); False when there is no queue."""
        if self.path is None:
            return False
        if self._fd is None or self._pid != os.getpid():  # none yet, or inherited by a fork
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning("db.no_writer_queue", extra={"path": self.path, "error": str(exc)})
                self.path = None
                return False
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def leave(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """This process's handle (each Database and intake writer opens its own)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


#: ``Session.info`` key of the rows :meth:`RawInsert.add` holds back (:func:`defer_inserts`).
DEFERRED_INSERTS = "orderhooks_deferred_inserts"
#: A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 2.0


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL",
                 sqlite_mmap_bytes: int = 268435456):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url)
            #: Set on every new connection (read at connect time: changes apply to later ones).
            self.sqlite_pragmas = {"journal_mode": "WAL", "synchronous": sqlite_synchronous,
                                   "busy_timeout": SQLITE_BUSY_SECONDS * 1000, "foreign_keys": "ON",
                                   "mmap_size": int(sqlite_mmap_bytes)}
            _sqlite_pragmas(self.engine, self.sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800,
                                        connect_args={"connect_timeout": 5},
                                        json_serializer=json_dumps, json_deserializer=json_loads)
        #: Connections for leases (:meth:`session` with ``durable=False``): their commits do
        #: not wait for the WAL flush (PostgreSQL ``synchronous_commit=off``; SQLite
        #: ``synchronous=NORMAL`` in WAL mode, where the next durable commit's fsync of the
        #: WAL file covers them), set when a connection opens: no statement per transaction.
        self.lease_engine = self._sqlite_lease_engine(url) if self.is_sqlite else create_engine(
            url, pool_size=2, max_overflow=3, pool_recycle=1800,
            connect_args={"connect_timeout": 5, "options": "-c synchronous_commit=off"},
            json_serializer=json_dumps, json_deserializer=json_loads)
        if not self.is_sqlite:
            for engine in (self.engine, self.lease_engine):
                _ping_when_idle(engine)
        #: SQLite takes one writer at a time, and a writer that finds the lock taken sleeps in
        #: its busy handler in growing steps (up to 100 ms each) instead of waking when the
        #: lock frees: this process's writers (the worker's batches, the sender's leases and
        #: records, housekeeping) queue here instead, and the next one starts as soon as the
        #: previous commits. Bounded by the busy timeout, after which SQLite decides as before.
        self._writers = threading.RLock() if self.is_sqlite else None
        #: ...and across processes, the holder of ``_writers`` queues on the writers' file with
        #: the intake's leaders (one place per process: only the outermost session takes it),
        #: so a worker or sender process is handed the write lock in its turn instead of
        #: polling for it in the busy handler while the web processes pass it among themselves.
        self._queue = WritersQueue(self.engine.url.database if self.is_sqlite else None)
        self._depth = 0
        self.Session = sessionmaker(self.engine, class_=_DeferringSession,
                                    expire_on_commit=False)
        _write_deferred_first(self.Session)
        self._LeaseSession = sessionmaker(self.lease_engine, expire_on_commit=False)
        self._ReadSession = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                         expire_on_commit=False)

    def configure_sessions(self, **options) -> None:
        """Configure every writing session (``sessionmaker.configure``): durable and lease
        sessions alike, e.g. the ``info`` any transaction may need."""
        for maker in (self.Session, self._LeaseSession):
            maker.configure(**options)

    @contextmanager
    def session(self, durable: bool = True):
        """A session in a transaction: commits on success, rolls back on error.

        ``durable=False`` is for a transaction whose loss in a database crash costs nothing but
        time: a lease (a worker's claim, a sender's hold on an endpoint). A lease that was lost
        is simply free again (the delivery PENDING, the endpoint unheld), and whoever takes it
        next repeats the work; its commit need not wait for the WAL flush. PostgreSQL flushes
        the WAL in order, so the durable commit that follows (the batch with the change and
        its event) makes the lease durable too: nothing durable ever rests on a lost lease.
        Never for a change, an event or anything acknowledged."""
        queued = self._writers is not None and self._writers.acquire(timeout=SQLITE_BUSY_SECONDS)
        outer = queued and self._depth == 0 and self._queue.take()
        if queued:
            self._depth += 1
        try:
            with (self.Session if durable else self._LeaseSession)() as session, \
                    session.begin():
                yield session
        finally:
            if queued:
                self._depth -= 1
                if outer:
                    self._queue.leave()
                self._writers.release()

    @contextmanager
    def reading(self):
        """A session that only reads. On SQLite its transaction starts with a plain BEGIN, not
        BEGIN IMMEDIATE: in WAL mode a reader sees the last commit and neither waits for the
        write lock nor holds it, so a read on a hot path never queues behind writers (and
        their busy-timeout sleeps). Writing in it is an error (SQLite refuses to upgrade a
        stale read); on PostgreSQL it is an ordinary session."""
        with self._ReadSession() as session:
            yield session

    def upgrade(self) -> None:
        """Create or migrate the schema to the newest revision (Alembic)."""
        from alembic import command
        with self.engine.begin() as connection:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (None: no orderhooks schema)."""
        from alembic.runtime.migration import MigrationContext
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def newest_revision(self) -> str:
        from alembic.script import ScriptDirectory
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection and this process's handle on the writers' queue."""
        self.engine.dispose()
        if self.lease_engine is not self.engine:
            self.lease_engine.dispose()
        self._queue.close()

    def _sqlite_lease_engine(self, url: str) -> Engine:
        """A SQLite file's lease connections: the engine's settings with ``synchronous=NORMAL``
        when it is stronger (a database in memory is one connection's: the engine itself)."""
        if self.engine.url.database in (None, "", ":memory:") or str(
                self.sqlite_pragmas["synchronous"]).upper() not in ("FULL", "EXTRA", "2", "3"):
            return self.engine
        engine = _sqlite_engine(url)
        _sqlite_pragmas(engine, self.sqlite_pragmas, {"synchronous": "NORMAL"})
        return engine

    def sqlite_autocheckpoint(self, pages: int) -> None:
        """From now on, this process's SQLite connections checkpoint the WAL once it holds
        ``pages`` pages (SQLite's default: 1000). Pooled connections are closed, so every
        connection gets it. Nothing on PostgreSQL.

        A long-running worker checkpoints less often: a page changed again before the next
        checkpoint is copied to the database once, and the checkpoint's fsync is paid less
        often (figures: docs/performance.md)."""
        if not self.is_sqlite:
            return
        self.sqlite_pragmas["wal_autocheckpoint"] = int(pages)
        self.dispose()


class RawInsert:
    """An INSERT into some columns of a table, run on the DBAPI cursor of a session's
    connection, in the session's transaction: for rows a worker batch writes by the hundred
    (orders and their lines, history, events, RMAs), where building SQLAlchemy's execution
    context per statement cost more than the database's own work. Values are converted by
    SQLAlchemy's own bind processors for the connection's dialect (JSON, datetimes, booleans),
    so a row is stored exactly as an ORM or Core INSERT would store it. The ORM does not see
    these rows: nothing here may be an object the session holds."""

    def __init__(self, table, columns: tuple[str, ...], returning: str | None = None):
        self.table, self.columns, self.returning = table, columns, returning
        self._prepared: dict[str, tuple[str, list]] = {}

    def _prepare(self, dialect) -> tuple[str, list]:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            sql = (f"INSERT INTO {self.table.name} ({', '.join(self.columns)}) "
                   f"VALUES ({', '.join([mark] * len(self.columns))})")
            if self.returning:
                sql += f" RETURNING {self.returning}"
            processors = [self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                          for name in self.columns]
            prepared = self._prepared[dialect.name] = (sql, processors)
        return prepared

    def _cursor(self, session):
        connection = session.connection()
        sql, processors = self._prepare(connection.dialect)
        return connection.connection.driver_connection.cursor(), sql, processors

    @staticmethod
    def _params(row: dict, columns, processors) -> list:
        # None goes through the processor too: a JSON column stores it as JSON null, as the
        # ORM and Core do
        return [row[name] if process is None else process(row[name])
                for name, process in zip(columns, processors)]

    def add(self, session, row: dict) -> None:
        """INSERT ``row`` (every column named): at once, or, in a session that defers inserts
        (:func:`defer_inserts`), together with the table's other held rows (one executemany:
        one round trip for a batch's rows instead of one each) before the session's next
        statement, flush or commit. A table's rows are written in the order they were added,
        so their ids are too; nothing may read them back before then but through the
        session."""
        held = session.info.get(DEFERRED_INSERTS)
        if held is None:
            self.one(session, row)
        else:
            held.setdefault(self, []).append(row)

    def one(self, session, row: dict):
        """INSERT ``row`` (every column named); returns the ``returning`` column's value."""
        write_deferred(session)
        cursor, sql, processors = self._cursor(session)
        try:
            cursor.execute(sql, self._params(row, self.columns, processors))
            return cursor.fetchone()[0] if self.returning else None
        finally:
            cursor.close()

    def many(self, session, rows: list[dict]) -> None:
        """INSERT ``rows`` (one executemany)."""
        if not rows:
            return
        write_deferred(session)
        cursor, sql, processors = self._cursor(session)
        try:
            cursor.executemany(sql, [self._params(row, self.columns, processors)
                                     for row in rows])
        finally:
            cursor.close()


def defer_inserts(session) -> None:
    """From now on, :meth:`RawInsert.add` holds ``session``'s rows back until its next
    statement, flush or commit (for a transaction that writes many rows of a few tables: a
    worker's batch)."""
    session.info.setdefault(DEFERRED_INSERTS, {})


def write_deferred(session) -> None:
    """Write the rows ``session`` holds back, a table at a time in the order its first row
    was added (no table's held rows refer to another's)."""
    held = session.info.get(DEFERRED_INSERTS)
    while held:
        insert, rows = next(iter(held.items()))
        del held[insert]
        insert.many(session, rows)


class _DeferringSession(Session):
    """A session whose held rows (:func:`defer_inserts`) belong to the transaction they were
    added in: written before a savepoint starts, so rolling the savepoint back drops only
    the rows held since (a rollback forgets what is held)."""

    def begin_nested(self):
        write_deferred(self)
        return super().begin_nested()


def _write_deferred_first(session_class) -> None:
    # Every way a session reaches the database but a raw cursor (RawInsert writes the held
    # rows first itself) writes the held rows before it: statements (queries, lazy loads,
    # session.get), flushes and the commit. A rollback forgets them.
    @event.listens_for(session_class, "do_orm_execute")
    def before_statement(state):
        write_deferred(state.session)

    @event.listens_for(session_class, "before_flush")
    def before_flush(session, _context, _instances):
        write_deferred(session)

    @event.listens_for(session_class, "before_commit")
    def before_commit(session):
        write_deferred(session)

    @event.listens_for(session_class, "after_soft_rollback")
    def after_rollback(session, _previous):
        if session.info.get(DEFERRED_INSERTS):
            session.info[DEFERRED_INSERTS].clear()


#: orjson writes what the standard library writes, except what it has its own form for: those
#: (datetimes, dataclasses) are handed back to ``_refuse`` and so to the standard library.
_ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
                   | orjson.OPT_PASSTHROUGH_DATACLASS)


def _refuse(value):
    raise TypeError(f"{type(value).__name__} is left to the standard library")


def json_dumps(value) -> str:
    """A JSON column's value as text: orjson, since a worker batch encodes several JSON values
    per delivery (event data, order details, intents) and ``json.dumps`` takes several times
    as long. What orjson will not write as the standard library does (integers beyond 64 bits,
    lone surrogates, datetimes) goes to ``json.dumps``, so a value is stored, or refused, as
    the standard library stores or refuses it."""
    try:
        return orjson.dumps(value, default=_refuse, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def json_loads(text):
    """A JSON column's text as values: orjson, and the standard library for what orjson refuses
    to read (NaN, integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(bytes(text) if isinstance(text, memoryview) else text)


def alembic_config(url: str):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it sat unused for ``PING_IDLE_SECONDS``
    (SQLAlchemy's pessimistic disconnect handling, with a custom checkout ping): one that was
    checked in moments ago is alive as surely as a ping could tell, and a worker's batch or a
    sender's pass takes several connections a second — ``pool_pre_ping`` would add a round
    trip to each. A connection the server dropped since its last use fails its first
    statement instead; SQLAlchemy then discards the pool's connections, and the caller's
    retry (the worker's and sender's loops, the intake's 503) gets fresh ones."""
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def used(_dbapi_connection, record):
        if record is not None:
            record.info["orderhooks_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi_connection, record, _proxy):
        since = record.info.get("orderhooks_idle_since")
        if since is not None and time.monotonic() - since < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 — any failure: the pool connects again
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _sqlite_engine(url: str) -> Engine:
    return create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS,
                                            "check_same_thread": False},
                         json_serializer=json_dumps, json_deserializer=json_loads)


def _sqlite_pragmas(engine: Engine, pragmas: dict, overrides: dict | None = None) -> None:
    # pysqlite's own transaction handling is turned off so that every transaction starts with
    # BEGIN IMMEDIATE: a writer takes the lock up front (waiting up to the busy timeout) instead
    # of failing with SQLITE_BUSY when it upgrades a read lock while another process writes.
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for name, value in {**pragmas, **(overrides or {})}.items():
            cursor.execute(f"PRAGMA {name}={value}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn):
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY)
                             else "BEGIN IMMEDIATE")


def default_url(app: Flask) -> str:
    return "sqlite:///" + os.path.join(app.instance_path, "orderhooks.db")


def init_app(app: Flask) -> Database:
    url = app.config.get("DATABASE_URL") or default_url(app)
    app.config["DATABASE_URL"] = url
    db = Database(url, sqlite_synchronous=app.config.get("SQLITE_SYNCHRONOUS", "FULL"),
                  sqlite_mmap_bytes=app.config.get("SQLITE_MMAP_BYTES", 268435456))
    app.extensions["orderhooks.db"] = db
    app.teardown_appcontext(_close_session)
    return db


def get_db() -> Database:
    return current_app.extensions["orderhooks.db"]


def get_session() -> Session:
    """The request's session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = get_db().Session()
    return g.db_session


def _close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
