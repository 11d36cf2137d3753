"""Three small extensions of gunicorn, named in ``core/gunicorn_conf.py``.

:class:`ThreadWorker` is gunicorn's ``gthread`` worker with two rules of its own.

*A thread gets a request only once the request has arrived.* The stock worker hands a connection
to a thread as soon as its first byte is there, and the thread then reads the rest of the head
and the body with blocking reads that have no time limit: a client sending its headers one byte
every few seconds holds a thread for as long as it likes, and a few dozen such clients hold all of
them. Here the worker's event loop (the one that accepts connections) reads each request itself,
without blocking, until its head and its announced body are complete, and only then gives it to a
thread. A slow client costs a socket and its bytes, never a thread. A request must be complete
within ``REQUEST_SECONDS`` (``ORDERHOOKS_WEB_REQUEST_SECONDS``, 15) of its connection being accepted (or, on a kept-alive connection, of
its first byte); a later one is answered 408 and closed. What the event loop does not hold (a
head over ``HEAD_BYTES``, a body over ``ORDERHOOKS_MAX_BODY_BYTES``, which the application
refuses) the thread reads itself, for ``THREAD_READ_SECONDS`` at most in all.

*At most one keep-alive connection per thread.* The stock worker keeps every connection it
accepts (up to ``worker_connections``), so keep-alive clients can all end up on one process
while the others idle (16 keep-alive clients on 2 processes sometimes all landed on one, which
then served them on one core). A hard cap on accepting left clients beyond ``workers x threads``
waiting in the listen queue instead, so this worker never refuses to accept: while it holds more
connections than threads, its answers close their connections (``Connection: close``, as sync
workers always do) until it is back to one per thread. Clients beyond the service's capacity take
turns, and connections spread over the processes.

:class:`GunicornLogger` skips the access-log work when nobody reads it: with a logging config,
gunicorn builds every request's access-log fields even when the access logger is off.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.glogging import Logger
from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

#: Time a client has to send a whole request (head and body), from its connection's accept or, on
#: a kept-alive connection, from the request's first byte. Webhook senders send in milliseconds.
REQUEST_SECONDS = float(os.environ.get("ORDERHOOKS_WEB_REQUEST_SECONDS") or 15)
#: Most bytes of request head the event loop holds; a bigger head is read by a thread (and refused
#: by gunicorn's own limits: ``limit_request_line``, ``limit_request_fields``).
HEAD_BYTES = 64 * 1024
#: Longest a thread spends reading from a client in all, for what the event loop did not hold.
THREAD_READ_SECONDS = 5.0
#: Longest a thread waits on a client that does not read its answer (gunicorn's own ``timeout``).
WRITE_SECONDS = 30.0
_READ_BYTES = 65536


def _max_body_bytes() -> int:
    from .config import SETTINGS  # the application's own limit and default
    raw = os.environ.get("ORDERHOOKS_MAX_BODY_BYTES")
    return int(raw) if raw else int(SETTINGS["MAX_BODY_BYTES"][0])


class ReadDeadline(NoMoreData):
    """A thread's reads from one client took longer than ``THREAD_READ_SECONDS`` in all.
    gunicorn treats it as the client going away: the connection closes, nothing is logged above
    debug."""


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader with one deadline for all of a request's reads."""
    deadline = 0.0

    def chunk(self, size_hint=None):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ReadDeadline()
        self.sock.settimeout(left)
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            raise ReadDeadline() from None
        finally:
            self.sock.settimeout(WRITE_SECONDS)  # what the answer's writes get


class _Conn(gthread.TConn):
    """A connection and the bytes of its next request, read by the event loop."""

    def __init__(self, *args):
        super().__init__(*args)
        self.received = b""
        self.complete = False
        self.answered_continue = False

    def init(self):
        super().init()
        unreader = self.parser.unreader
        if type(unreader) is SocketUnreader:
            unreader.__class__ = _DeadlineUnreader
        unreader.deadline = time.monotonic() + THREAD_READ_SECONDS
        if self.received:
            unreader.unread(self.received)
            self.received = b""


