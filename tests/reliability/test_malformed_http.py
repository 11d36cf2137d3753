"""Bodies that break HTTP framing, sent to a real gunicorn over raw sockets (the Flask test client
cannot send them): malformed chunked encoding, and a connection that ends before its
Content-Length. Each gets a 400 with the JSON error shape and at most one log line (info or
warning, no stack trace), and nothing is stored — even when the headers are authentic."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from .live import SECRET_HEADER, db_engine, delivery_body, scalar


def _exchange(url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send ``request`` on a new connection, close our sending side, read the answer until the
    server closes. Returns (status, headers, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":")
                                                            for line in lines[1:])}
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def _request(path: str, headers: dict, body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: orderhooks.example.com",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _new_log_lines(stack, before: int) -> list[str]:
    return [line for line in stack.web.log_lines()[before:] if line.strip()]


@pytest.fixture
def live(stack):
    stack.start_standin()
    stack.start_web(workers=1)
    return stack


CHUNKED = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}


@pytest.mark.parametrize("framing", [
    pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="chunk size not hex"),
    pytest.param(b"\r\n{}\r\n0\r\n\r\n", id="empty chunk size"),
    pytest.param(b"2\r\n{}XX0\r\n\r\n", id="chunk without its CRLF terminator"),
    pytest.param(b"100\r\n{\"scope\": ", id="connection ends inside a chunk"),
    pytest.param(b"2\r\n{}\r\n0\r\n", id="connection ends before the last CRLF"),
])
def test_malformed_chunked_body_is_a_400_with_one_quiet_log_line(live, framing):
    channel = live.create_channel("malformed1")
    engine = db_engine(live.database_url)
    before = len(live.web.log_lines())
    for authentic in (False, True):
        headers = dict(CHUNKED)
        if authentic:
            headers[SECRET_HEADER] = channel["secret"]
        status, answer_headers, body = _exchange(
            live.web_url, _request(f"/webhooks/bigcommerce/{channel['id']}", headers, framing))
        assert status == 400, (status, body)
        assert answer_headers["content-type"] == "application/json"
        answer = json.loads(body)
        assert answer["error"] == "malformed_body" and answer["message"], answer
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 0
    # The service still answers, and one line per refused request at most, never an error.
    good, _key = delivery_body("malformed1", 250)
    assert live.post_delivery(channel, good).status_code == 200
    lines = [line for line in _new_log_lines(live, before) if "intake.stored" not in line]
    assert len(lines) <= 2, lines
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] in ("info", "warning"), entry
        assert "Traceback" not in line and "Error handling request" not in line, entry


def test_a_body_shorter_than_its_content_length_is_refused_and_not_stored(live):
    channel = live.create_channel("truncated1")
    engine = db_engine(live.database_url)
    body, _key = delivery_body("truncated1", 251)
    sent = (body + b" " * 500)[:500]  # the first 500 bytes of a body announced as 1,000
    headers = {"Content-Type": "application/json", "Content-Length": "1000",
               SECRET_HEADER: channel["secret"]}
    before = len(live.web.log_lines())
    status, answer_headers, answer = _exchange(
        live.web_url, _request(f"/webhooks/bigcommerce/{channel['id']}", headers, sent))
    assert status == 400, (status, answer)
    assert answer_headers["content-type"] == "application/json"
    error = json.loads(answer)
    assert error["error"] == "incomplete_body" and "500 of the 1000" in error["message"], error
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 0
    lines = _new_log_lines(live, before)
    assert len(lines) <= 1, lines
    assert all(json.loads(line)["level"] in ("info", "warning") for line in lines), lines
    # The same delivery sent whole is stored: the refusal was about the framing only.
    status, _headers, answer = _exchange(live.web_url, _request(
        f"/webhooks/bigcommerce/{channel['id']}",
        {**headers, "Content-Length": str(len(body))}, body))
    assert status == 200, answer
    assert scalar(engine, "SELECT count(*) FROM deliveries") == 1
