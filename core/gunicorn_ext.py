"""Two small extensions of gunicorn, named in ``core/gunicorn_conf.py``.

:class:`ThreadWorker` is gunicorn's ``gthread`` worker that takes a new connection only while one
of its threads is free. The stock worker accepts whatever arrives while it is under
``worker_connections`` (1,000), so with keep-alive one process can end up holding every busy
connection while the others idle: measured here, 16 keep-alive clients on 2 processes sometimes
all landed on one, which then served them on one core (its GIL) at half the throughput. Sync
workers balance by construction (only an idle worker accepts); this restores that: a process
whose threads are all busy leaves new connections in the listen queue for a process that has a
free thread. Keep-alive connections it already holds are served as before.

:class:`GunicornLogger` skips the access-log work when nobody reads it: with a logging config,
gunicorn builds every request's access-log fields even when the access logger is off.
"""
from __future__ import annotations

import logging

from gunicorn.glogging import Logger
from gunicorn.workers import gthread


class ThreadWorker(gthread.ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Requests handed to the thread pool and not finished (main thread only).
        self.busy = 0

    def enqueue_req(self, conn):
        self.busy += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled):
        # gunicorn's loop asks again at each turn (each finished request wakes it), so the
        # listener comes back as soon as a thread is free.
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)


class GunicornLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
