"""Structured logs: one JSON object per line, with a stable event name and the context."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: Never logged, whatever a caller passes.
_SECRET_KEYS = {"credentials", "access_token", "client_secret", "password", "token", "secret",
                "authorization"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                 "level": record.levelname.lower(), "logger": record.name,
                 "event": record.getMessage()}
        if not record.name.startswith("orderhooks"):
            # Other libraries' lines (gunicorn's...): the logger names the event, the text is
            # the message — event names stay a small, stable set.
            entry["event"], entry["message"] = record.name, record.getMessage()
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = "[redacted]" if key.lower() in _SECRET_KEYS else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    root = logging.getLogger("orderhooks")
    if not any(getattr(h, "_orderhooks", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._orderhooks = True
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())
