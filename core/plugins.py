"""The plugin manager: the one place that talks to pluggy.

Plugins are found through entry points of the ``orderhooks`` group. One broken plugin does not
take the service down: its failure is logged with its name and error, and its channel types answer
404 — unless strict mode asks start-up to fail instead.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Iterable

import pluggy
from marshmallow import Schema

from . import hookspecs
from .adapters import ChannelAdapter

log = logging.getLogger("orderhooks.plugins")

ENTRY_POINT_GROUP = "orderhooks"

#: What a channel type may look like: it is a URL path segment and a 64-character column.
TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


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


class ChannelTypes:
    """The loaded channel adapters by channel type: a typed facade, so the core never touches
    pluggy."""

    def __init__(self, plugins: list[PluginInfo], adapters: dict[str, ChannelAdapter]):
        self.plugins = plugins
        self._adapters = adapters

    def get(self, channel_type: str) -> ChannelAdapter | None:
        return self._adapters.get(channel_type)

    def __contains__(self, channel_type: str) -> bool:
        return channel_type in self._adapters

    @property
    def types(self) -> list[str]:
        return sorted(self._adapters)


def load_channel_types(*, extra: Iterable[tuple[str, object]] = (),
                       disabled: Iterable[str] = (), strict: bool = False,
                       entry_points: bool = True) -> ChannelTypes:
    """Build the plugin manager: entry points of the ``orderhooks`` group, then ``extra``
    ``(name, plugin)`` pairs (tests and embedders), minus the ``disabled`` names.

    A plugin that fails to import or to register is reported as ``failed`` (with the error) and
    provides no channel type; with ``strict`` a :class:`PluginError` is raised instead."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if isinstance(disabled, str):
        disabled = disabled.split(",")
    disabled = {name.strip() for name in disabled if name and name.strip()}
    infos: list[PluginInfo] = []

    def fail(info: PluginInfo, exc: BaseException, stage: str) -> None:
        info.status, info.error = "failed", f"{stage}: {type(exc).__name__}: {exc}"
        info.channel_types = []
        log.error("plugin.failed", exc_info=exc,
                  extra={"plugin": info.name, "version": info.version, "stage": stage,
                         "error": info.error})
        if strict:
            raise PluginError(f"plugin {info.name!r} failed to {stage}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def disable(info: PluginInfo) -> None:
        info.status = "disabled"
        log.warning("plugin.disabled", extra={"plugin": info.name, "version": info.version})
        infos.append(info)

    candidates: list[tuple[PluginInfo, object]] = []
    if entry_points:
        seen: dict[str, str | None] = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if ep.name in seen:
                # The same distribution seen twice on sys.path (e.g. an editable install and its
                # egg-info) is silent; two distributions claiming one name are not.
                if dist_name != seen[ep.name]:
                    log.warning("plugin.duplicate_name", extra={
                        "plugin": ep.name, "distribution": dist_name,
                        "kept": seen[ep.name]})
                continue
            seen[ep.name] = dist_name
            info = PluginInfo(ep.name, dist.version if dist is not None else None)
            if ep.name in disabled:
                disable(info)
                continue
            infos.append(info)
            try:
                candidates.append((info, ep.load()))
            except (Exception, SystemExit) as exc:  # noqa: BLE001 — the plugin's fault
                fail(info, exc, "import")
    for name, plugin in extra:
        info = PluginInfo(name, getattr(plugin, "__version__", None))
        if any(i.name == name for i in infos):
            info.status = "failed"
            fail(info, ValueError(f"a plugin named {name!r} is already loaded"), "register")
            infos.append(info)
            continue
        if name in disabled:
            disable(info)
            continue
        infos.append(info)
        candidates.append((info, plugin))
    for name in sorted(disabled - {i.name for i in infos}):
        log.warning("plugin.disabled_unknown", extra={
            "plugin": name, "detail": "ORDERHOOKS_DISABLED_PLUGINS names no installed plugin"})

    adapters: dict[str, ChannelAdapter] = {}
    for info, plugin in candidates:
        try:
            pm.register(plugin, name=info.name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            fail(info, exc, "register")
            continue
        try:
            # pluggy's own check, after each plugin: the ones registered before passed it, so
            # what it finds is this plugin's (a misspelt register_channels would otherwise load
            # a plugin that silently does nothing).
            pm.check_pending()
        except pluggy.PluginValidationError:
            unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()
                             if not caller.has_spec())
            pm.unregister(plugin)
            fail(info, pluggy.PluginValidationError(
                plugin, f"unknown hook(s) {', '.join(unknown)}; orderhooks has: "
                        f"{', '.join(_known_hooks())}"), "register")
            continue
        found: list[ChannelAdapter] = []
        try:
            for impl in pm.hook.register_channels.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=found.append)
            mine: dict[str, ChannelAdapter] = {}
            for adapter in found:
                _check_adapter(adapter, {**adapters, **mine})
                mine[adapter.type] = adapter
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            pm.unregister(plugin)
            fail(info, exc, "register")
            continue
        for adapter in found:
            adapters[adapter.type] = adapter
            info.channel_types.append(adapter.type)
        if not found:
            log.warning("plugin.no_channels", extra={
                "plugin": info.name, "detail": "the plugin registered no channel adapter"})
    for info in infos:
        if info.status == "loaded":
            log.info("plugin.loaded", extra={"plugin": info.name, "version": info.version,
                                             "channel_types": info.channel_types})
    return ChannelTypes(infos, adapters)


def _known_hooks() -> list[str]:
    return sorted(name for name in vars(hookspecs)
                  if getattr(getattr(hookspecs, name), "orderhooks_spec", None) is not None)


def _check_adapter(adapter: object, known: dict[str, ChannelAdapter]) -> None:
    """Refuse an adapter the core could not use, at start-up rather than at the first delivery."""
    if not isinstance(adapter, ChannelAdapter):
        raise TypeError(f"{adapter!r} is not an orderhooks.ChannelAdapter")
    if not isinstance(adapter.type, str) or not TYPE_NAME.fullmatch(adapter.type):
        raise ValueError(f"adapter {adapter!r} has no valid type name ({adapter.type!r}): "
                         "lower-case letters, digits, '-' and '_', starting with a letter, "
                         "at most 64 characters")
    if adapter.type in known:
        raise ValueError(f"channel type {adapter.type!r} is already registered")
    schema = adapter.credentials_schema
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, Schema)):
        raise TypeError(f"{type(adapter).__name__}.credentials_schema must be a marshmallow "
                        f"Schema class (or None), not {schema!r}")
    headers = adapter.stored_headers
    if isinstance(headers, str) or not all(isinstance(h, str) for h in headers):
        raise TypeError(f"{type(adapter).__name__}.stored_headers must be a tuple of header names")
    # Header names are matched lower-case; accept any spelling.
    if any(h != h.lower() for h in headers):
        adapter.stored_headers = tuple(h.lower() for h in headers)
