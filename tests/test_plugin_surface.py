"""Plugins use one stable import surface, ``orderhooks`` (and ``orderhooks.testing`` in their
tests), never the core's modules: the core may then move its insides without breaking a plugin.
The built-in plugins and the example third-party plugin are held to it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import orderhooks
import orderhooks.testing

ROOT = Path(__file__).parent.parent
PLUGIN_SOURCES = sorted([*(ROOT / "plugins").rglob("*.py"),
                         *(ROOT / "tests" / "example_plugin").rglob("*.py")])


def imported_modules(source: str) -> set[str]:
    """Every absolute module an ``import`` or ``from ... import`` names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def core_imports(source: str) -> list[str]:
    return sorted(name for name in imported_modules(source)
                  if name == "core" or name.startswith("core."))


def test_there_are_plugin_sources():
    relative = {str(path.relative_to(ROOT)) for path in PLUGIN_SOURCES}
    assert {"plugins/bigcommerce/plugin.py", "plugins/shopify/client.py",
            "tests/example_plugin/orderhooks_manual/plugin.py"} <= relative


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_do_not_import_the_core(path):
    assert core_imports(path.read_text()) == [], (
        f"{path.relative_to(ROOT)} imports the core directly: import from orderhooks instead")


@pytest.mark.parametrize("source", [
    "from core.adapters import Delivery",
    "import core.errors",
    "from core import hookimpl",
    "def f():\n    from core.intents import Cancel\n",
])
def test_the_check_finds_a_core_import(source):
    assert core_imports(source)


def test_the_check_lets_the_surface_and_relative_imports_through():
    assert core_imports("from orderhooks import Cancel\nfrom .client import X\n"
                        "import orderhooks.testing\nimport corelib\n") == []


def test_the_core_does_not_import_the_surface():
    """The surface re-exports the core; the core never depends on it."""
    for path in sorted((ROOT / "core").rglob("*.py")):
        names = imported_modules(path.read_text())
        assert not {n for n in names if n == "orderhooks" or n.startswith("orderhooks.")}, path


def test_the_surface_is_the_cores_own_objects():
    from core import adapters, errors, hookspecs, intents
    assert orderhooks.hookimpl is hookspecs.hookimpl
    assert orderhooks.ChannelAdapter is adapters.ChannelAdapter
    assert orderhooks.Delivery is adapters.Delivery
    assert orderhooks.InvalidDelivery is errors.InvalidDelivery
    assert orderhooks.Cancel is intents.Cancel
    missing = [name for name in orderhooks.__all__ if not hasattr(orderhooks, name)]
    assert missing == []


def test_the_pytest_plugin_has_its_fixtures_and_the_contract():
    for name in ("app", "client", "admin", "worker", "make_channel", "make_order", "deliver",
                 "pytest_configure", "AdapterContract", "StandardWebhooksSigner", "json_body"):
        assert hasattr(orderhooks.testing, name), name
