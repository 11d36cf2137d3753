"""A real HTTP receiver on loopback for the outbound webhook tests: a threaded http.server whose
paths answer as told (204, 500, 410, a hang, a redirect, 5 MB, a connection reset), recording
every request it gets."""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """``receiver.url("/ok")``; ``receiver.behave("/x", "500")`` changes what a path answers:
    ``ok`` (204), ``500``, ``410``, ``hang`` (no answer until stopped), ``slow`` (204 after
    ``slow_seconds``), ``redirect`` (302 to ``/landing``), ``big`` (200 with a 5 MB body),
    ``reset`` (the connection reset, no answer)."""

    def __init__(self, slow_seconds: float = 1.0):
        self.received: list[Received] = []
        self.modes: dict[str, str] = {}
        #: webhook-ids answered 500 whatever the path's mode.
        self.refused: set[str] = set()
        self.slow_seconds = slow_seconds
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                mode = receiver.modes.get(self.path, "ok")
                if self.headers.get("webhook-id") in receiver.refused:
                    mode = "500"
                if mode == "hang":
                    receiver.stopping.wait(60)
                    return
                if mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.rfile.close()  # its reference would keep the socket open
                    self.connection.close()
                    self.close_connection = True
                    return
                if mode == "slow":
                    receiver.stopping.wait(receiver.slow_seconds)
                if mode == "redirect":
                    return self._answer(302, b"", {"Location": "/landing"})
                if mode == "big":
                    return self._answer(200, b"x" * (5 * 1024 * 1024))
                status = {"500": 500, "410": 410}.get(mode, 204)
                self._answer(status, b"" if status == 204 else f"answer {status}".encode())

            def _answer(self, status, body, headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if status != 204:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the sender stopped reading: it keeps only the start

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/ok") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def behave(self, path: str, mode: str) -> None:
        self.modes[path] = mode

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
