"""gunicorn settings for orderhooks (``orderhooks web`` / ``orderhooks serve``)."""
import multiprocessing
import os
import re
import tempfile

bind = os.environ.get("ORDERHOOKS_BIND", "127.0.0.1:8000")
# Threaded workers: a process's threads share one intake transaction at a time (group commit,
# see core/inbox.py), and keep-alive connections are kept (sync workers close each one).
# The orderhooks command has checked these settings (core/config.py) before gunicorn starts.
workers = int(os.environ.get("ORDERHOOKS_WEB_WORKERS") or 0) or multiprocessing.cpu_count()
threads = int(os.environ.get("ORDERHOOKS_WEB_THREADS") or 8)
# gthread, balanced, and a thread gets a request only once it has arrived whole (see there).
worker_class = "core.gunicorn_ext.ThreadWorker"
# Connections a process holds, slow or not (each costs a socket and the bytes of its request).
worker_connections = 1000
# No access log, and no per-request work for one (gunicorn formats its atoms otherwise).
logger_class = "core.gunicorn_ext.GunicornLogger"
# Webhook senders give us seconds, not minutes.
timeout = 30
graceful_timeout = 30
keepalive = 5
# Bounded request line and headers; the body cap is the app's (ORDERHOOKS_MAX_BODY_BYTES).
limit_request_line = 8190
limit_request_fields = 100
accesslog = None
errorlog = "-"
# gunicorn's own lines are JSON too, like the app's: one object per line on stderr.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False,
                                   "qualname": "gunicorn.error"},
                # no access log: the app logs what matters, with delivery ids
                "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"],
                                    "propagate": False, "qualname": "gunicorn.access"}},
}


def when_ready(server):
    """Each gunicorn instance gets a control socket of its own (gunicorn's default path is one per
    user, so a second instance took it over and stopping either removed it): the path named by
    ORDERHOOKS_CONTROL_SOCKET, else one per listening address (the bound one: port 0 included)
    in the user's runtime directory. gunicorn opens it after this hook."""
    path = os.environ.get("ORDERHOOKS_CONTROL_SOCKET")
    if not path:
        runtime = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
            tempfile.gettempdir(), f"orderhooks-{os.getuid()}")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        listening = "+".join(str(listener) for listener in server.LISTENERS)
        address = re.sub(r"[^A-Za-z0-9.]+", "_", listening.replace("http://", "")).strip("_")
        path = os.path.join(runtime, f"orderhooks-web-{address}.ctl")
    server.cfg.set("control_socket", path)


def post_worker_init(worker):
    """One line when a process has loaded the application and takes requests: what a supervisor
    or a test waits on (a process's boot takes seconds, more on a busy machine)."""
    worker.log.info("web.worker_ready pid=%s", worker.pid)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
