"""Slow clients against gunicorn itself (no proxy in front): a thread gets a request only once
the worker's event loop has read it whole (core/gunicorn_ext.py), so sockets that trickle their
headers cost no thread. The full 60-second run with its figures is bench/slowloris.py."""
from __future__ import annotations

import json
import socket

import pytest

from core.gunicorn_ext import HEAD_BYTES, request_end

from .live import assert_answered_under_slow_clients

SLOW_SOCKETS = 200
ATTACK_SECONDS = 12


def test_deliveries_are_answered_within_a_second_while_200_slow_clients_hold_sockets(stack):
    stack.start_standin()
    stack.start_web(workers=2)
    channel = stack.create_channel("slowloris")
    assert_answered_under_slow_clients(stack, channel, stack.web_url, SLOW_SOCKETS, ATTACK_SECONDS)


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def test_a_request_that_does_not_arrive_in_time_gets_408_and_is_closed(stack):
    stack.env["ORDERHOOKS_WEB_REQUEST_SECONDS"] = "2"
    stack.start_web(workers=1)
    port = int(stack.web_url.rsplit(":", 1)[1])
    answer = _exchange(port, b"POST /webhooks/bigcommerce/1 HTTP/1.1\r\nHost: x\r\nContent-Le")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(body)["error"] == "request_timeout"


def test_expect_continue_chunked_and_pipelined_requests_still_work(stack):
    stack.start_web(workers=1)
    port = int(stack.web_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/bigcommerce/99 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 404 ") and first.count(b"100 Continue") == 0, first
    chunked = (b"POST /webhooks/bigcommerce/99 HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    closing = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = _exchange(port, chunked + closing)
    assert answers.count(b"HTTP/1.1 404 ") == 1 and answers.count(b"HTTP/1.1 200 ") == 1, answers


ALL = "all of it"


@pytest.mark.parametrize("data, expected", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", None),                                  # head not over
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ALL),                               # no body
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", None),                # body not over
    (b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET", -3),               # read-ahead
    (b"POST / HTTP/1.1\r\nContent-Length: 999\r\n\r\n", ALL),                  # over the limit
    (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", ALL),                    # gunicorn refuses
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", ALL),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n", None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\r\n", ALL),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ALL),      # bad size
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n", ALL),     # over the limit
])
def test_the_event_loop_knows_where_a_request_ends(data, expected):
    if expected == ALL:
        expected = len(data)
    elif expected is not None:
        expected = len(data) + expected
    assert request_end(data, max_body=100) == expected


def test_a_head_over_the_event_loops_share_goes_to_gunicorns_limits():
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_BYTES
    assert request_end(data, max_body=100) == len(data)
