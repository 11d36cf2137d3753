"""The admin REST API under /api/v1 (flask-smorest: marshmallow schemas + OpenAPI document)."""
from __future__ import annotations

import hmac
import json
import math

from flask import current_app, g, jsonify, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from ..answers import error_body
from ..validation import unstorable_text
from . import reference

API_PREFIX = "/api/v1"


class OrderhooksApi(Api):
    """Errors as ``{"error": code, "message": ..., "details"?: ...}`` everywhere."""

    from .schemas import ErrorSchema as ERROR_SCHEMA  # documented as it is answered

    def handle_http_exception(self, error: HTTPException):
        return http_error_response(error)


def http_error_response(error: HTTPException):
    data = getattr(error, "data", None) or {}
    body = error_body((error.name or "error").lower().replace(" ", "_"),
                      data.get("message") or error.description or error.name)
    details = data.get("messages") or data.get("errors")
    if details:
        body["details"] = details
        if body["message"] == error.description and error.code == 422:
            body["message"] = "the request is not valid: " + _summarise(details)
    response = jsonify(body)
    response.status_code = error.code or 500
    for key, value in (data.get("headers") or {}).items():
        response.headers[key] = value
    if error.code == 405 and getattr(error, "valid_methods", None):
        # RFC 9110: a 405 names the methods the resource does take.
        response.headers["Allow"] = ", ".join(error.valid_methods)
    if error.code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="orderhooks"'
    return response


def _summarise(details) -> str:
    parts = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)] if key not in ("json", "query") else path)
        elif isinstance(node, list) and all(isinstance(v, str) for v in node):
            parts.append(f"{'.'.join(path) or 'body'}: {' '.join(node)}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, path + [str(index)])
        else:
            parts.append(f"{'.'.join(path)}: {node}")
    walk(details, [])
    return "; ".join(parts)[:1000]


def require_admin():
    """Bearer token check, in constant time; the OpenAPI document and its reference page stay
    public (they hold no data)."""
    if (not request.path.startswith(API_PREFIX + "/") or request.method == "OPTIONS"
            or request.path == f"{API_PREFIX}/openapi.json"
            or request.path == reference.PATH or request.path.startswith(reference.ASSETS)):
        return None
    expected = current_app.config.get("ADMIN_TOKEN") or ""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected:
        return _unauthorized("the admin API is disabled: set ORDERHOOKS_ADMIN_TOKEN")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             expected.encode()):
        return _unauthorized("send 'Authorization: Bearer <ORDERHOOKS_ADMIN_TOKEN>'")
    return None


def require_json_body():
    """A request body must be JSON, said so by its Content-Type (415 otherwise), and readable as
    JSON (400 naming JSON otherwise): a form or a typo is answered as what it is, not as a list
    of missing fields."""
    if (not request.path.startswith(API_PREFIX + "/")
            or request.method not in ("POST", "PUT", "PATCH", "DELETE")):
        return None
    has_body = (request.content_length or 0) > 0 or bool(
        request.environ.get("wsgi.input_terminated") and request.get_data(cache=True))
    if not has_body:
        return None
    if not request.is_json:
        sent = request.mimetype or "none"
        return error_response(415, "unsupported_media_type",
                              f"the body must be JSON sent with 'Content-Type: application/json' "
                              f"(this request's Content-Type: {sent[:100]})")
    try:
        _json_body()
    except RecursionError:
        return None  # refuse_unstorable_text answers it, as for every too-deep JSON
    except ValueError as exc:  # UnicodeDecodeError too
        return error_response(400, "invalid_json",
                              f"the body is not valid JSON: {str(exc)[:200]}")
    return None


