"""The inbox's doorbell: a stored delivery wakes an idle worker at once instead of after its
idle sleep.

PostgreSQL: the intake's transaction ends with ``NOTIFY orderhooks_inbox`` (delivered by the
server at commit, to every listening worker; never before the rows are visible), and each worker
LISTENs on a connection of its own. SQLite (one box): the intake sends a one-byte datagram to a
unix socket beside the database file after its commit; the worker holding that socket wakes.

A second bell, ``EVENTS``, works the same way for the outbound sender when it runs as a process
of its own (``orderhooks sender``): whoever numbers events rings it once they are committed.

The doorbell is only a hint: a ring lost (no worker listening yet, a full socket buffer, a
listener connection being replaced) costs at most the idle sleep (the worker looks for work
after it anyway), and a ring without work costs one empty claim.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import select
import socket
import time

log = logging.getLogger("orderhooks.wakeup")

CHANNEL = "orderhooks_inbox"
NOTIFY_SQL = f"NOTIFY {CHANNEL}"
#: The sender's bell: events numbered (PostgreSQL channel, SQLite socket suffix).
EVENTS = "orderhooks_events"
EVENTS_NOTIFY_SQL = f"NOTIFY {EVENTS}"
_SUFFIX = {CHANNEL: "-wake.sock", EVENTS: "-events.sock"}


def socket_path(db, channel: str = CHANNEL) -> str | None:
    """The SQLite doorbell's path beside the database file (None: in-memory database)."""
    if not db.is_sqlite:
        return None
    database = db.engine.url.database
    return f"{database}{_SUFFIX[channel]}" if database and database != ":memory:" else None


class Doorbell:
    """The ringing side (the intake, after its commit on SQLite)."""

    def __init__(self, db, channel: str = CHANNEL):
        self.path = socket_path(db, channel)
        self._sock: socket.socket | None = None
        self._pid = None

    def ring(self) -> None:
        if self.path is None:
            return
        if self._sock is None or self._pid != os.getpid():
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pid = os.getpid()
        try:
            self._sock.sendto(b"!", self.path)
        except OSError:
            pass  # nobody listening, or a ring already waiting: the hint is not needed


class Listener:
    """The waiting side (a worker): :meth:`wait` returns early when the doorbell rang."""

    def __init__(self, db, channel: str = CHANNEL):
        self.db = db
        self.channel = channel
        self.path = socket_path(db, channel)
        self._sock: socket.socket | None = None
        self._conn = None

    def wait(self, timeout: float) -> bool:
        """Up to ``timeout`` seconds; True when woken by a ring."""
        try:
            if self.db.is_sqlite:
                return self._wait_socket(timeout)
            return self._wait_notify(timeout)
        except Exception:  # noqa: BLE001 — the bell is a hint: fall back to sleeping
            log.warning("wakeup.unavailable", exc_info=True)
            self.close()
            time.sleep(timeout)
            return False

    def _wait_socket(self, timeout: float) -> bool:
        if self.path is None:
            time.sleep(timeout)
            return False
        if self._sock is None:
            self._sock = self._bind()
            if self._sock is None:  # another worker holds the bell: the idle sleep
                time.sleep(timeout)
                return False
        # poll, not select: select() refuses a descriptor numbered 1024 or more, which a
        # process holding many connections reaches
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        if not poller.poll(max(0, math.ceil(timeout * 1000))):
            return False
        try:
            while self._sock.recv(64):  # every ring so far counts as one
                pass
        except BlockingIOError:
            pass
        return True

    def _bind(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(self.path)
            return sock
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        # A socket file exists: a live worker's (a ring reaches it) or a dead one's (refused).
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(self.path)
            sock.close()
            return None
        except OSError:
            os.unlink(self.path)
            sock.bind(self.path)
            return sock
        finally:
            probe.close()

    def _wait_notify(self, timeout: float) -> bool:
        if self._conn is None:
            import psycopg
            url = self.db.engine.url.set(drivername="postgresql")
            self._conn = psycopg.connect(url.render_as_string(hide_password=False),
                                         autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {self.channel}")
        woken = False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            woken = True
        if woken:  # drain what else arrived: one claim serves them all
            for _ in self._conn.notifies(timeout=0):
                pass
        return woken

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.path:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 — being thrown away
                pass
            self._conn = None
