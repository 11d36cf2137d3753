"""The ``orderhooks`` command."""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import ScriptInfo

from . import create_app
from .config import ConfigError

GUNICORN_CONFIG = Path(__file__).with_name("gunicorn_conf.py")

#: Commands that need no migrated database: ``serve`` and ``db upgrade`` migrate it themselves,
#: ``plugins`` reads no table. Every other command that opens the app first checks that the
#: database answers and is at the newest revision.
_NO_SCHEMA_CHECK = {"serve", "upgrade", "plugins"}


class _Group(click.Group):
    """A configuration mistake ends the command with one line naming the variable and the fix
    (``Error: ...`` on stderr, exit status 1), not a traceback."""

    def invoke(self, ctx):
        from .plugins import PluginError
        try:
            return super().invoke(ctx)
        except (ConfigError, PluginError) as exc:
            raise click.ClickException(str(exc)) from None


# A plain click group rather than Flask's: none of flask's options (--app, --debug, --env-file)
# mean anything here, and no .env file is read behind the operator's back.
@click.group(cls=_Group)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
              help="Show the version and exit.")
def main():
    """orderhooks: keep routed orders in step with their sales channels."""


def _print_version(ctx) -> None:
    """The installed distribution's version; in a checkout that is not installed, setup.cfg's."""
    from importlib import metadata
    try:
        version = metadata.version("orderhooks")
    except metadata.PackageNotFoundError:
        import configparser
        setup = configparser.ConfigParser()
        setup.read(Path(__file__).parent.parent / "setup.cfg")
        version = setup.get("metadata", "version", fallback="unknown")
    click.echo(f"orderhooks {version}")
    ctx.exit()


def with_appcontext(f):
    """Run the command inside the app's context: the app made from ``ORDERHOOKS_*``, or the
    one a test's ``app.test_cli_runner()`` passes; then check its database (see
    ``_NO_SCHEMA_CHECK``)."""
    @click.pass_context
    def command(ctx, /, *args, **kwargs):
        info = ctx.find_object(ScriptInfo)
        app = info.load_app() if info is not None else create_app()
        from sqlalchemy.exc import InterfaceError, OperationalError
        database = app.extensions["orderhooks.db"]
        with app.app_context():
            try:
                if ctx.command.name not in _NO_SCHEMA_CHECK:
                    _check_database(database)
                return ctx.invoke(f, *args, **kwargs)
            except (OperationalError, InterfaceError) as exc:  # cannot connect, or lost it
                reason = str(exc.orig or exc).strip().splitlines()[0]
                raise ConfigError(f"cannot use the database ORDERHOOKS_DATABASE_URL="
                                  f"{_safe_url(database.url)}: {reason}; check the URL and that "
                                  f"the server is running") from None
    return functools.update_wrapper(command, f)


def _check_database(database) -> None:
    url = _safe_url(database.url)
    current, newest = database.revision(), database.newest_revision()
    if current is None:
        raise ConfigError(f"the database {url} (ORDERHOOKS_DATABASE_URL) has no orderhooks "
                          f"schema: run `orderhooks db upgrade` first")
    if current != newest:
        raise ConfigError(f"the database {url} (ORDERHOOKS_DATABASE_URL) is at schema revision "
                          f"{current}, this orderhooks needs {newest}: run "
                          f"`orderhooks db upgrade` first")


