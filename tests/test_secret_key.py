"""The key that encrypts channel credentials: a real Fernet key, never a published one. Without
``ORDERHOOKS_SECRET_KEY`` an SQLite instance generates its own (owner-only, reused, never
overwritten); any other database refuses to start. Admin tokens shorter than 16 characters are
refused too."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from cryptography.fernet import Fernet

from core import create_app
from core.cli import main
from core.config import ConfigError
from core.crypto import Box, WrongKey, instance_key, is_key, key_from_passphrase
from core.models import SalesChannel
from core.testing import ADMIN_TOKEN, SECRET_KEY, channel_view
from tests.conftest import log_records
from tests.reliability.live import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
OTHER_KEY = "8Vp1fyEetqbNK82Ac57BrnfNFzg6mUfs0Fp9iwiinhY="
#: What the development key used to be; built in two parts so this file does not hold it whole.
PUBLISHED_PASSPHRASE = "orderhooks-development-key" + "-do-not-use-in-production"
UNREACHABLE_POSTGRES = "postgresql+psycopg://orderhooks@127.0.0.1:1/orderhooks"


@pytest.fixture
def crypto_log():
    with log_records("orderhooks.crypto") as records:
        yield records


def _sqlite_app(instance: Path, **settings):
    return create_app({"INSTANCE_PATH": str(instance), "DATABASE_URL": "", "SECRET_KEY": "",
                       "AUTO_MIGRATE": True, "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "WARNING",
                       "ENTRY_POINT_PLUGINS": False, **settings})


def _close(app):
    app.extensions["orderhooks.db"].dispose()


def run_cli(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``orderhooks ARGS`` in a process of its own, with only the given ORDERHOOKS_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHOOKS_")}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env={**clean, **env},
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The process failed with one line on stderr, and no traceback. Other lines may only be
    the start-up's own progress records (JSON, level info: plugins loaded)."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(r["level"] == "info" for r in records), done.stderr
    errors = [line for line in lines if not line.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith("Error: "), done.stderr
    return errors[0]


# -- no key configured: SQLite generates one -----------------------------------------------------

def test_a_fresh_instance_generates_an_owner_only_key_and_logs_its_path_once(tmp_path,
                                                                            crypto_log):
    instance = tmp_path / "instance"
    app = _sqlite_app(instance)
    _close(app)
    key_file = instance / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    key = key_file.read_text().strip()
    assert is_key(key) and key != key_from_passphrase(PUBLISHED_PASSPHRASE)
    generated = [r for r in crypto_log if r.getMessage() == "config.secret_key_generated"]
    assert [r.path for r in generated] == [str(key_file)]

    # A second start reuses the key (and says nothing), so what the first stored still opens.
    sealed = app.extensions["orderhooks.box"].seal({"access_token": "kept"})
    again = _sqlite_app(instance)
    _close(again)
    assert key_file.read_text().strip() == key
    assert again.extensions["orderhooks.box"].open(sealed) == {"access_token": "kept"}
    assert len([r for r in crypto_log if r.getMessage() == "config.secret_key_generated"]) == 1


def test_a_key_file_is_never_overwritten(tmp_path):
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "secret.key").write_text(OTHER_KEY + "\n")
    (folder / "secret.key").chmod(0o600)
    assert instance_key(str(folder)) == OTHER_KEY
    (folder / "secret.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match="secret.key is not a Fernet key"):
        instance_key(str(folder))
    assert (folder / "secret.key").read_text() == "not a key\n"


def test_processes_starting_together_share_one_generated_key(tmp_path):
    folder = str(tmp_path / "instance")
    keys, start = [], threading.Barrier(8)

    def first_start():
        start.wait()
        keys.append(instance_key(folder))
    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(os.listdir(folder)) == ["secret.key"]  # no temporary file left behind


def test_a_configured_key_wins_over_the_key_file(tmp_path):
    app = _sqlite_app(tmp_path / "instance", SECRET_KEY=OTHER_KEY)
    _close(app)
    assert not (tmp_path / "instance" / "secret.key").exists()
    assert Box(OTHER_KEY).open(app.extensions["orderhooks.box"].seal(1)) == 1


def test_the_published_development_key_is_gone():
    sealed = Fernet(key_from_passphrase(PUBLISHED_PASSPHRASE)).encrypt(b'{"access_token": "x"}')
    with pytest.raises(ConfigError, match="ORDERHOOKS_SECRET_KEY holds no key"):
        Box("")
    with pytest.raises(WrongKey):
        Box(SECRET_KEY).open(sealed.decode())
    derived = key_from_passphrase(PUBLISHED_PASSPHRASE)
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("plugins/**/*.py"), ROOT / "README.md",
                 *ROOT.glob("docs/*.md")]:
        text = path.read_text()
        assert PUBLISHED_PASSPHRASE not in text and derived not in text, path


# -- production: a key of its own --------------------------------------------------------------

@pytest.mark.parametrize("command", [["worker", "--once"], ["web"], ["serve"], ["db", "upgrade"]])
def test_postgresql_without_a_key_refuses_to_start_with_one_line(command, tmp_path):
    done = run_cli(command, {"ORDERHOOKS_DATABASE_URL": UNREACHABLE_POSTGRES,
                             "ORDERHOOKS_INSTANCE_PATH": str(tmp_path)})
    line = one_line_error(done)
    assert "ORDERHOOKS_SECRET_KEY is not set" in line and "secrets generate-key" in line
    assert not (tmp_path / "secret.key").exists()


@pytest.mark.parametrize("keys", [
    "test-secret-key",                                     # a passphrase
    "x" * 44,                                              # not base64
    "c2hvcnQta2V5LW9mLTE2Yg==",                            # base64 of 16 bytes
    "MqDvFf3M93ioP7o64p_e_cqu8Hjx9u3rtM1YZRK1Q1A",         # a key without its padding
    f"{OTHER_KEY},not-a-key",                              # a bad second key
])
def test_anything_but_fernet_keys_is_refused(keys, app_config):
    with pytest.raises(ConfigError) as refused:
        create_app({**app_config, "SECRET_KEY": keys})
    message = str(refused.value)
    assert message.startswith("ORDERHOOKS_SECRET_KEY:") and "secrets generate-key" in message
    assert keys.split(",")[-1] not in message  # a key is never echoed


def test_a_bad_key_stops_the_command_with_one_line(tmp_path):
    done = run_cli(["worker", "--once"], {"ORDERHOOKS_SECRET_KEY": "my-passphrase",
                                          "ORDERHOOKS_INSTANCE_PATH": str(tmp_path)})
    assert "ORDERHOOKS_SECRET_KEY: the key is not a Fernet key" in one_line_error(done)
    assert "my-passphrase" not in done.stderr


def test_generated_keys_and_tokens_are_accepted(app_config):
    key = run_cli(["secrets", "generate-key"], {}).stdout.strip()
    token = run_cli(["secrets", "generate-token"], {}).stdout.strip()
    assert is_key(key) and len(token) >= 16
    app = create_app({**app_config, "SECRET_KEY": f"{key},{SECRET_KEY}", "ADMIN_TOKEN": token})
    _close(app)


def test_an_old_passphrase_key_is_printed_for_rotating_away_from_it():
    done = subprocess.run([sys.executable, "-m", "core.cli", "secrets", "generate-key",
                           "--from-passphrase"], input="old passphrase\n", capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == key_from_passphrase("old passphrase")
    assert is_key(done.stdout.strip())


# -- the admin token --------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["t", "dev-token", "x" * 15])
def test_admin_tokens_shorter_than_16_characters_are_refused(token, app_config):
    with pytest.raises(ConfigError, match=r"ORDERHOOKS_ADMIN_TOKEN is \d+ characters long"):
        create_app({**app_config, "ADMIN_TOKEN": token})
    _close(create_app({**app_config, "ADMIN_TOKEN": "x" * 16}))
    _close(create_app({**app_config, "ADMIN_TOKEN": ""}))  # unset: the admin API stays closed


def test_a_short_admin_token_stops_the_command_with_one_line(tmp_path):
    done = run_cli(["worker", "--once"], {"ORDERHOOKS_ADMIN_TOKEN": "dev-token",
                                          "ORDERHOOKS_SECRET_KEY": SECRET_KEY,
                                          "ORDERHOOKS_INSTANCE_PATH": str(tmp_path)})
    line = one_line_error(done)
    assert "ORDERHOOKS_ADMIN_TOKEN is 9 characters long; use at least 16" in line
    assert "dev-token" not in line


# -- rotation ---------------------------------------------------------------------------------

def test_rotate_with_a_wrong_key_says_so_and_changes_nothing(bc, app, app_config):
    channel = bc.create()
    with app.extensions["orderhooks.db"].Session() as session:
        before = session.get(SalesChannel, channel["id"]).credentials_sealed
    env = {"ORDERHOOKS_DATABASE_URL": app_config["DATABASE_URL"],
           "ORDERHOOKS_SECRET_KEY": OTHER_KEY, "ORDERHOOKS_LOG_LEVEL": "ERROR"}
    result = CliRunner().invoke(main, ["secrets", "rotate"], env=env)
    assert result.exit_code == 1, result.output
    assert (f"Error: channel {channel['id']}: cannot decrypt: ORDERHOOKS_SECRET_KEY does not "
            f"hold the key") in result.output
    assert "nothing was changed" in result.output
    with app.extensions["orderhooks.db"].Session() as session:
        assert session.get(SalesChannel, channel["id"]).credentials_sealed == before
    # With the old key after the new one, rotation goes through and the new key alone opens.
    env["ORDERHOOKS_SECRET_KEY"] = f"{OTHER_KEY},{SECRET_KEY}"
    result = CliRunner().invoke(main, ["secrets", "rotate"], env=env)
    assert result.exit_code == 0, result.output
    rotated = create_app({**app_config, "SECRET_KEY": OTHER_KEY})
    assert channel_view(rotated, channel["id"]).credentials["store_hash"]
    _close(rotated)


# -- the README's first command, on a fresh machine ---------------------------------------------

def test_the_readme_first_command_starts_on_a_fresh_instance(tmp_path):
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(pip install -e \. && .*orderhooks serve)\n```", readme).group(1)
    settings = dict(re.findall(r"(ORDERHOOKS_[A-Z_]+)=(\S+)", first))
    assert "ORDERHOOKS_SECRET_KEY" not in settings and "ORDERHOOKS_DATABASE_URL" not in settings
    token = settings["ORDERHOOKS_ADMIN_TOKEN"]
    assert f'T="Authorization: Bearer {token}"' in readme  # the walkthrough's token is the same
    instance, port = tmp_path / "instance", free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERHOOKS_")}
    env = {**clean, **settings, "ORDERHOOKS_INSTANCE_PATH": str(instance),
           "ORDERHOOKS_WEB_WORKERS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--bind",
                             f"127.0.0.1:{port}"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is not None or _answers(f"{url}/healthz"), 60,
                 what="orderhooks serve")
        assert proc.poll() is None, proc.communicate()[1]
        answer = requests.get(f"{url}/api/v1/channels", timeout=5,
                              headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    assert stat.S_IMODE((instance / "secret.key").stat().st_mode) == 0o600
    assert (instance / "orderhooks.db").exists()
    assert err.count("config.secret_key_generated") == 1, err


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False
