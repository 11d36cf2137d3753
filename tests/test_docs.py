"""docs/plugins.md documents the whole plugin contract (in the manner of datasette's
test_docs.py): every hookspec, every public ChannelAdapter attribute and method — with its
parameters, as in the code — the value types, intents, errors and the pytest plugin's fixtures."""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import orderhooks
import orderhooks.testing
from core import errors, hookspecs, intents
from core.adapters import (Channel, ChannelAdapter, Delivery, DeliveryInfo, Headers,
                           RemoteSubscription, SubscriptionSpec)

DOC = Path(__file__).parent.parent / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


@pytest.fixture(scope="module")
def headings(doc) -> list[str]:
    return [line.lstrip("#").strip() for line in doc.splitlines()
            if re.match(r"#{2,4} ", line)]


def _heading_for(headings: list[str], name: str) -> str | None:
    for heading in headings:
        if re.match(rf"`?{re.escape(name)}\b", heading):
            return heading
    return None


def _params(function) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


HOOKSPECS = sorted(name for name, value in vars(hookspecs).items()
                   if getattr(value, "orderhooks_spec", None) is not None)
METHODS = sorted(name for name, value in vars(ChannelAdapter).items()
                 if callable(value) and not name.startswith("_"))
ATTRIBUTES = sorted(name for name, value in vars(ChannelAdapter).items()
                    if not callable(value) and not name.startswith("_")
                    and not isinstance(value, (property, staticmethod, classmethod)))
VALUE_TYPES = [Delivery, Headers, Channel, DeliveryInfo, SubscriptionSpec, RemoteSubscription]
INTENTS = [intents.Cancel, intents.Fulfill, intents.Shipment, intents.ShipmentItem,
           intents.DeactivateChannel, intents.RedactPersonalData, intents.Ignore,
           intents.UpsertProduct, intents.ProductVariant, intents.DeleteProduct]
ERRORS = sorted(name for name, value in vars(errors).items()
                if isinstance(value, type) and issubclass(value, Exception)
                and value.__module__ == errors.__name__)
FIXTURES = sorted(name for name, value in vars(orderhooks.testing).items()
                  if type(value).__name__ == "FixtureFunctionDefinition"
                  and not name.startswith("_"))


def test_there_is_something_to_check():
    assert HOOKSPECS == ["register_channels"]
    assert {"authenticate", "inspect", "translate", "desired_subscriptions"} <= set(METHODS)
    assert {"type", "title", "credentials_schema", "stored_headers"} <= set(ATTRIBUTES)
    assert {"app", "client", "admin", "worker", "deliver"} <= set(FIXTURES)


@pytest.mark.parametrize("name", HOOKSPECS)
def test_every_hookspec_has_a_heading_with_its_signature(headings, name):
    heading = _heading_for(headings, name)
    assert heading, f"docs/plugins.md has no heading for the {name} hook"
    expected = f"{name}({', '.join(_params(getattr(hookspecs, name)))})"
    assert expected in heading, f"heading {heading!r} should show {expected}"


@pytest.mark.parametrize("name", METHODS)
def test_every_adapter_method_has_a_heading_with_its_signature(headings, name):
    heading = _heading_for(headings, name)
    assert heading, f"docs/plugins.md has no heading for ChannelAdapter.{name}"
    expected = f"{name}({', '.join(_params(getattr(ChannelAdapter, name)))})"
    assert expected in heading, f"heading {heading!r} should show {expected}"


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_every_adapter_attribute_has_a_heading(headings, name):
    assert _heading_for(headings, name), f"docs/plugins.md has no heading for {name}"


@pytest.mark.parametrize("kind", VALUE_TYPES + INTENTS, ids=lambda k: k.__name__)
def test_every_value_type_and_intent_is_documented_with_its_fields(doc, headings, kind):
    assert _heading_for(headings, kind.__name__), f"no heading for {kind.__name__}"
    section = doc.split(f"### `{kind.__name__}`", 1)[1].split("\n### ", 1)[0]
    fields = [f.name for f in dataclasses.fields(kind) if not f.name.startswith("_")] \
        if dataclasses.is_dataclass(kind) else []
    for field in fields:
        assert f"`{field}" in section or f"{field}=" in section or f"({field}" in section, (
            f"{kind.__name__}.{field} is not documented in its section")


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_documented(doc, name):
    assert f"`{name}" in doc


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_of_the_pytest_plugin_is_documented(doc, name):
    assert f"`{name}`" in doc, f"the orderhooks.testing fixture {name} is not in docs/plugins.md"


def test_contract_options_are_documented(doc):
    options = ["channel_type", "plugin_name", "signs_body", "cancellation_statuses",
               "fulfillment_statuses", "garbage_rounds", "garbage_seed"]
    assert all(hasattr(orderhooks.testing.AdapterContract, o) for o in options)
    fixtures = ["channel_credentials", "valid_delivery", "sign", "mock_channel_api", "adapter"]
    for name in options + fixtures:
        assert f"`{name}`" in doc, name


def test_settings_named_in_the_doc_exist(doc):
    from core.config import SETTINGS
    for name in set(re.findall(r"ORDERHOOKS_([A-Z_]+)", doc)):
        assert name in SETTINGS or name == "TEST_DATABASE_URL", name


@pytest.mark.parametrize("name", orderhooks.__all__)
def test_every_name_of_the_plugin_surface_is_documented(doc, name):
    section = doc.split("\n## What a plugin imports\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"\b{name}\b", section), (
        f"orderhooks.{name} is not listed under 'What a plugin imports' in docs/plugins.md")


def test_the_documented_surface_is_all_there(doc):
    section = doc.split("\n## What a plugin imports\n", 1)[1].split("\n## ", 1)[0]
    listed = section.split("from orderhooks import (", 1)[1].split(")", 1)[0]
    names = re.findall(r"\b([A-Za-z_]\w*),", listed)
    assert sorted(names) == sorted(orderhooks.__all__)


def test_the_readme_configuration_table_is_the_settings():
    """Every setting has its row in the README, with its default; no row names another."""
    from core.config import SETTINGS
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| `ORDERHOOKS_([A-Z_]+)` \| ([^|]+) \|", readme, re.M))
    assert set(rows) == set(SETTINGS)
    for name, (default, _kind, _help) in SETTINGS.items():
        expected = "(unset)" if default == "" else f"`{default!r}`"
        assert rows[name].strip() == expected, name