def refuse_unstorable_text():
    """Text the database cannot store — NUL characters (PostgreSQL refuses them) or lone UTF-16
    surrogates (not UTF-8) — in the query or JSON body is the client's mistake: 422 here, not a
    500 from deep in the database driver. JSON nested beyond reason is refused the same way."""
    if not request.path.startswith(API_PREFIX + "/") or request.method == "OPTIONS":
        return None
    try:
        body = _json_body()
    except RecursionError:
        return _unprocessable("the JSON body is nested too deeply")
    except ValueError:  # not JSON (an empty body): the schema's parser says what is missing
        body = None
    where = _integer_out_of_range(body)
    if where is not None:
        # Python reads at most 4,300 digits (more raises ValueError) and bigint holds 64 bits.
        return _unprocessable(f"{where or 'body'}: integers must fit in 64 bits (from -2^63 "
                              "to 2^63-1)", details={"json": {where or "body": [
                                  "integer out of range"]}})
    bad = unstorable_text(list(request.args.items(multi=True))) or unstorable_text(body)
    if bad:
        return _unprocessable(f"text must be UTF-8 without NUL characters: {bad!r}"[:200])
    if _non_finite_number(body):
        # Python's JSON reader takes NaN and Infinity; no JSON column (nor client) does.
        return _unprocessable("numbers must be finite: JSON has no NaN or Infinity")
    return None


class _OutOfRange:
    """An integer literal of a JSON body beyond 64 bits, kept unread."""


def _read_integer(literal: str):
    if len(literal) > 20:
        return _OutOfRange()
    value = int(literal)
    return value if -2**63 <= value < 2**63 else _OutOfRange()


def _json_body():
    """The request's JSON body (None if it says it is not JSON), integers beyond 64 bits
    marked; read once per request. Raises ValueError (UnicodeDecodeError too) when it is not
    JSON after all."""
    if not request.is_json:
        return None
    if "orderhooks_json_body" not in g:
        g.orderhooks_json_body = json.loads(request.get_data(cache=True),
                                            parse_int=_read_integer)
    return g.orderhooks_json_body


def _integer_out_of_range(value, limit: int = 100_000) -> str | None:
    """The dotted path of the first integer beyond 64 bits in ``value``, if any."""
    stack, seen = [(value, "")], 0
    while stack and seen < limit:
        item, path = stack.pop()
        seen += 1
        if isinstance(item, _OutOfRange):
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(item))
    return None


def _non_finite_number(value, limit: int = 100_000) -> bool:
    stack, seen = [value], 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def error_response(status: int, code: str, message: str, details: dict | None = None):
    """The one shape of an error answered before a view runs."""
    body = error_body(code, message)
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    return response


def _unprocessable(message: str, details: dict | None = None):
    return error_response(422, "unprocessable_entity", message, details)


def _unauthorized(message: str):
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="orderhooks"'
    return response


class BoundedIntegerConverter(IntegerConverter):
    regex = r"\d{1,18}"


def init_app(app) -> Api:
    app.config.setdefault("API_TITLE", "orderhooks admin API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("API_SPEC_OPTIONS", {
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "info": {"description": (
            "Configure sales channels, inspect orders and deliveries. Bodies are JSON "
            "(415 otherwise). Lists answer at most `limit` items and, when more follow, a "
            "`Link: <url>; rel=\"next\"` header for the next page. A channel's ETag, sent "
            "back as If-Match, guards its edits (412 when stale). Errors are "
            "`{\"error\": code, \"message\": ...}`.")},
    })
    # Ids in paths: at most 18 digits (every id is below 2^62), so a path of thousands of digits
    # is a 404, not Python's ValueError for integers over 4,300 digits.
    app.url_map.converters["int"] = BoundedIntegerConverter
    reference.configure(app)
    api = OrderhooksApi(app)
    from . import alerts, channels, deliveries, endpoints, events, meta, orders, products, rmas, spec
    app.before_request(require_admin)
    app.before_request(require_json_body)
    app.before_request(refuse_unstorable_text)
    for module in (channels, orders, rmas, deliveries, products, events, endpoints, alerts, meta):
        api.register_blueprint(module.blp, url_prefix=API_PREFIX + module.PREFIX)
    spec.document(api, app)
    reference.init_app(app)
    return api
