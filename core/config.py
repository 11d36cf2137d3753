"""Settings, from ``ORDERHOOKS_*`` environment variables, with defaults that run on SQLite.

Every variable is listed (with its default) in the README; ``SETTINGS`` below is the source.
A wrong value stops start-up with a :class:`ConfigError`: one line naming the variable and
the fix.
"""
from __future__ import annotations

import os

#: name -> (default, parser, help). Keys are the Flask config keys; the environment variable is
#: ``ORDERHOOKS_<name>``.
SETTINGS: dict[str, tuple[object, type, str]] = {
    "DATABASE_URL": ("", str, "SQLAlchemy URL; default: SQLite file instance/orderhooks.db "
                              "(use postgresql+psycopg://... to scale out)"),
    "INSTANCE_PATH": ("", str, "Folder of the default SQLite database and its generated key "
                               "file; default: Flask's instance folder (instance/ in a "
                               "checkout)"),
    "ADMIN_TOKEN": ("", str, "Bearer token for /api/v1, at least 16 characters (the admin API "
                             "answers 401 without it; unset: the admin API refuses every "
                             "request)"),
    "PUBLIC_BASE_URL": ("", str,
                        "Public URL channels deliver webhooks to (https on port 443 for "
                        "BigCommerce); required to create, check or repair subscriptions"),
    "ALLOWED_API_BASE_URLS": ("", str,
                              "Channel API base URLs allowed besides each channel's own "
                              "(https://api.bigcommerce.com, https://<shop>.myshopify.com): "
                              "comma-separated URL prefixes or hosts, e.g. a stand-in "
                              "http://127.0.0.1:8001 (http only where listed)"),
    "SECRET_KEY": ("", str, "Fernet key that encrypts channel credentials and webhook secrets "
                            "at rest (`orderhooks secrets generate-key`); comma-separated to "
                            "rotate (first encrypts, all decrypt). Required unless the "
                            "database is SQLite, whose key is generated into "
                            "instance/secret.key"),
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
    "RETENTION_DAYS": (30, int, "Raw delivery bodies of processed deliveries older than this "
                                "are purged (outcomes stay)"),
    "EVENT_RETENTION_DAYS": (30, int, "Events older than this are deleted once every enabled "
                                      "outbound webhook endpoint took them and no message "
                                      "refers to them (a feed cursor older than what was "
                                      "deleted is answered 410)"),
    "WEBHOOK_RETENTION_DAYS": (30, int, "Delivered outbound webhook messages (with their "
                                        "attempts) are deleted this long after delivery"),
    "WEBHOOK_FAILED_RETENTION_DAYS": (90, int, "Failed outbound webhook messages (retries used "
                                               "up; with their attempts) are deleted this long "
                                               "after their last retry: the time left to "
                                               "re-send them"),
    "ALERT_RETENTION_DAYS": (90, int, "Alert mails sent or given up are deleted this long "
                                      "after their last attempt"),
    "STRICT_PLUGINS": (False, bool, "Fail start-up when a plugin fails to load"),
    "DISABLED_PLUGINS": ("", str, "Comma-separated plugin names not to load"),
    "HTTP_TIMEOUT_SECONDS": (10.0, float, "Timeout of calls to channel APIs"),
    "ALLOWED_WEBHOOK_URLS": ("", str, "Outbound webhook endpoint URLs allowed besides https "
                                      "ones: comma-separated URL prefixes or hosts, e.g. "
                                      "http://127.0.0.1:9000 (http only where listed; "
                                      "`:*` for any port)"),
    "WEBHOOK_TIMEOUT_SECONDS": (15.0, float, "Time an outbound webhook endpoint has to answer "
                                             "a POST before the attempt counts as failed"),
    "WEBHOOK_RETRY_SCHEDULE": ("5,300,1800,7200,18000,36000,36000", str,
                               "Seconds before each retry of a failed outbound webhook, "
                               "comma-separated (Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, "
                               "10 h), each spread by ±20 % jitter; then the message is failed"),
    "WEBHOOK_DISABLE_AFTER_SECONDS": (5 * 86400, int, "An outbound webhook endpoint whose every "
                                                     "attempt failed for this long is disabled "
                                                     "(an endpoint.disabled event)"),
    "WEBHOOK_SENDERS": (8, int, "Threads of a worker's outbound sender: endpoints served at "
                                "once (each endpoint by one thread at a time, in order)"),
    "SQLITE_SYNCHRONOUS": ("FULL", str, "SQLite synchronous pragma (FULL: acknowledged = on disk)"),
    "SQLITE_WORKER_AUTOCHECKPOINT": (10000, int, "SQLite wal_autocheckpoint (pages) on the "
                                     "worker's connections: fewer, larger checkpoints for the "
                                     "throughput side (the web keeps SQLite's 1000, so no "
                                     "request waits on a big one)"),
    "SQLITE_MMAP_BYTES": (268435456, int, "SQLite mmap_size: database pages read through a memory "
                          "map instead of a read() each (0 turns it off)"),
    "LOG_LEVEL": ("INFO", str, "Log level"),
    "WEB_WORKERS": (0, int, "gunicorn worker processes of `web`/`serve` (0: one per core; "
                            "`--workers` wins)"),
    "WORKER_PROCESSES": (0, int, "`orderhooks worker` processes `serve` starts (0: two on "
                                 "PostgreSQL, one on SQLite)"),
    "SENDER_PROCESS": ("", bool, "Whether `serve` runs the outbound sender as a process of its "
                                 "own (`orderhooks sender`) instead of a thread of its worker; "
                                 "unset: yes"),
    "WEB_THREADS": (8, int, "Threads per gunicorn worker process (`--threads` wins)"),
    "WEB_REQUEST_SECONDS": (15.0, float, "Time a client has to send a whole request (head and "
                                         "body) before a 408"),
    "SMTP_URL": ("", str, "Mail server for alerts (docs/alerts.md): smtp://user:password@host:587 "
                          "(STARTTLS; required before credentials are sent) or "
                          "smtps://user:password@host:465 (TLS from the start); unset: no "
                          "alert is mailed or stored"),
    "SMTP_TIMEOUT_SECONDS": (10.0, float, "Timeout of each exchange with the mail server"),
    "ALERT_FROM": ("", str, "From address of alert mails; default: orderhooks@ the machine's "
                            "host name"),
    "ALERT_EMAILS": ("", str, "Comma-separated addresses that get every alert (each channel's "
                              "alert_emails get its own alerts too)"),
    "ALERT_BATCH_SECONDS": (300, int, "Deliveries of a channel that go dead within this time "
                                      "are reported in one alert mail"),
    "ALERT_RETRY_SECONDS": (30.0, float, "First retry delay of an alert the mail server "
                                         "refused; doubles per attempt, at most an hour"),
    "ALERT_GIVE_UP_SECONDS": (86400, int, "An alert not sent this long after it was written "
                                          "is given up, with the last error recorded"),
}


