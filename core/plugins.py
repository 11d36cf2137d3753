"""The plugin manager: the one place that talks to pluggy.

Plugins are found through entry points of the ``orderhooks`` group. One broken plugin does not
take the service down: its failure is logged with its name and error, and its channel types answer
404 — unless strict mode asks start-up to fail instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Iterable

import pluggy

from . import hookspecs
from .channels import ChannelAdapter

log = logging.getLogger("orderhooks.plugins")

ENTRY_POINT_GROUP = "orderhooks"


class PluginError(RuntimeError):
    """A plugin failed to load or register (raised in strict mode only)."""


@dataclass
class PluginInfo:
    name: str
    version: str | None = None
    channel_types: list[str] = field(default_factory=list)
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "channel_types": self.channel_types,
                "status": self.status, "error": self.error}


class Channels:
    """The loaded channel adapters, by type: a typed facade so the core never touches pluggy."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo],
                 adapters: dict[str, ChannelAdapter]):
        self.pm = pm
        self.plugins = plugins
        self._adapters = adapters

    def get(self, channel_type: str) -> ChannelAdapter | None:
        return self._adapters.get(channel_type)

    def __contains__(self, channel_type: str) -> bool:
        return channel_type in self._adapters

    @property
    def types(self) -> list[str]:
        return sorted(self._adapters)


def load_channels(*, extra: Iterable[tuple[str, object]] = (), disabled: Iterable[str] = (),
                  strict: bool = False, entry_points: bool = True) -> Channels:
    """Build the plugin manager: entry points of the ``orderhooks`` group, then ``extra``
    ``(name, plugin)`` pairs (tests and embedders), minus the ``disabled`` names."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    disabled = {name.strip() for name in disabled if name.strip()}
    infos: list[PluginInfo] = []

    def fail(info: PluginInfo, exc: BaseException, stage: str) -> None:
        info.status, info.error = "failed", f"{stage}: {type(exc).__name__}: {exc}"
        log.error("plugin.failed", extra={"plugin": info.name, "error": info.error})
        if strict:
            raise PluginError(f"plugin {info.name!r} failed to {stage}: {exc}") from exc

    candidates: list[tuple[PluginInfo, object]] = []
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(ep.name, dist.version if dist else None)
            if ep.name in disabled:
                info.status = "disabled"
                log.warning("plugin.disabled", extra={"plugin": ep.name})
                infos.append(info)
                continue
            if any(i.name == ep.name for i in infos):
                continue  # the same distribution seen twice on sys.path
            infos.append(info)
            try:
                candidates.append((info, ep.load()))
            except Exception as exc:  # noqa: BLE001 — any import error is the plugin's fault
                fail(info, exc, "import")
    for name, plugin in extra:
        info = PluginInfo(name, getattr(plugin, "__version__", None))
        if name in disabled:
            info.status = "disabled"
            infos.append(info)
            continue
        infos.append(info)
        candidates.append((info, plugin))

    adapters: dict[str, ChannelAdapter] = {}
    for info, plugin in candidates:
        try:
            pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001
            fail(info, exc, "register")
            continue
        found: list[ChannelAdapter] = []
        try:
            for impl in pm.hook.register_channels.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=found.append)
            for adapter in found:
                _check_adapter(adapter, adapters)
        except Exception as exc:  # noqa: BLE001
            pm.unregister(plugin)
            fail(info, exc, "register")
            continue
        for adapter in found:
            adapters[adapter.type] = adapter
            info.channel_types.append(adapter.type)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if strict:
            raise PluginError(str(exc)) from exc
        log.error("plugin.unknown_hook", extra={"error": str(exc)})
    for info in infos:
        if info.status == "loaded":
            log.info("plugin.loaded", extra={"plugin": info.name, "version": info.version,
                                             "channel_types": info.channel_types})
    return Channels(pm, infos, adapters)


def _check_adapter(adapter: object, known: dict[str, ChannelAdapter]) -> None:
    if not isinstance(adapter, ChannelAdapter):
        raise TypeError(f"{adapter!r} is not a core.channels.ChannelAdapter")
    if not adapter.type or not adapter.type.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"adapter {adapter!r} has no valid type name")
    if adapter.type in known:
        raise ValueError(f"channel type {adapter.type!r} is already registered")
