"""The plugin manager: discovery through entry points, one broken plugin never takes the service
down (lenient) unless strict mode asks it to, blocking a plugin by name, and the listings
(``GET /api/v1/plugins``, ``orderhooks plugins``)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import types
import uuid
from importlib import metadata
from pathlib import Path

import pytest

from core import hookimpl
from core.adapters import ChannelAdapter
from core.cli import main as cli
from core.plugins import PluginError, load_channel_types
from core.testing import SECRET_KEY
from tests.conftest import log_records

ADAPTER_SOURCE = """
from core import hookimpl
from core.adapters import ChannelAdapter

class Adapter(ChannelAdapter):
    type = {type!r}
    title = "Test"

@hookimpl
def register_channels(register):
    register(Adapter())
"""


def fake_distribution(root: Path, name: str, version: str, entry_points: dict[str, str],
                      modules: dict[str, str]) -> Path:
    """A distribution installed in ``root`` as pip would: ``<name>-<version>.dist-info`` with
    METADATA and entry_points.txt (group ``orderhooks``), and its modules beside it."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[orderhooks]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for fake distributions (removed after the test)."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


@pytest.fixture
def broken_dist(site):
    """``broken-plugin`` 1.2.3: its entry point's module raises while being imported."""
    module = f"broken_plugin_{uuid.uuid4().hex[:8]}"
    fake_distribution(site, "broken-plugin", "1.2.3", {"broken": module}, {module: """
        raise RuntimeError("boom: the plugin's module cannot be imported")
    """})
    return module


@pytest.fixture
def plugin_log():
    """Records of the orderhooks.plugins logger."""
    with log_records("orderhooks.plugins") as records:
        yield records


def make_app(config: dict):
    from core import create_app
    return create_app(config)


def plugins_by_name(admin) -> dict:
    return {p["name"]: p for p in admin.get("/plugins")}


# -- discovery ----------------------------------------------------------------------------------

def test_bigcommerce_is_discovered_through_its_entry_point(app, admin):
    assert "PLUGINS" not in app.config
    eps = {ep.name: ep for ep in metadata.entry_points(group="orderhooks")}
    assert eps["bigcommerce"].value == "plugins.bigcommerce.plugin"
    listed = plugins_by_name(admin)["bigcommerce"]
    assert listed == {"name": "bigcommerce", "version": metadata.version("orderhooks"),
                      "channel_types": ["bigcommerce"], "status": "loaded", "error": None}
    from plugins.bigcommerce.plugin import BigCommerceAdapter
    assert isinstance(app.extensions["orderhooks.channel_types"].get("bigcommerce"),
                      BigCommerceAdapter)


def test_without_entry_points_only_extra_plugins_load():
    from plugins.bigcommerce import plugin as bigcommerce
    channels = load_channel_types(entry_points=False)
    assert channels.types == [] and channels.plugins == []
    channels = load_channel_types(entry_points=False, extra=[("bc", bigcommerce)])
    assert channels.types == ["bigcommerce"]


def test_a_fake_distribution_is_discovered_with_its_version(site):
    module = f"good_plugin_{uuid.uuid4().hex[:8]}"
    fake_distribution(site, "good-plugin", "2.0.1", {"good": module},
                      {module: ADAPTER_SOURCE.format(type="goodchan")})
    channels = load_channel_types()
    info = next(p for p in channels.plugins if p.name == "good")
    assert (info.version, info.status, info.channel_types) == ("2.0.1", "loaded", ["goodchan"])
    assert "goodchan" in channels and "bigcommerce" in channels


# -- a broken plugin, lenient ---------------------------------------------------------------------

def test_broken_plugin_does_not_take_the_service_down(broken_dist, app, client, admin,
                                                      make_channel):
    assert client.get("/healthz").status_code == 200
    plugins = plugins_by_name(admin)
    broken = plugins["broken"]
    assert broken["status"] == "failed" and broken["version"] == "1.2.3"
    assert broken["channel_types"] == []
    assert broken["error"].startswith("import: RuntimeError: boom")
    assert plugins["bigcommerce"]["status"] == "loaded"
    # its channel type is unknown: webhooks 404, the admin API refuses it
    response = client.post("/webhooks/broken/1", data=b"{}")
    assert response.status_code == 404 and response.get_json()["error"] == "unknown_channel"
    answer = make_channel("broken", {}, expect=422)
    assert "unknown channel type 'broken'" in answer["message"]
    # and the healthy channels still work
    channel = make_channel("bigcommerce", {"store_hash": "abc", "access_token": "t"},
                           cancel=(), fulfill=())
    assert client.post(f"/webhooks/bigcommerce/{channel['id']}", data=b"{}").status_code == 401


