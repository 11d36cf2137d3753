"""The pytest plugin for channel plugin authors. Enable it in your ``conftest.py``::

    pytest_plugins = ["orderhooks.testing"]

Fixtures (``app``, ``client``, ``admin``, ``worker``, ``make_channel``, ``make_order``,
``deliver``...), signed-delivery builders (``json_body``, ``hmac_signature``,
``StandardWebhooksSigner``...) and :class:`AdapterContract`, the contract test every channel
adapter runs against itself. See ``docs/plugins.md``.
"""
from __future__ import annotations

from core.testing import *  # noqa: F401,F403 — the plugin's fixtures must be in this namespace
from core.testing import __all__  # noqa: F401
