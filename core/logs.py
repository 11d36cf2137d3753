"""Structured logs: one JSON object per line, with a stable event name and the context."""
from __future__ import annotations

import json
import logging
import sys
import time

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: Never logged, whatever a caller passes.
_SECRET_KEYS = {"credentials", "access_token", "client_secret", "password", "token", "secret",
                "authorization"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the ``extra`` fields.
    Built for the hot path (a line per stored delivery): no pass over the record beyond its
    own fields, the time's seconds formatted once per second."""

    _second, _prefix = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self._time(record.created),
                 "level": _LEVELS.get(record.levelno) or record.levelname.lower(),
                 "logger": record.name,
                 "event": record.getMessage() if record.args else str(record.msg)}
        if not record.name.startswith("orderhooks"):
            # Other libraries' lines (gunicorn's...): the logger names the event, the text is
            # the message — event names stay a small, stable set.
            entry["event"], entry["message"] = record.name, record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":
                entry[key] = "[redacted]" if key.lower() in _SECRET_KEYS else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson, because json.dumps builds an encoder on every call once given a ``default``
        # (docs/performance.md, "Measured choices on the hot paths", has the figure).
        # Anything it cannot write natively (a Decimal, a set...) becomes str().
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:
            # What orjson refuses (a lone surrogate from outside input, an integer beyond 64
            # bits...): the standard library writes it (escaped) as ever.
            return json.dumps(entry, default=str)

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1e6):06d}+00:00"


_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
           logging.ERROR: "error", logging.CRITICAL: "critical"}


def configure(level: str = "INFO") -> None:
    # No line carries the caller's file and line, so skip the stack walk that finds them for
    # every record (the logging documentation's own optimisation).
    logging._srcfile = None
    # Nor the thread name, process name and pid (nothing prints them: the formatter writes the
    # record's own fields): the logging HOWTO's "Optimization" flags, a third of a record's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger("orderhooks")
    if not any(getattr(h, "_orderhooks", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._orderhooks = True
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())
