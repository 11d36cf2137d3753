"""The plugin contract of orderhooks.

A channel plugin is a module (or object) with functions marked ``@hookimpl``, declared as an entry
point of the ``orderhooks`` group::

    [options.entry_points]
    orderhooks =
        mychannel = mychannel.plugin

See ``docs/plugins.md`` for a full walkthrough.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .adapters import ChannelAdapter

hookspec = pluggy.HookspecMarker("orderhooks")
hookimpl = pluggy.HookimplMarker("orderhooks")


@hookspec
def register_channels(register: Callable[[ChannelAdapter], None]) -> None:
    """Register the plugin's channel adapters.

    Call ``register(adapter)`` once per channel type the plugin provides, with an instance of
    :class:`orderhooks.ChannelAdapter`. The adapter:

    (a) authenticates a delivery from its raw body and headers (``authenticate``);
    (b) names the delivery's id for de-duplication (``inspect``);
    (c) translates a delivery into zero or more intents — ``orderhooks.Cancel`` and ``Fulfill``
        addressed by the channel's own order id, ``UpsertProduct`` and ``DeleteProduct`` by its
        product id — and may call the channel's API to do so (``translate``);
    (d) says which webhook subscriptions a channel needs for its settings and creates, lists,
        re-activates and removes them on the channel (``desired_subscriptions``,
        ``list_subscriptions``, ``create_subscription``, ``activate_subscription``,
        ``delete_subscription``).

    Example::

        @hookimpl
        def register_channels(register):
            register(MyChannelAdapter())
    """