def _db():
    return current_app.extensions["orderhooks.db"]


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@with_appcontext
def db_upgrade():
    """Create or migrate the database schema to the newest revision."""
    _db().upgrade()
    click.echo(f"database at newest revision ({_safe_url(current_app.config['DATABASE_URL'])})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)


def _gunicorn_cmd(bind: str, workers: int | None, threads: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "--bind", bind]
    if workers:
        cmd += ["--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd + ["core:create_app()"]


def _metrics_dir(env: dict) -> None:
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orderhooks-metrics-")


def _web_options(command):
    """The options ``web`` and ``serve`` share; each also reads its environment variable."""
    options = [
        click.option("--bind", envvar="ORDERHOOKS_BIND", default="127.0.0.1:8000",
                     show_default=True, show_envvar=True, help="HOST:PORT (or unix:PATH)"),
        click.option("--workers", type=int, default=None,
                     help="gunicorn worker processes (default: ORDERHOOKS_WEB_WORKERS, else one "
                          "per core)"),
        click.option("--threads", type=int, default=None,
                     help="threads per worker process (default: ORDERHOOKS_WEB_THREADS, else 8)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refuse_taken(bind: str) -> None:
    """Exit with one line when ``bind`` cannot be listened on, before anything starts."""
    import socket
    if bind.startswith(("unix:", "fd://")):
        return
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind((host, int(port)))
    except ValueError:
        raise click.UsageError(f"--bind {bind!r} is not HOST:PORT") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {bind}: {exc.strerror}; stop what is using it (another orderhooks "
            f"serve/web?) or choose another address with --bind or ORDERHOOKS_BIND") from None


@main.command()
@_web_options
@with_appcontext
def web(bind, workers, threads):
    """Start the web service (gunicorn) alone."""
    _refuse_taken(bind)
    env = dict(os.environ)
    _metrics_dir(env)
    os.chdir(Path(__file__).parent.parent)
    os.execvpe(sys.executable, _gunicorn_cmd(bind, workers, threads), env)


def _metrics_bind_option(envvar: str):
    return click.option("--metrics-bind", envvar=envvar, default=None, show_envvar=True,
                        help="HOST:PORT to serve this process's /metrics on (a process that "
                             "shares no PROMETHEUS_MULTIPROC_DIR with a web process has no "
                             "other)")


def _until_signalled(stopping) -> None:
    """SIGTERM or SIGINT sets ``stopping``: the loops end after their current step."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())


def _long_run(metrics_bind) -> None:
    from . import metrics
    from .tuning import tune_for_long_run
    if metrics_bind:
        _refuse_taken(metrics_bind)
        metrics.serve(metrics_bind)
    tune_for_long_run(current_app._get_current_object())


@main.command()
@click.option("--once", is_flag=True, help="Process what is due, then exit.")
@click.option("--no-sender", is_flag=True, help="Send no outbound webhooks: an `orderhooks "
              "sender` process does (as `serve` runs it on PostgreSQL).")
@click.option("--standby", is_flag=True, help="Look for work every idle interval instead of "
              "waiting for the inbox's bell: one worker answers a trickle, this one joins when "
              "work waits (as `serve` runs its second and later workers).")
@_metrics_bind_option("ORDERHOOKS_WORKER_METRICS_BIND")
@with_appcontext
def worker(once, no_sender, standby, metrics_bind):
    """Start a worker: processes deliveries, sends outbound webhooks (unless --no-sender), mails
    alerts, checks subscriptions, purges what retention lets go."""
    import threading

    from .sender import Sender
    from .alerts import CLAIM_BATCH, Sender as AlertSender
    from .worker import Worker
    app = current_app._get_current_object()
    w = Worker(app)
    w.standby = standby
    sender = None if no_sender else Sender(app, w.name)
    if once:
        w.housekeeping(force=True)
        click.echo(f"processed {w.run_until_idle()} deliveries")
        alert_sender = AlertSender(app)
        while alert_sender.send_due() == CLAIM_BATCH:  # every alert due now, tried once
            pass
        if sender is not None:
            click.echo(f"made {sender.run_until_idle()} outbound webhook attempts")
        return
    _long_run(metrics_bind)
    _until_signalled(w.stopping)
    if sender is None:
        w.run_forever()
        return
    # The sender shares the worker's stop: a SIGTERM ends both, each after its current step.
    sending = threading.Thread(target=sender.run_forever, args=(w.stopping,),
                               name="orderhooks-sender", daemon=True)
    sending.start()
    w.run_forever()
    sending.join(timeout=app.config["WEBHOOK_TIMEOUT_SECONDS"] + 5)


@main.command("sender")
@_metrics_bind_option("ORDERHOOKS_SENDER_METRICS_BIND")
@with_appcontext
def sender_cmd(metrics_bind):
    """Start the outbound sender alone: POSTs events to the webhook endpoints, woken when a
    worker numbers events. Several may run: a lease gives each endpoint to one at a time."""
    import threading

    from . import owners
    from .sender import Sender
    app = current_app._get_current_object()
    stopping = threading.Event()
    sender = Sender(app, owners.name())
    _long_run(metrics_bind)
    _until_signalled(stopping)
    sender.hear_bell(stopping)
    sender.run_forever(stopping)


def background_processes(config: dict) -> list[tuple[str, list[str]]]:
    """The processes ``serve`` starts beside the web, as (name, argv) each.

    PostgreSQL: ``ORDERHOOKS_WORKER_PROCESSES`` workers (default two: one worker process's
    batches wait on the server's round trips, two overlap them under load), the second and
    later ones ``--standby`` (a trickle is one worker's: two woken at every delivery cost more
    and answer later).
    SQLite: one worker (one writer at a time: a second process only waits for the write lock).
    Both: the sender as a process of its own, so applying deliveries and POSTing events do not
    share one interpreter lock (on SQLite each process then takes its own turn in the writers'
    queue, core/db.py). ``ORDERHOOKS_SENDER_PROCESS=no`` keeps it a thread of the worker;
    figures in docs/performance.md ("Process layout at half rate")."""
    sqlite = config["DATABASE_URL"].startswith("sqlite")
    workers = config["WORKER_PROCESSES"] or (1 if sqlite else 2)
    separate = config["SENDER_PROCESS"]
    separate = True if separate == "" else bool(separate)
    command = [sys.executable, "-m", "core.cli"]
    worker = command + ["worker"] + (["--no-sender"] if separate else [])
    plan = [(f"worker-{n}", worker + (["--standby"] if n > 1 else []))
            for n in range(1, workers + 1)]
    return plan + ([("sender", command + ["sender"])] if separate else [])


@main.command()
@_web_options
@with_appcontext
def serve(bind, workers, threads):
    """Start web, workers and sender together (one box); migrates the database first.
    A worker or sender process that dies is restarted."""
    _refuse_taken(bind)
    _db().upgrade()
    env = dict(os.environ)
    env["ORDERHOOKS_DATABASE_URL"] = current_app.config["DATABASE_URL"]
    for name in ("ORDERHOOKS_WORKER_METRICS_BIND", "ORDERHOOKS_SENDER_METRICS_BIND"):
        env.pop(name, None)  # the web's /metrics has the workers' and the sender's
    _metrics_dir(env)
    root = Path(__file__).parent.parent
    web_proc = subprocess.Popen(_gunicorn_cmd(bind, workers, threads), env=env, cwd=root)
    plan = background_processes(current_app.config)
    running = {name: subprocess.Popen(cmd, env=env, cwd=root) for name, cmd in plan}
    started = ", ".join(f"{name} pid {proc.pid}" for name, proc in running.items())
    click.echo(f"orderhooks serving on http://{bind} (web pid {web_proc.pid}, {started}); "
               f"Ctrl-C stops", err=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:  # Ctrl-C reaches the whole process group: the children stop too
            time.sleep(0.5)
            if web_proc.poll() is not None:
                click.echo(f"web exited with {web_proc.returncode}", err=True)
                break
            for name, cmd in plan:
                if stopping or running[name].poll() is None:
                    continue
                time.sleep(1)
                if stopping:  # it stopped with us (the signal reached the group)
                    break
                click.echo(f"{name} exited with {running[name].returncode}; restarting",
                           err=True)
                running[name] = subprocess.Popen(cmd, env=env, cwd=root)
    finally:
        procs = [*running.values(), web_proc]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.exit(0 if stopping else 1)


@main.group()
def subscriptions():
    """Webhook subscriptions on the channels."""


@subscriptions.command("check")
@click.option("--channel", "channel_id", type=int, default=None, help="Only this channel.")
@with_appcontext
def subscriptions_check(channel_id):
    """Check every channel's subscriptions now and repair them."""
    from .models import SalesChannel
    from .subscriptions import PublicURLMissing, check_all, public_base_url, reconcile
    app = current_app._get_current_object()
    try:
        public_base_url(app.config)
    except PublicURLMissing as exc:
        raise click.ClickException(str(exc)) from None  # one line, exit status 1
    if channel_id is not None:
        with _db().Session() as session:
            if session.get(SalesChannel, channel_id) is None:
                raise click.ClickException(f"there is no channel {channel_id} "
                                           f"(GET /api/v1/channels lists them)")
    results = {channel_id: reconcile(app, channel_id)} if channel_id else check_all(app)
    failed = False
    for cid, events in results.items():
        for event in events:
            failed |= event["action"] == "failed"
            click.echo(f"channel {cid}: {event['action']:<11} {event['topic'] or '-'} "
                       f"{event['message']}")
        if not events:
            click.echo(f"channel {cid}: no subscriptions needed")
    sys.exit(1 if failed else 0)


@main.group()
def deliveries():
    """The inbox."""


@deliveries.command("purge")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="Override ORDERHOOKS_RETENTION_DAYS.")
@with_appcontext
def deliveries_purge(days):
    """Drop raw bodies of processed deliveries older than the retention period."""
    from .retention import purge_bodies
    days = current_app.config["RETENTION_DAYS"] if days is None else days
    click.echo(f"purged {purge_bodies(_db(), days).bodies} delivery bodies older than "
               f"{days} days")


@main.command("purge")
@with_appcontext
def purge_cmd():
    """Purge now all that retention lets go, each after its ORDERHOOKS_*_RETENTION_DAYS:
    delivery bodies, delivered and failed outbound webhook messages with their attempts,
    events every enabled endpoint took, alert mails sent or given up."""
    from .retention import purge
    config = current_app.config
    done = purge(_db(), config)
    click.echo(f"purged {done.summary()} (bodies after {config['RETENTION_DAYS']} days, "
               f"delivered messages after {config['WEBHOOK_RETENTION_DAYS']}, failed ones after "
               f"{config['WEBHOOK_FAILED_RETENTION_DAYS']}, events after "
               f"{config['EVENT_RETENTION_DAYS']}, alerts after "
               f"{config['ALERT_RETENTION_DAYS']})")


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="As JSON (name, version, channel_types, "
              "status, error).")
@with_appcontext
def plugins_cmd(as_json):
    """List channel plugins: version, status (loaded, failed, disabled) and channel types.

    Exits with status 1 when a plugin failed to load."""
    infos = [p.to_dict() for p in current_app.extensions["orderhooks.channel_types"].plugins]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
    elif not infos:
        click.echo("no plugins installed (entry point group 'orderhooks')")
    else:
        rows = [("PLUGIN", "VERSION", "STATUS", "CHANNEL TYPES", "ERROR")] + [
            (p["name"], p["version"] or "-", p["status"], ",".join(p["channel_types"]) or "-",
             p["error"] or "") for p in infos]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    sys.exit(1 if any(p["status"] == "failed" for p in infos) else 0)


@main.group()
def secrets():
    """Keys and tokens: generate them, re-encrypt stored credentials."""


@secrets.command("generate-key")
@click.option("--from-passphrase", is_flag=True,
              help="Print instead the key an old passphrase stood for (read from stdin), to "
                   "list after a new key and rotate away from.")
def secrets_generate_key(from_passphrase):
    """Print a new key for ORDERHOOKS_SECRET_KEY (a Fernet key)."""
    from .crypto import generate_key, key_from_passphrase
    if from_passphrase:
        passphrase = click.get_text_stream("stdin").read().rstrip("\n")
        if not passphrase:
            raise click.ClickException("no passphrase on stdin")
        click.echo(key_from_passphrase(passphrase))
    else:
        click.echo(generate_key())


@secrets.command("generate-token")
def secrets_generate_token():
    """Print a new random ORDERHOOKS_ADMIN_TOKEN (43 characters)."""
    import secrets as random
    click.echo(random.token_urlsafe(32))


@secrets.command("rotate")
@with_appcontext
def secrets_rotate():
    """Re-encrypt credentials with the first key of ORDERHOOKS_SECRET_KEY."""
    from .crypto import WrongKey
    from .models import SalesChannel
    box = current_app.extensions["orderhooks.box"]
    try:
        with _db().session() as session:  # one transaction: all re-encrypted, or none
            rows = session.query(SalesChannel).all()
            for row in rows:
                channel_id = row.id
                row.credentials_sealed = box.rotate(row.credentials_sealed)
                row.webhook_secret_sealed = box.rotate(row.webhook_secret_sealed)
    except WrongKey as exc:
        raise click.ClickException(f"channel {channel_id}: {exc}; nothing was changed") from None
    click.echo(f"re-encrypted the secrets of {len(rows)} channel(s)")


if __name__ == "__main__":
    main()
