"""Sending one mail through the server ORDERHOOKS_SMTP_URL names (smtplib, standard library).

``smtp://user:password@host:587`` talks plain SMTP and upgrades with STARTTLS; ``smtps://`` is
TLS from the first byte (port 465). Certificates are verified against the system's CAs. A
password is only ever sent inside TLS: a server that offers no STARTTLS gets the mail without
login when the URL has no credentials (a relay on the same host), and is refused otherwise.

Every failure is raised as :class:`MailError`, whose text names the server by host and port
only: the URL's credentials never reach an error, a log line or an answer.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
import email.policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
#: Headers stay on one line up to SMTP's limit: the standard library folds a long subject
#: before its first word, which some readers show as a leading space.
POLICY = email.policy.default.clone(max_line_length=998)


class MailError(Exception):
    """The server could not be reached, refused the mail or timed out: try again later."""


@dataclass(frozen=True)
class Server:
    scheme: str
    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    timeout: float = 10.0

    @property
    def where(self) -> str:
        """How errors and logs name the server: never with its credentials."""
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_url(url: str, timeout: float = 10.0) -> Server:
    """The server an ``smtp://`` or ``smtps://`` URL names; ValueError (without the URL, which
    may hold a password) when it names none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a URL: use smtp://user:password@host:587 or "
                         "smtps://user:password@host:465") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("use smtp://user:password@host:587 (STARTTLS) or "
                         "smtps://user:password@host:465 (TLS); the user and password may be "
                         "left out for a server that needs no login")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the URL takes no path, query or fragment: only "
                         "scheme://user:password@host:port")
    return Server(scheme=parts.scheme, host=parts.hostname,
                  port=port or DEFAULT_PORTS[parts.scheme],
                  username=unquote(parts.username or ""), password=unquote(parts.password or ""),
                  timeout=timeout)


def check_address(address: str) -> str:
    """``address`` if it is one plain mail address (``name@host``); ValueError otherwise."""
    address = address.strip()
    name, parsed = parseaddr(address)
    if (not parsed or parsed != address or name or parsed.count("@") != 1
            or not all(parsed.split("@")) or any(c.isspace() for c in parsed)
            or any(c in parsed for c in ",;<>\"'")):
        raise ValueError(f"{address!r} is not a mail address (name@example.com)")
    return parsed


def message(sender: str, recipients: list[str], subject: str, body: str) -> EmailMessage:
    mail = EmailMessage(policy=POLICY)
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail.set_content(body)
    return mail


def send(server: Server, mail: EmailMessage) -> None:
    """Deliver ``mail`` to the server, each exchange bounded by ``server.timeout``; raises
    MailError saying what failed."""
    context = ssl.create_default_context()
    try:
        if server.scheme == "smtps":
            connection = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout,
                                          context=context)
        else:
            connection = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
        with connection:
            connection.ehlo()
            if server.scheme == "smtp":
                if connection.has_extn("starttls"):
                    connection.starttls(context=context)
                    connection.ehlo()
                elif server.username:
                    raise MailError(f"{server.where} offers no STARTTLS: the password is not "
                                    "sent in the clear (use smtps:// or a server with STARTTLS)")
            if server.username:
                connection.login(server.username, server.password)
            connection.send_message(mail)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{to}: {code} {one_line(text)}" for to, (code, text)
                            in exc.recipients.items())
        raise MailError(f"{server.where} refused the recipients: {refused}") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"{server.where} answered {exc.smtp_code} {one_line(exc.smtp_error)}"
                        ) from None
    except (socket.timeout, TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        # smtplib reports a reply that timed out as a disconnection caused by the timeout.
        if isinstance(exc, smtplib.SMTPServerDisconnected) and not isinstance(
                exc.__context__, (socket.timeout, TimeoutError)):
            raise MailError(f"{server.where} closed the connection: {one_line(str(exc))}"
                            ) from None
        raise MailError(f"{server.where} did not answer within {server.timeout:g} s") from None
    except ssl.SSLError as exc:
        raise MailError(f"TLS with {server.where} failed: {exc.reason or exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{server.where}: {type(exc).__name__}: {one_line(str(exc))}") from None


def one_line(value, limit: int = 300) -> str:
    """A server's answer, an error or a subject as one line of at most ``limit`` characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:limit]
