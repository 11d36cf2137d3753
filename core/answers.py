"""What every answer of the service shares, whether the webhook edge (plain WSGI) or Flask gives
it: the security headers, the error body, and the two answers for failures on our side."""
from __future__ import annotations

#: On every response: nothing here is meant to be framed, sniffed, cached or run as a page.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'"))

#: How long a client should wait before sending again after a 503.
RETRY_AFTER_SECONDS = 30


def error_body(code: str, message: str) -> dict:
    """The body of every error: a code a program can test and a message a person can act on."""
    return {"error": code, "message": message}


def database_unavailable(message: str = "the database is unavailable; try again shortly"):
    """``(status, body, headers)`` when the database cannot be reached: 503 with Retry-After, so
    the client (a channel's webhook sender, an admin script) retries instead of giving up."""
    return (503, error_body("database_unavailable", message),
            (("Retry-After", str(RETRY_AFTER_SECONDS)),))


def internal_error():
    """``(status, body, headers)`` for a failure we did not foresee: never a stack trace or SQL
    to the client (the log has them)."""
    return 500, error_body("internal_error",
                           "something went wrong on our side; it has been logged"), ()
