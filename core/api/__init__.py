"""The admin REST API under /api/v1 (flask-smorest: marshmallow schemas + OpenAPI document)."""
from __future__ import annotations

import hmac

from flask import current_app, jsonify, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

API_PREFIX = "/api/v1"


class OrderhooksApi(Api):
    """Errors as ``{"error": code, "message": ..., "details"?: ...}`` everywhere."""

    def handle_http_exception(self, error: HTTPException):
        return http_error_response(error)


def http_error_response(error: HTTPException):
    data = getattr(error, "data", None) or {}
    body = {"error": (error.name or "error").lower().replace(" ", "_"),
            "message": data.get("message") or error.description or error.name}
    details = data.get("messages") or data.get("errors")
    if details:
        body["details"] = details
        if body["message"] == error.description and error.code == 422:
            body["message"] = "the request is not valid: " + _summarise(details)
    response = jsonify(body)
    response.status_code = error.code or 500
    for key, value in (data.get("headers") or {}).items():
        response.headers[key] = value
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
    """Bearer token check, in constant time; the OpenAPI document stays public."""
    if (not request.path.startswith(API_PREFIX + "/")
            or request.path == f"{API_PREFIX}/openapi.json" or request.method == "OPTIONS"):
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


def _unauthorized(message: str):
    response = jsonify({"error": "unauthorized", "message": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="orderhooks"'
    return response


def init_app(app) -> Api:
    app.config.setdefault("API_TITLE", "orderhooks admin API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("API_SPEC_OPTIONS", {
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "info": {"description": "Configure sales channels, inspect orders and deliveries."},
    })
    api = OrderhooksApi(app)
    from . import channels, deliveries, meta, orders
    app.before_request(require_admin)
    for module in (channels, orders, deliveries, meta):
        api.register_blueprint(module.blp, url_prefix=API_PREFIX + module.PREFIX)
    return api