def test_broken_plugin_is_logged_with_its_name_and_error(broken_dist, plugin_log):
    channels = load_channel_types()
    assert "bigcommerce" in channels
    failed = [r for r in plugin_log if r.getMessage() == "plugin.failed"]
    assert len(failed) == 1
    record = failed[0]
    assert record.levelno == logging.ERROR
    assert record.plugin == "broken" and record.version == "1.2.3" and record.stage == "import"
    assert "boom" in record.error and record.exc_info is not None


def test_plugin_exiting_at_import_does_not_exit_the_service(site):
    module = f"exiting_plugin_{uuid.uuid4().hex[:8]}"
    fake_distribution(site, "exiting-plugin", "0.1", {"exiting": module},
                      {module: "import sys\nsys.exit(3)\n"})
    channels = load_channel_types()
    info = next(p for p in channels.plugins if p.name == "exiting")
    assert info.status == "failed" and "SystemExit" in info.error


class NotAnAdapter:
    type = "nope"


def _plugin(register_channels) -> types.ModuleType:
    module = types.ModuleType(f"fake_{uuid.uuid4().hex[:8]}")
    module.register_channels = hookimpl(register_channels)
    return module


def _adapter(type_name: str) -> ChannelAdapter:
    return type("Adapter", (ChannelAdapter,), {"type": type_name, "title": type_name})()


def _raises(register):
    register(_adapter("halfway"))  # registered, then the plugin fails: nothing of it is used
    raise RuntimeError("cannot read my settings")


def _typo_plugin():
    module = types.ModuleType("typo")
    module.register_channel = hookimpl(lambda register: register(_adapter("typo")))
    return module


def _bad_schema(register):
    adapter = _adapter("badschema")
    adapter.credentials_schema = {"store": "str"}
    register(adapter)


REGISTER_FAILURES = {
    "raises": (_plugin(_raises), "RuntimeError: cannot read my settings"),
    "not an adapter": (_plugin(lambda register: register(NotAnAdapter())),
                       "is not an orderhooks.ChannelAdapter"),
    "bad type name": (_plugin(lambda register: register(_adapter("Bad Name/1"))),
                      "no valid type name"),
    "type taken": (_plugin(lambda register: register(_adapter("bigcommerce"))),
                   "'bigcommerce' is already registered"),
    "same type twice": (_plugin(lambda register: [register(_adapter("twice")),
                                                  register(_adapter("twice"))]),
                        "'twice' is already registered"),
    "wrong hook arguments": (_plugin(lambda registrar: None), "registrar"),
    "misspelt hook": (_typo_plugin(), "unknown hook(s) register_channel"),
    "schema not a Schema class": (_plugin(_bad_schema), "must be a marshmallow Schema class"),
}


@pytest.mark.parametrize("case", REGISTER_FAILURES)
def test_plugin_failing_to_register(case):
    plugin, message = REGISTER_FAILURES[case]
    channels = load_channel_types(extra=[("faulty", plugin)])
    info = next(p for p in channels.plugins if p.name == "faulty")
    assert info.status == "failed", info
    assert info.error.startswith("register: ") and message in info.error, info.error
    assert info.channel_types == []
    assert "halfway" not in channels and "twice" not in channels and "typo" not in channels
    assert channels.get("bigcommerce").__class__.__name__ == "BigCommerceAdapter"
    assert next(p for p in channels.plugins if p.name == "bigcommerce").status == "loaded"


def test_unknown_hooks_fail_their_plugin_only_and_are_all_named():
    """pluggy's check_pending covers the whole manager; each plugin is checked as it registers,
    so a misspelt hook fails that plugin alone, before or after healthy ones."""
    typos = types.ModuleType("typos")
    typos.register_channel = hookimpl(lambda register: register(_adapter("typo")))
    typos.register_chanels = hookimpl(lambda register: register(_adapter("typo2")))
    channels = load_channel_types(entry_points=False, extra=[
        ("before", _plugin(lambda register: register(_adapter("before")))),
        ("typos", typos),
        ("after", _plugin(lambda register: register(_adapter("after"))))])
    by_name = {p.name: p for p in channels.plugins}
    assert by_name["typos"].status == "failed"
    assert by_name["typos"].error == (
        "register: PluginValidationError: unknown hook(s) register_chanels, register_channel; "
        "orderhooks has: register_channels")
    assert (by_name["before"].status, by_name["after"].status) == ("loaded", "loaded")
    assert channels.types == ["after", "before"]


