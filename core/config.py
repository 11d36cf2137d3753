"""Settings, from ``ORDERHOOKS_*`` environment variables, with defaults that run on SQLite.

Every variable is listed (with its default) in the README; ``SETTINGS`` below is the source.
"""
from __future__ import annotations

import os

#: name -> (default, parser, help). Keys are the Flask config keys; the environment variable is
#: ``ORDERHOOKS_<name>``.
SETTINGS: dict[str, tuple[object, type, str]] = {
    "DATABASE_URL": ("", str, "SQLAlchemy URL; default: SQLite file instance/orderhooks.db "
                              "(use postgresql+psycopg://... to scale out)"),
    "ADMIN_TOKEN": ("", str, "Bearer token for /api/v1 (the admin API answers 401 without it; "
                             "unset: the admin API refuses every request)"),
    "PUBLIC_BASE_URL": ("", str,
                        "Public URL channels deliver webhooks to (https on port 443 for "
                        "BigCommerce); required to create, check or repair subscriptions"),
    "ALLOWED_API_BASE_URLS": ("", str,
                              "Channel API base URLs allowed besides each channel's own "
                              "(https://api.bigcommerce.com, https://<shop>.myshopify.com): "
                              "comma-separated URL prefixes or hosts, e.g. a stand-in "
                              "http://127.0.0.1:8001 (http only where listed)"),
    "SECRET_KEY": ("", str, "Key that encrypts channel credentials and webhook secrets at rest; "
                            "comma-separated to rotate (first encrypts, all decrypt)"),
    "MAX_BODY_BYTES": (1024 * 1024, int, "Largest webhook body accepted (413 beyond)"),
    "WORKER_BATCH": (50, int, "Deliveries a worker claims at once"),
    "WORKER_IDLE_SECONDS": (0.5, float, "Worker sleep when the inbox is empty"),
    "CLAIM_SECONDS": (300, int, "How long a worker's claim on a delivery lasts before it expires"),
    "MAX_ATTEMPTS": (8, int, "Attempts before a failing delivery is dead"),
    "RETRY_BASE_SECONDS": (30.0, float, "First retry delay; doubles per attempt, with jitter"),
    "RETRY_MAX_SECONDS": (3600.0, float, "Longest retry delay"),
    "UNKNOWN_ORDER_WINDOW_SECONDS": (3600, int, "How long an intent waits for an order that was "
                                                "not imported yet"),
    "UNPROCESSED_WINDOW_SECONDS": (14 * 86400, int, "How long an intent waits for an UNPROCESSED "
                                                    "order to be processed"),
    "REPLAY_MAX_DELIVERIES": (1000, int, "Most deliveries one POST /api/v1/deliveries/replay "
                                         "queues again; its answer's 'next' continues the window"),
    "SUBSCRIPTION_CHECK_SECONDS": (3600, int, "Interval of the worker's subscription check"),
    "RETENTION_DAYS": (30, int, "Raw delivery bodies older than this are purged"),
    "STRICT_PLUGINS": (False, bool, "Fail start-up when a plugin fails to load"),
    "DISABLED_PLUGINS": ("", str, "Comma-separated plugin names not to load"),
    "HTTP_TIMEOUT_SECONDS": (10.0, float, "Timeout of calls to channel APIs"),
    "SQLITE_SYNCHRONOUS": ("FULL", str, "SQLite synchronous pragma (FULL: acknowledged = on disk)"),
    "SQLITE_WORKER_AUTOCHECKPOINT": (10000, int, "SQLite wal_autocheckpoint (pages) on the "
                                     "worker's connections: fewer, larger checkpoints for the "
                                     "throughput side (the web keeps SQLite's 1000, so no "
                                     "request waits on a big one)"),
    "SQLITE_MMAP_BYTES": (268435456, int, "SQLite mmap_size: database pages read through a memory "
                          "map instead of a read() each (0 turns it off)"),
    "LOG_LEVEL": ("INFO", str, "Log level"),
}


def _parse(kind: type, raw: str):
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)


def from_env(environ=os.environ) -> dict:
    config = {}
    for name, (default, kind, _help) in SETTINGS.items():
        raw = environ.get(f"ORDERHOOKS_{name}")
        config[name] = default if raw is None or raw == "" else _parse(kind, raw)
    return config
