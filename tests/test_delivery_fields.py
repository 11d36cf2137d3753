"""Delivery.fields: a few top-level fields of a large body without building it (simdjson), and
always the answer Delivery.json would give."""
import json
import threading

import pytest

from core import adapters
from core.adapters import Delivery, Headers
from core.errors import InvalidDelivery
from tests.shopify_helpers import cancelled_order


def delivery(body: bytes) -> Delivery:
    return Delivery(body=body, headers=Headers({}))


def full_json(body: bytes, keys):
    payload = delivery(body).json()
    return {key: payload.get(key) for key in keys} if isinstance(payload, dict) else None


KEYS = ("id", "order_id", "updated_at", "customer", "line_items", "missing")


@pytest.mark.parametrize("body", [
    json.dumps(cancelled_order()).encode(),
    b'{"id": 820982911946154508, "updated_at": "2026-11-28T10:00:00-05:00"}',
    b'{"id": 18446744073709551615}',                  # the largest unsigned 64-bit integer
    b'{"id": 123456789012345678901234567890}',        # beyond 64 bits: json() reads it exactly
    b'{"id": 1, "id": 2}',                            # a repeated key: json() keeps the last
    b'{"id": NaN}',                                   # the standard library takes NaN
    b'{"updated_at": "\\ud800"}',                     # a lone surrogate escape
    b'\xef\xbb\xbf{"id": 7}',                         # a byte order mark
    b'{"customer": {"id": 5, "tags": ["a", {"b": null}]}, "line_items": [1.5, true, null]}',
    b'{}',
])
def test_fields_read_what_json_reads(body):
    assert delivery(body).fields(*KEYS) == full_json(body, KEYS)


@pytest.mark.parametrize("body", [b'[1, 2]', b'"text"', b'12', b'null'])
def test_a_body_that_is_json_but_not_an_object_has_no_fields(body):
    assert delivery(body).fields("id") is None


@pytest.mark.parametrize("body", [b'{"id": 1', b'', b'\xff\xfe', b'{"id": 1} {"id": 2}',
                                  b'{"id": "a\x01b"}', b'{"id": 01}'])
def test_a_body_that_is_not_json_raises_value_error_as_json_does(body):
    with pytest.raises(ValueError):
        delivery(body).json()
    with pytest.raises(ValueError):
        delivery(body).fields("id")


def test_fields_do_not_build_the_document():
    item = delivery(json.dumps(cancelled_order()).encode())
    if adapters.simdjson is None:
        pytest.skip("pysimdjson is not installed")
    assert item.fields("id")["id"] == cancelled_order()["id"]
    assert item._parsed is None  # json() was never called


def test_a_parser_still_held_by_an_earlier_document_is_replaced():
    if adapters.simdjson is None:
        pytest.skip("pysimdjson is not installed")
    parser = adapters.simdjson.Parser()
    held = parser.parse(b'{"keep": {"me": 1}}')["keep"]  # a live proxy: the parser is busy
    adapters._parsers.parser = parser
    body = b'{"id": 3}'
    assert delivery(body).fields("id") == {"id": 3}  # read by json() this time
    assert adapters._parsers.parser is None          # a fresh parser next time
    assert delivery(body).fields("id") == {"id": 3}
    assert held["me"] == 1


def test_threads_read_their_own_documents():
    bodies = [json.dumps({"id": i, "pad": "x" * (i % 97)}).encode() for i in range(2000)]
    wrong = []

    def read(offset):
        for i in range(offset, len(bodies), 8):
            if delivery(bodies[i]).fields("id")["id"] != i:
                wrong.append(i)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_big_body_is_read_with_a_parser_of_its_own():
    if adapters.simdjson is None:
        pytest.skip("pysimdjson is not installed")
    adapters._parsers.parser = None
    body = json.dumps({"id": 9, "pad": "x" * (adapters._KEEP_PARSER_BYTES + 1)}).encode()
    assert delivery(body).fields("id") == {"id": 9}
    assert adapters._parsers.parser is None  # the thread keeps no parser grown to its size
    assert delivery(b'{"id": 1}').fields("id") == {"id": 1}
    assert adapters._parsers.parser is not None


# -- Delivery.json_object: the body as a dict, or InvalidDelivery --------------------------------

@pytest.mark.parametrize("body", [b'', b'{"id": 1', b'\xff\xfe', b'[' * 100_000 + b']' * 100_000])
def test_json_object_refuses_a_body_that_is_not_json(body):
    for keys in ((), ("id",)):
        with pytest.raises(InvalidDelivery, match="^the body is not JSON$"):
            delivery(body).json_object(*keys)


@pytest.mark.parametrize("body", [b'[1, 2]', b'"text"', b'12', b'null'])
def test_json_object_refuses_json_that_is_not_an_object(body):
    for keys in ((), ("id",)):
        with pytest.raises(InvalidDelivery, match="^the body is not a JSON object$"):
            delivery(body).json_object(*keys)


def test_json_object_is_the_whole_object_or_the_named_fields():
    body = json.dumps(cancelled_order()).encode()
    assert delivery(body).json_object() == cancelled_order()
    assert delivery(body).json_object("id", "missing") == {"id": cancelled_order()["id"],
                                                          "missing": None}
