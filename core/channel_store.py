"""Sales channels: creating, editing and deactivating them (with an edit history), and the view
plugins get."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import alerts, events, mail, statuses
from . import webhooks as hooks
from .adapters import Channel
from .crypto import Box
from .models import ChannelChange, SalesChannel, Subscription

#: Settings whose changes are recorded in the edit history (credentials: only that they changed).
TRACKED = ("name", "active", "valid_cancellation_statuses", "valid_fulfillment_statuses",
           "alert_emails", "webhooks", "import_test_orders", "refund_restock_actions")
#: Most addresses a channel's alert mails go to (besides ORDERHOOKS_ALERT_EMAILS).
ALERT_EMAILS_MAX = 20


def webhook_url(base_url: str, channel_type: str, channel_id: int) -> str:
    return f"{base_url.rstrip('/')}/webhooks/{channel_type}/{channel_id}"


def view(row: SalesChannel, box: Box, base_url: str) -> Channel:
    """The plain, decrypted view of a channel that plugins receive."""
    return Channel(
        id=row.id, type=row.type, name=row.name, active=row.active,
        credentials=box.open(row.credentials_sealed),
        webhook_secret=box.open(row.webhook_secret_sealed),
        webhook_url=webhook_url(base_url, row.type, row.id),
        valid_cancellation_statuses=tuple(row.valid_cancellation_statuses or ()),
        valid_fulfillment_statuses=tuple(row.valid_fulfillment_statuses or ()),
        webhooks=tuple(row.webhooks) if row.webhooks is not None else None,
        import_test_orders=bool(row.import_test_orders),
        refund_restock_actions=bool(row.refund_restock_actions),
    )


def enabled_webhooks(row: SalesChannel) -> tuple[str, ...]:
    """The webhooks the channel uses (its choice, or what its status lists imply)."""
    return hooks.effective(row.webhooks, row.valid_cancellation_statuses,
                           row.valid_fulfillment_statuses)


def create(session: Session, box: Box, *, type: str, name: str, credentials: dict,
           valid_cancellation_statuses=(), valid_fulfillment_statuses=(),
           active: bool = True, actor: str = "admin-api", alert_emails=(), webhooks=None,
           import_test_orders: bool = False,
           refund_restock_actions: bool = False) -> SalesChannel:
    row = SalesChannel(
        type=type, name=name, active=active,
        credentials_sealed=box.seal(credentials),
        webhook_secret_sealed=box.seal(secrets.token_urlsafe(32)),
        valid_cancellation_statuses=statuses.check_selection(valid_cancellation_statuses,
                                                             "cancellation"),
        valid_fulfillment_statuses=statuses.check_selection(valid_fulfillment_statuses,
                                                            "fulfillment"),
        alert_emails=check_alert_emails(alert_emails),
        webhooks=hooks.check_selection(webhooks) if webhooks is not None else None,
        import_test_orders=bool(import_test_orders),
        refund_restock_actions=bool(refund_restock_actions))
    session.add(row)
    session.flush()
    session.add(ChannelChange(channel_id=row.id, field="created", old_value=None,
                              new_value={f: _value(row, f) for f in TRACKED}, actor=actor))
    return row


def update(session: Session, box: Box, row: SalesChannel, changes: dict,
           actor: str = "admin-api", renew_webhook_secret: bool = False) -> list[ChannelChange]:
    """Apply ``changes`` (name, active, credentials, status lists); record each real change.
    ``renew_webhook_secret``: the channel's API moved, so it gets a new webhook secret — the old
    one went to the old destination inside its hooks, and must not authenticate deliveries for
    the new one."""
    recorded = []
    if "valid_cancellation_statuses" in changes:
        changes["valid_cancellation_statuses"] = statuses.check_selection(
            changes["valid_cancellation_statuses"], "cancellation")
    if "valid_fulfillment_statuses" in changes:
        changes["valid_fulfillment_statuses"] = statuses.check_selection(
            changes["valid_fulfillment_statuses"], "fulfillment")
    if "alert_emails" in changes:
        changes["alert_emails"] = check_alert_emails(changes["alert_emails"])
    if changes.get("webhooks") is not None:
        changes["webhooks"] = hooks.check_selection(changes["webhooks"])
    for field in TRACKED:
        if field in changes and changes[field] != _value(row, field):
            recorded.append(ChannelChange(channel_id=row.id, field=field,
                                          old_value=_value(row, field), new_value=changes[field],
                                          actor=actor))
            setattr(row, field, changes[field])
            if field == "active" and changes[field] is False:
                _emit_deactivated(session, row, f"deactivated by {actor}", actor)
    if "credentials" in changes:
        current = box.open(row.credentials_sealed)
        merged = {**current, **changes["credentials"]}
        if merged != current:
            row.credentials_sealed = box.seal(merged)
            changed = sorted(k for k in merged if merged.get(k) != current.get(k))
            if renew_webhook_secret:
                row.webhook_secret_sealed = box.seal(secrets.token_urlsafe(32))
                changed.append("webhook_secret (renewed)")
            # Never the values: only which credential fields changed.
            recorded.append(ChannelChange(channel_id=row.id, field="credentials",
                                          old_value=None, new_value={"changed": changed},
                                          actor=actor))
    session.add_all(recorded)
    return recorded


def deactivate(session: Session, row: SalesChannel, reason: str) -> str:
    """Deactivate a channel whose credentials are dead (its plugin said so) and forget its
    subscriptions; no API call is made. Returns the reason the delivery records."""
    if row.active:
        row.active = False
        session.add(ChannelChange(channel_id=row.id, field="active", old_value=True,
                                  new_value=False, actor="channel"))
        _emit_deactivated(session, row, reason, "channel")
        alerts.channel_deactivated(session, row.id, reason)
    for sub in session.scalars(select(Subscription).where(Subscription.channel_id == row.id)):
        session.delete(sub)
    return f"channel deactivated: {reason}"


def check_alert_emails(addresses) -> list[str]:
    """The channel's alert recipients, each a plain mail address, without repeats; ValueError
    naming the first that is not."""
    checked = list(dict.fromkeys(mail.check_address(a) for a in addresses or ()))
    if len(checked) > ALERT_EMAILS_MAX:
        raise ValueError(f"alert_emails: at most {ALERT_EMAILS_MAX} addresses "
                         "(ORDERHOOKS_ALERT_EMAILS reaches everyone's alerts)")
    return checked


def _emit_deactivated(session: Session, row: SalesChannel, reason: str, actor: str) -> None:
    events.emit(session, "channel.deactivated",
                {"channel": events.channel_view(row), "reason": reason, "actor": actor},
                channel_id=row.id)


def _value(row: SalesChannel, field: str):
    value = getattr(row, field)
    return list(value) if isinstance(value, (list, tuple)) else value
