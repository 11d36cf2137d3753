"""The ``orderhooks`` command for operators: a configuration mistake is one line on stderr that
names the variable and the fix (never a traceback); options Flask's CLI would add and a ``.env``
file mean nothing here; wrong arguments are refused."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from core.cli import main
from core.db import Database
from core.testing import SECRET_KEY
from tests.test_secret_key import UNREACHABLE_POSTGRES, one_line_error, run_cli


@pytest.fixture
def migrated(tmp_path) -> dict:
    """Settings of a valid instance: a migrated SQLite database and a key."""
    url = f"sqlite:///{tmp_path / 'orderhooks.db'}"
    database = Database(url)
    database.upgrade()
    database.dispose()
    return {"ORDERHOOKS_DATABASE_URL": url, "ORDERHOOKS_SECRET_KEY": SECRET_KEY,
            "ORDERHOOKS_INSTANCE_PATH": str(tmp_path / "instance")}


@pytest.mark.parametrize("variable, value, expected", [
    ("MAX_ATTEMPTS", "eight", "ORDERHOOKS_MAX_ATTEMPTS='eight' is not a whole number; set it"),
    ("RETRY_BASE_SECONDS", "30s", "ORDERHOOKS_RETRY_BASE_SECONDS='30s' is not a number"),
    ("STRICT_PLUGINS", "maybe", "ORDERHOOKS_STRICT_PLUGINS='maybe' is not true or false"),
    ("WORKER_BATCH", "0", "ORDERHOOKS_WORKER_BATCH=0 must be above 0"),
    ("RETENTION_DAYS", "-1", "ORDERHOOKS_RETENTION_DAYS=-1 must not be negative"),
    ("LOG_LEVEL", "LOUD", "ORDERHOOKS_LOG_LEVEL='LOUD' is not one of DEBUG, INFO"),
    ("SQLITE_SYNCHRONOUS", "FULL; DROP TABLE x", "ORDERHOOKS_SQLITE_SYNCHRONOUS="),
    ("WEB_WORKERS", "four", "ORDERHOOKS_WEB_WORKERS='four' is not a whole number"),
    ("WEB_THREADS", "0", "ORDERHOOKS_WEB_THREADS=0 must be above 0"),
    ("WEB_REQUEST_SECONDS", "soon", "ORDERHOOKS_WEB_REQUEST_SECONDS='soon' is not a number"),
    ("WEBHOOK_RETRY_SCHEDULE", "5,5m", "ORDERHOOKS_WEBHOOK_RETRY_SCHEDULE: '5m' is not a number"),
    ("WEBHOOK_SENDERS", "0", "ORDERHOOKS_WEBHOOK_SENDERS=0 must be above 0"),
    ("ALLOWED_WEBHOOK_URLS", "ftp://x", "ORDERHOOKS_ALLOWED_WEBHOOK_URLS: an entry must be"),
])
def test_a_wrong_setting_is_one_line_naming_it(variable, value, expected, migrated):
    done = run_cli(["worker", "--once"], {**migrated, f"ORDERHOOKS_{variable}": value})
    assert expected in one_line_error(done)


@pytest.mark.parametrize("url, expected", [
    ("not a url", "ORDERHOOKS_DATABASE_URL is not a database URL this installation can open"),
    ("postgres://orderhooks:pw@127.0.0.1/orderhooks",  # SQLAlchemy's dialect is postgresql
     "ORDERHOOKS_DATABASE_URL is not a database URL this installation can open (Can't load "
     "plugin: sqlalchemy.dialects:postgres)"),
    ("postgresql+psycopg://orderhooks:pw@127.0.0.1:1/orderhooks",
     "cannot use the database ORDERHOOKS_DATABASE_URL=postgresql+psycopg://orderhooks:***@"
     "127.0.0.1:1/orderhooks: connection failed"),
])
@pytest.mark.parametrize("command", [["worker", "--once"], ["db", "upgrade"]])
def test_a_wrong_database_url_is_one_line_without_its_password(url, expected, command,
                                                               migrated):
    done = run_cli(command, {**migrated, "ORDERHOOKS_DATABASE_URL": url})
    line = one_line_error(done)
    assert expected in line and ":pw@" not in line


@pytest.mark.parametrize("command", [["worker", "--once"], ["web"], ["deliveries", "purge"],
                                     ["secrets", "rotate"]])
def test_an_unmigrated_database_says_to_migrate(command, migrated, tmp_path):
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = run_cli(command, {**migrated, "ORDERHOOKS_DATABASE_URL": fresh})
    line = one_line_error(done)
    assert "(ORDERHOOKS_DATABASE_URL) has no orderhooks schema" in line
    assert "run `orderhooks db upgrade`" in line


def test_a_database_behind_the_code_says_to_migrate(migrated):
    database = Database(migrated["ORDERHOOKS_DATABASE_URL"])
    with database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    database.dispose()
    line = one_line_error(run_cli(["worker", "--once"], migrated))
    assert "is at schema revision 0001, this orderhooks needs" in line
    assert "run `orderhooks db upgrade`" in line


def test_a_valid_instance_runs(migrated):
    done = run_cli(["worker", "--once"], migrated)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["processed 0 deliveries",
                                                "made 0 outbound webhook attempts"]


# -- the command line itself --------------------------------------------------------------------

def test_version():
    done = run_cli(["--version"], {})
    assert done.returncode == 0
    name, version = done.stdout.split()
    assert name == "orderhooks" and version[0].isdigit()


@pytest.mark.parametrize("option", [["--app", "wsgi"], ["--debug"], ["-e", ".env"],
                                    ["--env-file", ".env"]])
def test_flask_options_that_mean_nothing_here_are_unknown(option):
    result = CliRunner().invoke(main, [*option, "plugins"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_a_dotenv_file_is_not_read(migrated, tmp_path):
    (tmp_path / ".env").write_text("ORDERHOOKS_MAX_ATTEMPTS=eight\nFLASK_DEBUG=1\n")
    (tmp_path / ".flaskenv").write_text("ORDERHOOKS_MAX_ATTEMPTS=eight\n")
    done = run_cli(["worker", "--once"], migrated, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_purge_refuses_negative_days(app, app_config):
    result = app.test_cli_runner().invoke(main, ["deliveries", "purge", "--days", "-1"])
    assert result.exit_code == 2
    assert "Invalid value for '--days': -1 is not in the range x>=0" in result.output


def test_checking_a_missing_channel_fails(app):
    result = app.test_cli_runner().invoke(main, ["subscriptions", "check", "--channel", "99"])
    assert result.exit_code == 1
    assert "Error: there is no channel 99" in result.output


def test_postgresql_needs_its_own_key():
    done = run_cli(["worker", "--once"], {"ORDERHOOKS_DATABASE_URL": UNREACHABLE_POSTGRES})
    assert one_line_error(done).startswith("Error: ORDERHOOKS_SECRET_KEY is not set")
