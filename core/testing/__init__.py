"""pytest plugin for orderhooks and for channel plugin authors, who load it by its public name::

    pytest_plugins = ["orderhooks.testing"]

One job per module:

* :mod:`.fixtures` — ``app`` (a fresh app on a fresh database: SQLite by default,
  ``ORDERHOOKS_TEST_DATABASE_URL`` for another), ``client``, ``admin`` (an admin API client that
  sends the bearer token), ``worker`` (runs the worker in-process until idle), ``make_channel``,
  ``make_order``, ``deliver`` (posts a delivery to a channel's intake); helpers
  :func:`channel_view` (the decrypted channel a plugin sees), :func:`delivery_count`,
  :func:`webhook_path`, :func:`utc`; the test app's settings (``ADMIN_TOKEN``, ``SECRET_KEY``...).
* :mod:`.signing` — builders for signed deliveries: :func:`json_body`, :func:`hmac_signature`
  (HMAC of the raw body, base64 or hex), :class:`StandardWebhooksSigner` /
  :func:`standard_webhooks_headers` and :func:`new_standard_webhooks_secret` (the
  ``standardwebhooks`` library).
* :mod:`.fuzz` — invalid bodies and headers for the contract's "never a 5xx" check.
* :mod:`.contract` — :class:`AdapterContract`, the contract test any channel adapter runs
  against itself.

See ``docs/plugins.md``.
"""
from __future__ import annotations

from .contract import INTENT_TYPES, AdapterContract
from .fixtures import (ADMIN_TOKEN, PUBLIC_BASE_URL, SECRET_KEY, AdminClient, _schema, admin, app,
                       app_config, channel_view, client, database_url, deliver, delivery_count,
                       make_channel, make_order, pytest_configure, test_database_url, utc,
                       webhook_path, worker)
from .signing import (StandardWebhooksSigner, hmac_signature, json_body,
                      new_standard_webhooks_secret, standard_webhooks_headers)

__all__ = [
    # pytest hooks and fixtures (pytest finds them in the plugin module's namespace)
    "pytest_configure", "_schema", "database_url", "app_config", "app", "client", "admin",
    "worker", "make_channel", "make_order", "deliver",
    # the test app's settings and helpers
    "ADMIN_TOKEN", "PUBLIC_BASE_URL", "SECRET_KEY", "AdminClient", "channel_view",
    "delivery_count", "webhook_path", "utc", "test_database_url",
    # signed deliveries
    "json_body", "hmac_signature", "StandardWebhooksSigner", "standard_webhooks_headers",
    "new_standard_webhooks_secret",
    # the adapter contract
    "AdapterContract", "INTENT_TYPES",
]
