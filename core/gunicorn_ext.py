"""Two small extensions of gunicorn, named in ``core/gunicorn_conf.py``.

:class:`ThreadWorker` is gunicorn's ``gthread`` worker holding at most one connection per
thread. The stock worker accepts whatever arrives while it holds fewer than
``worker_connections`` (1,000), so keep-alive clients can all end up on one process while the
others idle: measured here, 16 keep-alive clients on 2 processes sometimes all landed on one,
which then served them on one core (its GIL) at half the throughput. Accepting only while one of
its threads is free did not prevent it (requests take a millisecond; the process that wins the
accept races keeps winning). Capped at one connection per thread, a process leaves further
connections in the listen queue for the others, the way sync workers balance by construction;
the whole service holds ``workers x threads`` connections at once, each with a thread to serve
it. An idle keep-alive connection does not keep a new client waiting: at the cap, a process
closes its longest-idle keep-alive connection (idle for at least half a second) to take a new
one.

:class:`GunicornLogger` skips the access-log work when nobody reads it: with a logging config,
gunicorn builds every request's access-log fields even when the access logger is off.
"""
from __future__ import annotations

import logging
import time

from gunicorn.glogging import Logger
from gunicorn.workers import gthread


class ThreadWorker(gthread.ThreadWorker):
    #: Seconds a keep-alive connection must have been idle before a new client takes its place.
    idle_yield = 0.5

    def accept(self, listener):
        if self.nr_conns >= self.cfg.threads and not self._yield_idle():
            self.set_accept_enabled(False)  # the client waits in the listen queue
            return
        super().accept(listener)
        if self.nr_conns >= self.cfg.threads:
            self.set_accept_enabled(False)  # gunicorn's loop would not ask until 1,000

    def set_accept_enabled(self, enabled):
        # Once disabled here, gunicorn's loop asks again at each turn (each finished request or
        # closed connection wakes it, and at least once a second): the listener is back as
        # soon as a connection is gone or one has been idle long enough to give its place up.
        super().set_accept_enabled(enabled and (self.nr_conns < self.cfg.threads
                                                or self._idle() is not None))

    def _idle(self):
        """The longest-idle keep-alive connection, if idle for ``idle_yield`` seconds."""
        if self.keepalived_conns:
            conn = self.keepalived_conns[0]  # parked first, so idle longest
            if conn.timeout - self.cfg.keepalive <= time.monotonic() - self.idle_yield:
                return conn
        return None

    def _yield_idle(self) -> bool:
        """Close the longest-idle keep-alive connection for a new client (an idle connection
        must not keep a waiting one out for the whole keep-alive timeout)."""
        conn = self._idle()
        if conn is None:
            return False
        self.keepalived_conns.remove(conn)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass
        self.nr_conns -= 1
        conn.close()
        return True


class GunicornLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
