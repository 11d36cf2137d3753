"""gunicorn settings for orderhooks (``orderhooks web`` / ``orderhooks serve``)."""
import multiprocessing
import os

bind = os.environ.get("ORDERHOOKS_BIND", "127.0.0.1:8000")
# Threaded workers: a process's threads share one intake transaction at a time (group commit,
# see core/intake.py), and keep-alive connections are kept (sync workers close each one).
workers = int(os.environ.get("ORDERHOOKS_WEB_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("ORDERHOOKS_WEB_THREADS", 8))
worker_class = "core.gunicorn_ext.ThreadWorker"  # gthread, balanced (see there)
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
                # no access log (as before): the app logs what matters, with delivery ids
                "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"],
                                    "propagate": False, "qualname": "gunicorn.access"}},
}


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
