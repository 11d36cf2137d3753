"""Two small extensions of gunicorn, named in ``core/gunicorn_conf.py``.

:class:`ThreadWorker` is gunicorn's ``gthread`` worker keeping at most one keep-alive connection
per thread. The stock worker keeps every connection it accepts (up to ``worker_connections``,
1,000), so keep-alive clients can all end up on one process while the others idle: measured
here, 16 keep-alive clients on 2 processes sometimes all landed on one, which then served them on
one core (its GIL) at half the throughput. A hard cap (stop accepting at one connection per
thread) balanced them, but left any client beyond ``workers x threads`` waiting in the listen
queue for as long as the others kept their connections busy (15 s, the whole run, in the
benchmark's 32-client open loop). So this worker never refuses to accept; instead, while it holds
more connections than threads, its answers close their connections (``Connection: close``, as
sync workers always do) until it is back to one per thread. Clients beyond the service's
capacity take turns, like they do with sync workers, and connections spread over the processes.
(Idle keep-alive connections over the budget are left to gunicorn's keep-alive timeout: closing
them early from the accept path raced with their next request arriving in the same poll.)

:class:`GunicornLogger` skips the access-log work when nobody reads it: with a logging config,
gunicorn builds every request's access-log fields even when the access logger is off.
"""
from __future__ import annotations

import logging

from gunicorn.glogging import Logger
from gunicorn.workers import gthread


class ThreadWorker(gthread.ThreadWorker):
    @property
    def max_keepalived(self) -> int:
        """Over one connection per thread, answers close their connections: gunicorn's own test
        (``len(keepalived_conns) >= max_keepalived``, read as each answer is sent), with the
        budget derived from the connections held at that moment."""
        return 0 if self.nr_conns > self.cfg.threads else self._max_keepalived

    @max_keepalived.setter
    def max_keepalived(self, value: int) -> None:  # gunicorn's: worker_connections - threads
        self._max_keepalived = value


class GunicornLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
