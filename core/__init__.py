"""orderhooks: keep routed orders in step with the sales channels they came from."""
from __future__ import annotations

import logging
import os

from flask import Flask, Response, jsonify
from flask.sessions import SessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from . import config as config_module
from .hookspecs import hookimpl  # re-exported for plugin authors

__all__ = ["create_app", "hookimpl"]

log = logging.getLogger("orderhooks")


def create_app(test_config: dict | None = None) -> Flask:
    """The app factory. ``test_config`` overrides settings read from ``ORDERHOOKS_*``; it may
    also hold ``PLUGINS``: extra ``(name, plugin)`` pairs registered beside the entry points."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import alerts, api, db, logs, plugins
    from .channel_cache import ChannelCache
    from .edge import MOUNT, WebhookEdge
    from .inbox import Writer
    from .crypto import Box, secret_keys
    from .http import APIBaseURLs

    settings = config_module.from_env()
    settings.update(test_config or {})
    config_module.check(settings)
    instance_path = settings.get("INSTANCE_PATH")
    app = Flask(__name__, instance_relative_config=True,
                instance_path=os.path.abspath(instance_path) if instance_path else None)
    app.config.update(settings)
    logs.configure(app.config["LOG_LEVEL"])
    app.json.sort_keys = False

    if not app.config.get("DATABASE_URL"):
        # The default database lives in the instance folder, beside its generated key: a folder
        # only its owner can enter.
        os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    try:
        database = db.init_app(app)  # the engine only: nothing is connected yet
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        # Never the URL itself in the message: it may hold a password.
        raise config_module.ConfigError(
            f"ORDERHOOKS_DATABASE_URL is not a database URL this installation can open "
            f"({str(exc).splitlines()[0]}); use postgresql+psycopg://user:password@host:5432/name"
            f" or sqlite:////absolute/path.db") from None
    alerts.init_app(app)  # ORDERHOOKS_SMTP_URL and recipients: checked before anything runs
    app.extensions["orderhooks.box"] = Box(secret_keys(
        app.config["SECRET_KEY"], sqlite=database.is_sqlite, instance_path=app.instance_path))
    app.extensions["orderhooks.channel_types"] = plugins.load_channel_types(
        extra=app.config.get("PLUGINS", ()),
        disabled=app.config["DISABLED_PLUGINS"],
        strict=bool(app.config["STRICT_PLUGINS"]),
        entry_points=app.config.get("ENTRY_POINT_PLUGINS", True))
    # ORDERHOOKS_HTTP_TIMEOUT_SECONDS bounds every channel API call: adapters that keep a
    # ``timeout`` (as the BigCommerce and Shopify ones do) get the configured one.
    # ORDERHOOKS_ALLOWED_API_BASE_URLS: where, besides its own API, a channel's calls may go.
    allowed = APIBaseURLs(app.config["ALLOWED_API_BASE_URLS"])
    try:
        APIBaseURLs(app.config["ALLOWED_WEBHOOK_URLS"])
    except ValueError as exc:
        raise config_module.ConfigError(str(exc).replace(
            "ORDERHOOKS_ALLOWED_API_BASE_URLS", "ORDERHOOKS_ALLOWED_WEBHOOK_URLS")) from None
    for channel_type in app.extensions["orderhooks.channel_types"].types:
        adapter = app.extensions["orderhooks.channel_types"].get(channel_type)
        if isinstance(getattr(adapter, "timeout", None), (int, float)):
            adapter.timeout = float(app.config["HTTP_TIMEOUT_SECONDS"])
        adapter.allowed_api_base_urls = allowed
    app.extensions["orderhooks.channel_cache"] = ChannelCache(
        app.config.get("CHANNEL_CACHE_SECONDS", 5.0))
    if app.config.get("AUTO_MIGRATE"):
        database.upgrade()

    # The service keeps no cookie sessions: skip Flask's session work on every request.
    app.session_interface = _NoSessions()
    # The webhook edge is the hot path: a plain WSGI app (core/edge.py) beside Flask, mounted on
    # its prefix as Flask documents for a non-Flask app; its deliveries go to the inbox.
    app.extensions["orderhooks.inbox"] = inbox = Writer(database)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {MOUNT: WebhookEdge(app, inbox)})
    api.init_app(app)
    _register_basics(app)
    return app


class _NoSessions(SessionInterface):
    def open_session(self, app, request):
        return None  # Flask then uses a null session, and never writes a cookie

    def save_session(self, app, session, response):
        return None


def _register_basics(app: Flask) -> None:
    from . import answers, metrics
    from .answers import SECURITY_HEADERS
    from .api import http_error_response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        try:
            app.extensions["orderhooks.db"].ping()
        except Exception:  # noqa: BLE001
            log.warning("readyz.database_unavailable")
            return jsonify({"status": "unavailable", "database": "unreachable"}), 503
        return {"status": "ok", "database": "ok"}

    @app.get("/metrics")
    def prometheus():
        try:
            metrics.update_lag(app.extensions["orderhooks.db"])
            metrics.update_webhooks(app.extensions["orderhooks.db"])
        except Exception:  # noqa: BLE001 — the other metrics still answer with the database down
            log.warning("metrics.lag_unavailable")
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return http_error_response(error)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # Never a stack trace or SQL to a client; the log has the details.
        from sqlalchemy.exc import OperationalError, InterfaceError, DBAPIError
        if isinstance(error, (OperationalError, InterfaceError)) or (
                isinstance(error, DBAPIError) and error.connection_invalidated):
            log.warning("http.database_unavailable", exc_info=error)
            return _answer(*answers.database_unavailable())
        log.exception("http.unexpected_error", exc_info=error)
        return _answer(*answers.internal_error())

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        return response


def _answer(status: int, body: dict, headers) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.extend(headers)
    return response