def test_an_optional_hook_orderhooks_does_not_specify_is_allowed():
    module = _plugin(lambda register: register(_adapter("optional")))
    module.register_products = hookimpl(optionalhook=True)(lambda register: None)
    channels = load_channel_types(entry_points=False, extra=[("optional", module)])
    assert channels.plugins[0].status == "loaded" and channels.types == ["optional"]


class TestRegisterFailureThroughTheApp:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PLUGINS": [("faulty", _plugin(_raises))]}

    def test_lenient(self, client, admin):
        plugins = plugins_by_name(admin)
        assert plugins["faulty"]["status"] == "failed"
        assert "cannot read my settings" in plugins["faulty"]["error"]
        assert client.post("/webhooks/halfway/1", data=b"{}").status_code == 404


def test_stored_headers_are_matched_lower_case():
    adapter = _adapter("headers")
    adapter.stored_headers = ("X-Some-Header",)
    channels = load_channel_types(entry_points=False,
                             extra=[("h", _plugin(lambda register: register(adapter)))])
    assert channels.get("headers").stored_headers == ("x-some-header",)


# -- strict mode --------------------------------------------------------------------------------

def test_strict_mode_fails_start_up_on_an_import_error(broken_dist, app_config, monkeypatch):
    monkeypatch.setenv("ORDERHOOKS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'broken' failed to import: RuntimeError: boom"):
        make_app(app_config)


def test_strict_mode_fails_start_up_on_a_register_error(app_config, monkeypatch):
    monkeypatch.setenv("ORDERHOOKS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'faulty' failed to register"):
        make_app({**app_config, "PLUGINS": [("faulty", _plugin(_raises))]})


def test_strict_mode_starts_when_every_plugin_loads(app_config, monkeypatch):
    from plugins.bigcommerce import plugin as bigcommerce
    monkeypatch.setenv("ORDERHOOKS_STRICT_PLUGINS", "1")
    app = make_app({**app_config, "ENTRY_POINT_PLUGINS": False,
                    "PLUGINS": [("bigcommerce", bigcommerce)]})
    try:
        assert app.config["STRICT_PLUGINS"] is True
        assert app.extensions["orderhooks.channel_types"].types == ["bigcommerce"]
    finally:
        app.extensions["orderhooks.db"].dispose()


def test_strict_mode_blocked_broken_plugin_starts(broken_dist, app_config, monkeypatch):
    """Blocking the broken plugin is how an operator gets a strict service up again."""
    monkeypatch.setenv("ORDERHOOKS_STRICT_PLUGINS", "1")
    monkeypatch.setenv("ORDERHOOKS_DISABLED_PLUGINS", "broken")
    app = make_app(app_config)
    try:
        info = next(p for p in app.extensions["orderhooks.channel_types"].plugins
                    if p.name == "broken")
        assert info.status == "disabled" and info.error is None
    finally:
        app.extensions["orderhooks.db"].dispose()


# -- blocking a plugin ----------------------------------------------------------------------------

def test_blocked_plugin_is_listed_as_disabled_and_its_type_404s(app_config, database_url,
                                                                monkeypatch):
    # A BigCommerce channel made while the plugin was allowed...
    allowed = make_app(app_config)
    try:
        from core.testing import ADMIN_TOKEN, channel_view
        response = allowed.test_client().post(
            "/api/v1/channels", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"type": "bigcommerce", "name": "s", "credentials": {
                "store_hash": "abc", "access_token": "t"}})
        assert response.status_code == 201, response.get_json()
        channel_id = response.get_json()["id"]
        secret = channel_view(allowed, channel_id).webhook_secret
    finally:
        allowed.extensions["orderhooks.db"].dispose()
    # ...answers 404 once an operator blocks the plugin.
    monkeypatch.setenv("ORDERHOOKS_DISABLED_PLUGINS", " bigcommerce , not-installed ")
    blocked = make_app(app_config)
    try:
        client = blocked.test_client()
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        plugins = {p["name"]: p for p in client.get("/api/v1/plugins", headers=headers).json}
        assert plugins["bigcommerce"] == {
            "name": "bigcommerce", "version": metadata.version("orderhooks"),
            "channel_types": [], "status": "disabled", "error": None}
        assert "not-installed" not in plugins
        response = client.post(f"/webhooks/bigcommerce/{channel_id}", data=b"{}",
                               headers={"X-Orderhooks-Secret": secret})
        assert response.status_code == 404
        response = client.post("/api/v1/channels", headers=headers, json={
            "type": "bigcommerce", "name": "t", "credentials": {"store_hash": "abc",
                                                                "access_token": "t"}})
        assert response.status_code == 422
    finally:
        blocked.extensions["orderhooks.db"].dispose()


