"""The JSON log formatter: one parseable line per record, whatever the fields hold."""
from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal

import pytest

from core.logs import JsonFormatter


def _line(**fields) -> str:
    record = logging.LogRecord("orderhooks.test", logging.INFO, "", 0, "test.event", (), None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)


@pytest.mark.parametrize("value, expected", [
    (12345, 12345),
    ("orders/cancelled", "orders/cancelled"),
    ("bad \ud800 text", "bad \ud800 text"),  # a lone surrogate (outside input): orjson refuses it
    (2 ** 70, 2 ** 70),  # beyond 64 bits: orjson refuses it
    (Decimal("1.5"), "1.5"),  # not JSON: str()
    (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"),
])
def test_every_value_gives_one_json_line(value, expected):
    line = _line(value=value)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "test.event" and entry["level"] == "info"
    assert entry["logger"] == "orderhooks.test" and entry["time"].endswith("+00:00")
    assert entry["value"] == expected


def test_secrets_are_redacted_whatever_the_encoder():
    for extra in ({"access_token": "PLAINTEXT"}, {"client_secret": "PLAINTEXT", "n": 2 ** 70}):
        line = _line(**extra)
        assert "PLAINTEXT" not in line
        assert "[redacted]" in json.loads(line).values()