class ConfigError(Exception):
    """A setting is wrong; the message is one line that names the variable and the fix."""


#: Numbers that must be above zero (a count, a size, a timeout); every other number may be 0
#: but not negative.
_POSITIVE = {"MAX_BODY_BYTES", "WORKER_BATCH", "CLAIM_SECONDS", "MAX_ATTEMPTS",
             "HTTP_TIMEOUT_SECONDS", "SUBSCRIPTION_CHECK_SECONDS", "WEB_THREADS",
             "WEB_REQUEST_SECONDS", "SMTP_TIMEOUT_SECONDS", "ALERT_RETRY_SECONDS",
             "ALERT_GIVE_UP_SECONDS", "WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_DISABLE_AFTER_SECONDS",
             "WEBHOOK_SENDERS"}
#: Settings with a fixed set of values (upper case; SQLite also takes 0-3 for synchronous).
_CHOICES = {"SQLITE_SYNCHRONOUS": ("OFF", "NORMAL", "FULL", "EXTRA", "0", "1", "2", "3"),
            "LOG_LEVEL": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
#: Shorter admin tokens are refused: the token is the whole of the admin API's protection.
ADMIN_TOKEN_MIN_LENGTH = 16
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false"}


def _parse(name: str, kind: type, raw: str):
    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    else:
        try:
            return kind(raw)
        except ValueError:
            pass
    default = SETTINGS[name][0]
    raise ConfigError(f"ORDERHOOKS_{name}={raw!r} is not {_KIND_WORDS.get(kind, kind.__name__)}; "
                      f"set it to one (default {default!r}) or unset it")


def from_env(environ=os.environ) -> dict:
    config = {}
    for name, (default, kind, _help) in SETTINGS.items():
        raw = environ.get(f"ORDERHOOKS_{name}")
        config[name] = default if raw is None or raw == "" else _parse(name, kind, raw)
    return config


def check(config: dict) -> None:
    """Refuse values of the right type that are still wrong (a negative count, a short admin
    token, an unknown log level...)."""
    for name, (default, kind, _help) in SETTINGS.items():
        value = config.get(name, default)
        if kind in (int, float) and isinstance(value, (int, float)):
            if name in _POSITIVE and value <= 0:
                raise ConfigError(f"ORDERHOOKS_{name}={value} must be above 0 "
                                  f"(default {default})")
            if value < 0:
                raise ConfigError(f"ORDERHOOKS_{name}={value} must not be negative "
                                  f"(default {default})")
        if name in _CHOICES and str(value).upper() not in _CHOICES[name]:
            raise ConfigError(f"ORDERHOOKS_{name}={value!r} is not one of "
                              f"{', '.join(c for c in _CHOICES[name] if not c.isdigit())}")
    try:
        retry_schedule(config.get("WEBHOOK_RETRY_SCHEDULE", SETTINGS["WEBHOOK_RETRY_SCHEDULE"][0]))
    except ValueError as exc:
        raise ConfigError(f"ORDERHOOKS_WEBHOOK_RETRY_SCHEDULE: {exc}; give seconds separated by "
                          f"commas (default {SETTINGS['WEBHOOK_RETRY_SCHEDULE'][0]!r})") from None
    token = config.get("ADMIN_TOKEN") or ""
    if token and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        raise ConfigError(
            f"ORDERHOOKS_ADMIN_TOKEN is {len(token)} characters long; use at least "
            f"{ADMIN_TOKEN_MIN_LENGTH} random ones (`orderhooks secrets generate-token` "
            f"prints one)")


def retry_schedule(raw: str) -> tuple[float, ...]:
    """Seconds before each retry, e.g. ``"5,300,1800"``; ValueError naming the bad entry."""
    delays = []
    for item in (i.strip() for i in str(raw).split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number of seconds") from None
        if not 0 <= value < float("inf"):
            raise ValueError(f"{item!r} is not a number of seconds")
        delays.append(value)
    return tuple(delays)
