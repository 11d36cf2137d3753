"""Imports point the way a delivery flows: edge -> inbox -> worker -> plugin -> rules -> order.

``LAYERS`` lists the core's modules from the bottom up. A module may import from its own layer
and the layers below it, never from a layer above: the rules know nothing of the worker, the
worker nothing of the admin API, and a helper two layers need lives below both. A new module
must be placed in the table (``test_every_module_has_a_layer``), so its place is a decision.
Imports inside functions count too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Bottom to top. A package name covers its submodules (``core.api`` covers ``core.api.orders``),
#: except the top-level packages, which name only their ``__init__``.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("core.config", "core.clock", "core.outcomes", "core.errors", "core.statuses",
                    "core.models", "core.intents", "core.webhooks", "core.db", "core.logs",
                    "core.metrics", "core.crypto", "core.http", "core.validation", "core.answers",
                    "core.events", "core.wakeup", "core.owners")),
    ("status rules", ("core.rules",)),
    ("adapter contract, plugins", ("core.adapters", "core.hookspecs", "core.plugins")),
    ("orders, channels, subscriptions, the inbox", (
        "core.alerts", "core.mail", "core.orders", "core.rmas", "core.channel_store", "core.subscriptions",
        "core.privacy", "core.retention", "core.deliveries", "core.inbox", "core.channel_cache",
        "core.endpoints", "core.products", "core.fanout")),
    ("worker", ("core.worker", "core.housekeeping", "core.tuning", "core.imports",
                "core.sender")),
    ("webhook edge, admin API, CLI, app factory, server, test kit", (
        "core.edge", "core.api", "core.cli", "core", "core.gunicorn_conf", "core.gunicorn_ext",
        "core.testing")),
    ("plugin surface", ("orderhooks", "orderhooks.testing")),
]

#: First-party packages the core must never import (plugins reach the core through orderhooks).
OUTSIDE = ("plugins", "tests", "bench", "wsgi")

PACKAGES = ("core", "orderhooks")


def layer_of(module: str) -> int | None:
    """The layer of ``module``: the longest table entry that is it or a package containing it."""
    best, found = -1, None
    for index, (_name, members) in enumerate(LAYERS):
        for member in members:
            covers = module.startswith(member + ".") and member not in PACKAGES
            if (module == member or covers) and len(member) > best:
                best, found = len(member), index
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if "migrations" not in p.parts)


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` imports (``from x import name`` counts as ``x.name`` when that is
    a module, as ``x`` otherwise), with its line."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((node.lineno, candidate if is_module(candidate) else target))
    return list(dict.fromkeys(found))


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that point against the flow."""
    own = layer_of(module)
    found = []
    for line, target in imported(source, module, is_package):
        top = target.split(".")[0]
        if top in OUTSIDE:
            found.append(f"{module}:{line} imports {target} (outside the core)")
        elif top in PACKAGES:
            theirs = layer_of(target)
            if theirs is None or own is None or theirs > own:
                found.append(f"{module}:{line} ({LAYERS[own][0] if own is not None else '?'}) "
                             f"imports {target} "
                             f"({LAYERS[theirs][0] if theirs is not None else 'no layer'})")
    return found


def test_every_module_has_a_layer():
    assert [module_name(p) for p in sources() if layer_of(module_name(p)) is None] == []


def test_a_module_missing_from_the_table_has_no_layer():
    assert layer_of("core.newthing") is None
    assert violations("from .newthing import x\n", "core.worker")


def test_no_module_is_in_two_layers():
    members = [m for _name, layer in LAYERS for m in layer]
    assert len(members) == len(set(members))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_with_the_flow(path):
    assert violations(path.read_text(), module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize("module, source", [
    ("core.rules", "from .worker import Worker\n"),                     # rules -> worker
    ("core.models", "def f():\n    from core.api import deliveries\n"),  # lazy, absolute
    ("core.inbox", "from .api import unstorable_text\n"),               # inbox -> admin API
    ("core.rules", "from .plugins import ChannelTypes\n"),             # rules -> plugin manager
    ("core.worker", "from plugins.shopify import plugin\n"),            # a plugin's own code
    ("core.orders", "from . import worker\n"),                          # from-package form
    ("core.adapters", "import orderhooks\n"),                           # core -> plugin surface
])
def test_the_check_finds_an_import_against_the_flow(module, source):
    assert violations(source, module)


@pytest.mark.parametrize("module, source", [
    ("core.worker", "from .rules import decide\nfrom . import metrics, orders\n"),
    ("core.api.deliveries", "from ..deliveries import replay\nfrom .schemas import X\n"),
    ("core.orders", "from .orders import apply_intent\n"),
])
def test_the_check_lets_imports_with_the_flow_through(module, source):
    assert violations(source, module) == []
