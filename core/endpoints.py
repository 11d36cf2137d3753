"""Outbound webhook endpoints: where events are POSTed, their secrets, and the rules their URLs
keep.

A URL follows the rules of every outgoing request (core/http.py): a plain http(s) URL with no
user name, password, query or fragment; https, unless the operator lists it (or a prefix of it)
in ``ORDERHOOKS_ALLOWED_WEBHOOK_URLS``; and redirects are never followed when sending (a 3xx is
a failed attempt), so a signed event goes nowhere the operator did not name.

Secrets are Standard Webhooks secrets (``whsec_`` + base64 of 32 random bytes), stored sealed
(core/crypto.py), shown once: when the endpoint is created and when it is rotated. After a
rotation the previous secret signs too (a second ``v1,`` signature) until its overlap ends, so a
receiver can switch secrets without refusing a single event.
"""
from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete as sql_delete, select
from standardwebhooks.webhooks import Webhook

from . import events
from .clock import utcnow
from .crypto import Box
from .http import APIBaseURLs, origin
from .models import WebhookAttempt, WebhookEndpoint, WebhookMessage

ALLOWANCE = "ORDERHOOKS_ALLOWED_WEBHOOK_URLS"


def check_url(url: str, allowed: str) -> str:
    """``url`` when events may be sent there; ValueError with a message for the operator that
    repeats nothing of the URL but its origin."""
    try:
        return APIBaseURLs(allowed).check(url, own=(url,))
    except ValueError as exc:
        if str(exc).startswith(f"{origin(url)} is not the channel's own API"):
            raise ValueError(f"{origin(url)} is not https: an http endpoint must be listed in "
                             f"{ALLOWANCE}") from None
        raise ValueError(f"the endpoint URL {exc}") from None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create(session, box: Box, *, url: str, description: str = "", event_types=(),
           channel_ids=(), enabled: bool = True) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (to show once). It receives the events written from now
    on: its place in the feed starts at the newest event."""
    secret = new_secret()
    top = events.newest_position(session)
    row = WebhookEndpoint(url=url, description=description, event_types=list(event_types),
                          channel_ids=list(channel_ids), enabled=enabled,
                          secret_sealed=box.seal(secret), position=top)
    session.add(row)
    session.flush()
    return row, secret


def update(row: WebhookEndpoint, changes: dict) -> None:
    for field in ("url", "description", "event_types", "channel_ids"):
        if field in changes:
            setattr(row, field, list(changes[field]) if field.endswith("s") and field != "url"
                    else changes[field])
    if "enabled" in changes and changes["enabled"] != row.enabled:
        row.enabled = changes["enabled"]
        if row.enabled:  # enabled again: a fresh start for the disabling clock
            row.disabled_reason, row.failing_since = None, None


def delete(session, row: WebhookEndpoint) -> None:
    """The endpoint with its messages and attempts (named by id, without foreign keys: see
    core/models.py), in the caller's transaction. The endpoint's row is locked first (a
    sender recording a failure holds it), then the messages are deleted before the attempts:
    a sender recording successes updates the messages first, so this waits for its commit and
    then deletes the attempts it wrote."""
    session.execute(select(WebhookEndpoint.id).where(WebhookEndpoint.id == row.id)
                    .with_for_update())
    for model in (WebhookMessage, WebhookAttempt):
        session.execute(sql_delete(model).where(model.endpoint_id == row.id),
                        execution_options={"synchronize_session": False})
    session.delete(row)


def rotate(row: WebhookEndpoint, box: Box, overlap_seconds: int) -> str:
    """A new secret (returned, to show once); the current one keeps signing for
    ``overlap_seconds``."""
    secret = new_secret()
    row.previous_secret_sealed = box.seal(box.open(row.secret_sealed))
    row.previous_secret_until = utcnow() + timedelta(seconds=overlap_seconds)
    row.secret_sealed = box.seal(secret)
    return secret


def signing_secrets(row: WebhookEndpoint, box: Box, now: datetime) -> list[str]:
    found = [box.open(row.secret_sealed)]
    if row.previous_secret_sealed and row.previous_secret_until and \
            row.previous_secret_until > now:
        found.append(box.open(row.previous_secret_sealed))
    return found


def signers(secrets_: list[str]) -> list[Webhook]:
    """The secrets in use as Standard Webhooks signers, each key decoded once: a sender keeps
    them for the endpoint's every POST."""
    return [Webhook(s) for s in secrets_]


def sign(signers_: list[Webhook], message_id: str, moment: datetime, body: str) -> dict:
    """The Standard Webhooks headers of one POST: one ``v1,`` signature per secret in use
    (:func:`signers`). ``moment`` is naive UTC."""
    signature = " ".join(w.sign(message_id, moment, body) for w in signers_)
    return {"webhook-id": message_id,
            "webhook-timestamp": str(int(moment.replace(tzinfo=timezone.utc).timestamp())),
            "webhook-signature": signature}


def matches(row: WebhookEndpoint, event) -> bool:
    """Whether the endpoint wants ``event`` (empty lists: every type, every channel)."""
    return ((not row.event_types or event.type in row.event_types)
            and (not row.channel_ids or event.channel_id in row.channel_ids))


def view(row: WebhookEndpoint) -> dict:
    """An endpoint as the endpoint.disabled event carries it (never its secret)."""
    return {"id": row.id, "url": row.url, "description": row.description,
            "enabled": row.enabled}