def test_blocked_plugin_is_never_imported(site, plugin_log):
    module = f"never_imported_{uuid.uuid4().hex[:8]}"
    fake_distribution(site, "never-plugin", "1.0", {"never": module},
                      {module: "raise SystemExit('must not be imported')\n"})
    channels = load_channel_types(disabled=["never", "typo-in-name"])
    info = next(p for p in channels.plugins if p.name == "never")
    assert (info.status, info.version, info.error) == ("disabled", "1.0", None)
    assert module not in sys.modules
    events = [(r.getMessage(), r.plugin) for r in plugin_log]
    assert ("plugin.disabled", "never") in events
    assert ("plugin.disabled_unknown", "typo-in-name") in events


def test_blocking_a_plugin_given_in_plugins():
    from plugins.bigcommerce import plugin as bigcommerce
    channels = load_channel_types(entry_points=False, extra=[("bc", bigcommerce)], disabled="bc")
    assert channels.types == [] and channels.plugins[0].status == "disabled"


def test_two_distributions_claiming_one_name_keep_the_first(site, plugin_log):
    first, second = (f"dup_{uuid.uuid4().hex[:8]}" for _ in range(2))
    fake_distribution(site / "a", "dup-a", "1.0", {"dup": first},
                      {first: ADAPTER_SOURCE.format(type="dupa")})
    fake_distribution(site / "b", "dup-b", "1.0", {"dup": second},
                      {second: ADAPTER_SOURCE.format(type="dupb")})
    sys.path[:0] = [str(site / "a"), str(site / "b")]
    try:
        channels = load_channel_types()
    finally:
        sys.path.remove(str(site / "a"))
        sys.path.remove(str(site / "b"))
    assert [p.name for p in channels.plugins].count("dup") == 1
    assert ("dupa" in channels) != ("dupb" in channels)
    assert any(r.getMessage() == "plugin.duplicate_name" for r in plugin_log)


# -- the listings ---------------------------------------------------------------------------------

def test_cli_lists_plugins(broken_dist, app):
    runner = app.test_cli_runner()
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 1, result.output  # a plugin failed
    lines = result.output.splitlines()
    assert lines[0].split() == ["PLUGIN", "VERSION", "STATUS", "CHANNEL", "TYPES", "ERROR"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["bigcommerce"].split()[:4] == ["bigcommerce", metadata.version("orderhooks"),
                                               "loaded", "bigcommerce"]
    assert rows["broken"].split()[:4] == ["broken", "1.2.3", "failed", "-"]
    assert "import: RuntimeError: boom" in rows["broken"]
    result = runner.invoke(cli, ["plugins", "--json"])
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["broken"]["status"] == "failed" and listed["broken"]["version"] == "1.2.3"
    assert listed["bigcommerce"]["channel_types"] == ["bigcommerce"]


def test_cli_exits_0_when_every_plugin_loads(app_config):
    from plugins.bigcommerce import plugin as bigcommerce
    app = make_app({**app_config, "ENTRY_POINT_PLUGINS": False,
                    "PLUGINS": [("bigcommerce", bigcommerce)]})
    try:
        result = app.test_cli_runner().invoke(cli, ["plugins", "--json"])
        assert result.exit_code == 0, result.output
        assert [p["name"] for p in json.loads(result.output)] == ["bigcommerce"]
    finally:
        app.extensions["orderhooks.db"].dispose()


def test_orderhooks_plugins_command(broken_dist, site, tmp_path):
    """The installed console script, in a process of its own, with the broken distribution on
    its path: lenient lists it as failed; strict refuses to start."""
    env = {**os.environ, "ORDERHOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "ORDERHOOKS_SECRET_KEY": SECRET_KEY,
           "ORDERHOOKS_LOG_LEVEL": "CRITICAL",
           "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parent.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("ORDERHOOKS_STRICT_PLUGINS", None)
    env.pop("ORDERHOOKS_DISABLED_PLUGINS", None)
    script = shutil.which("orderhooks")
    command = ([script] if script else [sys.executable, "-m", "core.cli"]) + ["plugins", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    assert listed["broken"]["status"] == "failed"
    assert listed["bigcommerce"]["status"] == "loaded"
    done = subprocess.run(command, env={**env, "ORDERHOOKS_STRICT_PLUGINS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "plugin 'broken' failed to import" in done.stderr
