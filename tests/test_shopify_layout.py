"""The Shopify plugin's modules import along the flow of a delivery: names (topics), value
readers, body shapes, bodies as intents, the API client, the adapter. A module never imports one
above it, so each can be read (and changed) knowing only what is below it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "plugins" / "shopify"
#: Bottom to top; modules on one line are peers and do not import each other.
FLOW = [("topics",), ("values",), ("payloads",), ("orders", "products", "privacy"), ("client",),
        ("plugin",)]
LEVEL = {name: level for level, names in enumerate(FLOW) for name in names}


def own_imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports (``from .x import``, ``from . import x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
    return found


def test_every_module_has_a_place():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(LEVEL)


@pytest.mark.parametrize("name", sorted(LEVEL))
def test_imports_point_along_the_flow(name):
    upward = {m for m in own_imports(PACKAGE / f"{name}.py") if LEVEL[m] >= LEVEL[name]}
    assert upward == set(), f"plugins/shopify/{name}.py imports {sorted(upward)}, not below it"


def test_the_check_finds_an_upward_import(tmp_path):
    source = tmp_path / "values.py"
    source.write_text("from .payloads import shape_problem\nfrom . import plugin\n")
    assert own_imports(source) == {"payloads", "plugin"}
