"""The browsable API reference (Swagger UI) at /api/v1/docs, its assets served from the
``swagger-ui-bundle`` package: the page works without internet access, and loads nothing from
anyone else's server."""
from __future__ import annotations

import base64
import hashlib
import re

from flask import abort, send_from_directory

PATH = "/api/v1/docs"
ASSETS = PATH + "/assets/"
#: What the page loads; nothing else from the package is served.
_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                    "favicon-32x32.png", "favicon-16x16.png"})
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def configure(app) -> None:
    """flask-smorest renders the page; its assets come from ``ASSETS`` instead of a CDN."""
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", ASSETS)
    app.config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"persistAuthorization": False})


def init_app(app) -> None:
    from swagger_ui_bundle import swagger_ui_path

    @app.get(ASSETS + "<name>")
    def api_reference_asset(name: str):
        if name not in _FILES:
            abort(404)
        response = send_from_directory(swagger_ui_path, name, max_age=3600)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.after_request
    def reference_page_policy(response):
        from flask import request
        if request.path == PATH and response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = page_policy(response.get_data())
        return response


def page_policy(html: bytes) -> str:
    """The page's Content-Security-Policy: scripts and styles from this server, plus the page's
    own inline script by its hash (no 'unsafe-inline' for scripts); every other answer keeps
    ``default-src 'none'``. Swagger UI sets element styles and uses data: images."""
    hashes = " ".join("'sha256-%s'" % base64.b64encode(hashlib.sha256(s).digest()).decode()
                      for s in _INLINE_SCRIPT.findall(html))
    return ("default-src 'none'; "
            f"script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")
