"""The production files in deploy/ and the commands docs/deploy.md shows: no image is built and
no unit is started here, so every command they run is checked to be a real ``orderhooks``
command with options it accepts (parsed by the CLI itself), and the files they name exist."""
from __future__ import annotations

import json
import re
import shlex

import click
import pytest
import yaml

from core.cli import main

from .live import ROOT

DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "deploy.md"


def parse(args: list[str]) -> click.Context:
    """The context ``orderhooks <args>`` would run in; raises click's usage errors otherwise."""
    command, tokens, path = main, list(args), ["orderhooks"]
    while isinstance(command, click.Group):
        assert tokens, f"{' '.join(path)} needs a subcommand"
        name = tokens.pop(0)
        assert name in command.commands, f"{' '.join(path)} has no subcommand {name!r}"
        command, path = command.commands[name], path + [name]
    return command.make_context(" ".join(path), tokens)


def check(args: list[str]) -> click.Context:
    ctx = parse(args)
    for option in ("bind", "metrics_bind"):
        value = ctx.params.get(option)
        if value:
            assert re.fullmatch(r"[\w.\-\[\]:]+:\d+", value), (option, value)
    return ctx


def systemd_commands() -> dict[str, list[str]]:
    found = {}
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found[unit.name] = shlex.split(line.split("=", 1)[1].replace("%i", "9101"))
    return found


def test_every_systemd_unit_runs_a_real_orderhooks_command():
    commands = systemd_commands()
    assert set(commands) == {"orderhooks-migrate.service", "orderhooks-web.service",
                             "orderhooks-worker@.service"}
    for unit, argv in commands.items():
        assert argv[0].endswith("/bin/orderhooks"), unit
        check(argv[1:])
    assert commands["orderhooks-migrate.service"][1:] == ["db", "upgrade"]
    for unit in ("orderhooks-web.service", "orderhooks-worker@.service"):
        text = (DEPLOY / "systemd" / unit).read_text()
        assert "Requires=orderhooks-migrate.service" in text  # migrations first, as their own step


def dockerfile_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    return entry + cmd


def test_the_dockerfile_and_compose_run_real_orderhooks_commands():
    argv = dockerfile_command()
    assert argv[0] == "orderhooks"
    check(argv[1:])
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "orderhooks:latest"}
    assert set(ours) == {"migrate", "web", "worker"}
    assert ours["migrate"]["command"] == ["db", "upgrade"]
    for name, service in ours.items():
        check(service["command"])
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == \
                "service_completed_successfully"
    # nginx uses the very file the tests run, in the web container's network (127.0.0.1:8000).
    nginx = services["nginx"]
    source = nginx["volumes"][0].split(":")[0]
    assert (DEPLOY / source).resolve() == (DEPLOY / "nginx" / "orderhooks.conf").resolve()
    assert nginx["network_mode"] == "service:web"
    assert check(ours["web"]["command"]).params["bind"] == "127.0.0.1:8000"
    assert "server 127.0.0.1:8000 " in (DEPLOY / "nginx" / "orderhooks.conf").read_text()


def doc_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):  # VAR=value prefixes
                argv.pop(0)
            if argv and argv[0] == "orderhooks":
                commands.append(argv)
    return commands


def test_every_orderhooks_command_in_the_deploy_doc_is_real():
    commands = doc_commands()
    assert len(commands) >= 4
    for argv in commands:
        check(argv[1:])


def test_every_file_the_deploy_doc_names_exists():
    named = set(re.findall(r"`((?:deploy|scripts|bench|tests)/[\w./@-]+)`", DOC.read_text()))
    assert "deploy/nginx/orderhooks.conf" in named
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, missing


@pytest.mark.parametrize("args", [["web", "--bind"], ["worker", "--no-such-option"],
                                  ["serve", "--workers", "four"], ["nothing"]])
def test_the_check_refuses_what_the_cli_refuses(args):
    with pytest.raises((click.UsageError, AssertionError)):
        parse(args)