def request_end(data: bytes, max_body: int) -> int | None:
    """How far ``data`` must reach before a thread can take the request it starts: the end of
    its head and announced body, or ``len(data)`` when what follows is for a thread to read or
    refuse (a head or body beyond the limits, an unreadable length). None: not yet."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) if len(data) > HEAD_BYTES else None
    length, chunked = 0, False
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return len(data)  # gunicorn refuses it
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    start = end + 4
    if chunked:
        return _chunked_end(data, start, max_body)
    if length > max_body:
        return len(data)  # the application refuses it without reading it
    return start + length if len(data) >= start + length else None


def _chunked_end(data: bytes, pos: int, max_body: int) -> int | None:
    total = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return len(data) if len(data) - pos > 1024 else None
        try:
            size = int(data[pos:line_end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return len(data)  # gunicorn refuses it
        pos = line_end + 2
        if size == 0:  # trailer fields, then an empty line
            trailers_end = (pos + 2 if data[pos:pos + 2] == b"\r\n"
                            else data.find(b"\r\n\r\n", pos) + 4)
            if trailers_end >= 4 and trailers_end <= len(data):
                return trailers_end
            return len(data) if len(data) - pos > HEAD_BYTES else None
        total += size
        if total > max_body:
            return len(data)  # the application refuses it
        pos += size + 2
        if pos > len(data):
            return None


def _without_expect(data: bytes) -> bytes:
    """``data`` without its ``Expect: 100-continue`` line, once the event loop has answered it."""
    end = data.find(b"\r\n\r\n")
    lines = [line for line in data[:end].split(b"\r\n")
             if line.partition(b":")[0].strip().lower() != b"expect"]
    return b"\r\n".join(lines) + data[end:]


def _expects_continue(data: bytes) -> bool:
    end = data.find(b"\r\n\r\n")
    return any(line.partition(b":")[0].strip().lower() == b"expect"
               and line.partition(b":")[2].strip().lower() == b"100-continue"
               for line in data[:end].split(b"\r\n")[1:])


_TIMEOUT_BODY = json.dumps({"error": "request_timeout", "message": (
    f"the request did not arrive within {REQUEST_SECONDS:g} s; send it again, whole")}).encode()
REQUEST_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                          b"Content-Type: application/json\r\nContent-Length: "
                          + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


class ThreadWorker(gthread.ThreadWorker):

    def init_process(self):
        self.reading: deque[_Conn] = deque()  # by deadline: every request gets the same time
        self.max_body = _max_body_bytes()
        # TLS and HTTP/2 are gunicorn's to read: the event loop reads plain HTTP/1 only.
        self.buffering = not self.cfg.is_ssl and "h2" not in (self.cfg.http_protocols or ())
        super().init_process()

    @property
    def max_keepalived(self) -> int:
        """Over one connection per thread, answers close their connections: gunicorn's own test
        (``len(keepalived_conns) >= max_keepalived``, read as each answer is sent), with the
        budget derived from the connections held at that moment."""
        return 0 if self.nr_conns > self.cfg.threads else self._max_keepalived

    @max_keepalived.setter
    def max_keepalived(self, value: int) -> None:  # gunicorn's: worker_connections - threads
        self._max_keepalived = value

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.enqueue_req(_Conn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn):
        """Every path to a thread comes here (a new connection, a kept-alive one that became
        readable, read-ahead behind an answer): the request is read first, then handed over."""
        if not self.buffering or conn.complete or not isinstance(conn, _Conn):
            conn.complete = False
            conn.data_ready = True
            super().enqueue_req(conn)
            return
        if conn.parser is not None:  # bytes of this request read behind the last answer
            conn.received += conn.parser.unreader.take_buffered()
        if conn.sock.gettimeout() != 0.0:  # already non-blocking when kept alive: no syscall
            conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + REQUEST_SECONDS
        # A kept-alive connection comes here because its socket became readable, and a new one
        # has often received its request by the time it is accepted: one read now hands most
        # requests to a thread at once, without registering with the poller and waiting for
        # its next round (which needs the GIL again, behind the threads).
        if self._read(conn, registered=False):
            return
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn, _sock):
        self._read(conn, registered=True)

    def _read(self, conn, registered: bool) -> bool:
        """Reads what the socket holds; whether the connection has left the event loop's
        reading (handed to a thread, or closed). ``registered``: it is in ``reading`` and
        registered with the poller."""
        try:
            data = conn.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data is None:
            return self._check_complete(conn, registered) if conn.received else False
        if not data:
            if registered:
                self._stop_reading(conn)
            if b"\r\n\r\n" in conn.received:
                # The client stopped sending inside the body (a half-closed connection, a
                # truncated chunk): a thread reads what there is, and the application answers
                # 400 for the body it cannot have, so the client learns nothing was stored.
                conn.complete = True
                self.enqueue_req(conn)
                return True
            self.nr_conns -= 1  # the client went away before its request's head was complete
            conn.close()
            return True
        conn.received += data
        return self._check_complete(conn, registered)

    def _check_complete(self, conn, registered: bool) -> bool:
        end = request_end(conn.received, self.max_body)
        if end is None:
            if not conn.answered_continue and _expects_continue(conn.received):
                conn.answered_continue = True
                conn.received = _without_expect(conn.received)
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
            return False
        if registered:
            self._stop_reading(conn)
        conn.complete = True
        self.enqueue_req(conn)
        return True

    def _stop_reading(self, conn):
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)

    def murder_pending(self):
        """Also answers 408 to requests that did not arrive in time, and closes them."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].timeout <= now:
            conn = self.reading.popleft()
            self.poller.unregister(conn.sock)
            try:
                conn.sock.send(REQUEST_TIMEOUT_ANSWER)
            except OSError:
                pass
            self.nr_conns -= 1
            conn.close()


class GunicornLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)
