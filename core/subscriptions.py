"""Webhook subscriptions: what a channel needs (its settings) against what exists on the channel,
reconciled on demand (channel created or edited) and on a timer (the worker)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sqlalchemy import select

from . import alerts, metrics
from . import events as outbox
from .channel_store import view
from .clock import utcnow
from .errors import ChannelAPIError, RetryLater, SubscriptionError
from .models import SalesChannel, Subscription, SubscriptionEvent

log = logging.getLogger("orderhooks.subscriptions")


class PublicURLMissing(ValueError):
    """ORDERHOOKS_PUBLIC_BASE_URL is not set (or unusable): no subscription may be created,
    checked or rewritten, since every one would point the channel at a guess."""


def public_base_url(config) -> str:
    """The configured public base URL; PublicURLMissing, with one line for the operator, when
    there is none. A default (say http://localhost:8000) would be written into the channels'
    subscriptions as their destination, and their deliveries lost."""
    url = (config.get("PUBLIC_BASE_URL") or "").strip()
    if not url:
        raise PublicURLMissing("ORDERHOOKS_PUBLIC_BASE_URL is not set: set it to the public URL "
                               "channels deliver to (e.g. https://orderhooks.example.com) before "
                               "subscriptions are created, checked or repaired")
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and parts.hostname and parts.port != 0
    except ValueError:
        usable = False
    if not usable or "@" in parts.netloc or parts.query or parts.fragment:
        raise PublicURLMissing("ORDERHOOKS_PUBLIC_BASE_URL must be a plain http(s) URL with a "
                               "host (no user, password, query or fragment)")
    return url


def reconcile(app, channel_id: int) -> list[dict]:
    """Bring the channel's subscriptions in line with its settings. Channel API calls run outside
    any database transaction. Returns what was found and done. Raises PublicURLMissing first when
    ORDERHOOKS_PUBLIC_BASE_URL is not set: nothing is then called or changed."""
    public_base_url(app.config)
    db = app.extensions["orderhooks.db"]
    adapter_for = app.extensions["orderhooks.channel_types"].get
    with db.Session() as session:
        row = session.get(SalesChannel, channel_id)
        if row is None:
            return []
        channel = view(row, app.extensions["orderhooks.box"], app.config["PUBLIC_BASE_URL"])
        rows = session.scalars(select(Subscription).where(
            Subscription.channel_id == channel_id)).all()
        known = {s.topic: s.remote_id for s in rows}
        #: Where we subscribed this channel before (e.g. under an old public base URL).
        our_destinations = {s.destination for s in rows} | {channel.webhook_url}
    adapter = adapter_for(channel.type)
    if adapter is None:
        return [_event(channel, None, "failed", None,
                       f"no plugin provides channel type {channel.type!r}")]
    desired = adapter.desired_subscriptions(channel) if channel.active else []
    if not desired and not known:
        return _record(app, channel, [], {})
    events: list[dict] = []
    current: dict[str, tuple[str | None, str, str | None]] = {}
    try:
        if desired:
            adapter.check_destination(channel.webhook_url)
    except ValueError as exc:  # the plugin's words about our own URL
        return _cannot_check(app, channel, desired, known,
                             f"ORDERHOOKS_PUBLIC_BASE_URL cannot be used: {str(exc)[:300]}")
    try:
        # Ours: at the current webhook URL, or at a destination we recorded when we subscribed
        # (hooks left behind by a change of ORDERHOOKS_PUBLIC_BASE_URL are removed below).
        # Never someone else's, e.g. another deployment using the same app credentials.
        remote = [r for r in adapter.list_subscriptions(channel)
                  if r.destination in our_destinations]
    except Exception as exc:  # noqa: BLE001 — recorded and retried by the next check
        return _cannot_check(app, channel, desired, known, _reason(exc, channel))
    wanted = {spec.topic: spec for spec in desired}
    for topic, spec in wanted.items():
        matches = [r for r in remote
                   if r.topic == topic and r.destination == channel.webhook_url]
        try:
            if not matches:
                created = adapter.create_subscription(channel, spec)
                # recreated: it existed on the channel (a remote id was known) and disappeared
                action = "recreated" if known.get(topic) else "created"
                events.append(_event(channel, topic, action, created.remote_id,
                                     f"subscribed to {topic} at {spec.destination}"
                                     + (" (it had disappeared from the channel)"
                                        if action == "recreated" else "")))
                current[topic] = (created.remote_id, "active", None)
                continue
            keep, extra = matches[0], matches[1:]
            for duplicate in extra:
                adapter.delete_subscription(channel, duplicate)
                events.append(_event(channel, topic, "deleted", duplicate.remote_id,
                                     "duplicate subscription removed"))
            if keep.mismatch:
                # Active and at the right place, yet its deliveries would be refused (e.g. a
                # secret header from before a database restore): that is not healthy.
                why = keep.mismatch
                keep = adapter.activate_subscription(channel, keep)
                if keep.mismatch:
                    raise SubscriptionError(f"the repair did not hold: {keep.mismatch}")
                events.append(_event(channel, topic, "repaired", keep.remote_id, why))
            elif not keep.active:
                keep = adapter.activate_subscription(channel, keep)
                events.append(_event(channel, topic, "reactivated", keep.remote_id,
                                     "the channel had deactivated it"))
            else:
                events.append(_event(channel, topic, "ok", keep.remote_id, "active"))
            current[topic] = (keep.remote_id, "active", None)
        except Exception as exc:  # noqa: BLE001
            reason = _reason(exc, channel)
            events.append(_event(channel, topic, "failed", None, reason))
            current[topic] = (known.get(topic), "failed", reason)
    for stale in [r for r in remote
                  if r.topic not in wanted or r.destination != channel.webhook_url]:
        try:
            adapter.delete_subscription(channel, stale)
            why = ("it points at an old public URL " + stale.destination
                   if stale.destination != channel.webhook_url and stale.topic in wanted
                   else "no longer needed by the channel's settings" if channel.active
                   else "the channel is inactive")
            events.append(_event(channel, stale.topic, "deleted", stale.remote_id, why))
        except Exception as exc:  # noqa: BLE001
            reason = _reason(exc, channel)
            events.append(_event(channel, stale.topic, "failed", stale.remote_id,
                                 f"cannot delete: {reason}"))
            current[stale.topic] = (stale.remote_id, "failed", reason)
    return _record(app, channel, events, current)


def _cannot_check(app, channel, desired, known: dict, reason: str) -> list[dict]:
    """Nothing could be checked: every wanted topic is recorded as failed, nothing removed."""
    events = [_event(channel, None, "failed", None, f"cannot check: {reason}")]
    current = {spec.topic: (known.get(spec.topic), "failed", reason) for spec in desired}
    return _record(app, channel, events, current, keep_topics=set(known))


def _reason(exc: Exception, channel) -> str:
    """What a failure is recorded and shown as. Our own errors say what failed in our words
    (plugins keep channels' answers out of them); any other exception may quote a channel's
    answer (a KeyError naming its field, a ValueError quoting its text), so only its type is
    kept, and the log has the rest."""
    if isinstance(exc, (ChannelAPIError, SubscriptionError, RetryLater, PublicURLMissing)):
        return str(exc)[:500]
    log.warning("subscription.unexpected_error", exc_info=exc,
                extra={"channel_id": channel.id})
    return f"unexpected {type(exc).__name__} (details in the log: subscription.unexpected_error)"


def _event(channel, topic, action, remote_id, message) -> dict:
    metrics.SUBSCRIPTION_ACTIONS.labels(channel.type, action).inc()
    if action != "ok":
        log.info("subscription." + action, extra={"channel_id": channel.id, "topic": topic,
                                                 "remote_id": remote_id, "detail": message})
    return {"topic": topic, "action": action, "remote_id": remote_id, "message": message}


def _record(app, channel, events: list[dict], current: dict, keep_topics=frozenset()) -> list:
    db = app.extensions["orderhooks.db"]
    now = utcnow()
    with db.session() as session:
        rows = {s.topic: s for s in session.scalars(
            select(Subscription).where(Subscription.channel_id == channel.id))}
        for topic, row in rows.items():
            if topic not in current and topic not in keep_topics:
                session.delete(row)
        for topic, (remote_id, status, error) in current.items():
            row = rows.get(topic)
            if row is None:
                row = Subscription(channel_id=channel.id, topic=topic,
                                   destination=channel.webhook_url)
                session.add(row)
            was = row.status if topic in rows else None
            row.remote_id, row.status, row.last_error = remote_id, status, error
            row.destination = channel.webhook_url
            row.last_checked_at = now
            row.last_action = next((e["action"] for e in reversed(events)
                                    if e["topic"] == topic), row.last_action)
            _publish(session, row, was, {e["action"] for e in events if e["topic"] == topic})
        for event in events:
            if event["action"] != "ok":
                session.add(SubscriptionEvent(channel_id=channel.id, topic=event["topic"],
                                              action=event["action"],
                                              remote_id=event["remote_id"],
                                              message=event["message"][:2000]))
        # One summary per check (not one per hook), when it is news: core.alerts says when.
        alerts.subscription_checked(session, channel.id, events, current)
    return events


#: Actions of a check that mended a subscription the channel had lost, disabled or broken.
REPAIRS = {"recreated", "reactivated", "repaired"}


def _publish(session, row: Subscription, was: str | None, actions: set[str]) -> None:
    """One event per change of health, not one per check: ``subscription.failed`` when a
    subscription becomes failed, ``subscription.repaired`` when a failed one works again or a
    check mended one."""
    if row.status == "failed" and was != "failed":
        outbox.emit(session, "subscription.failed", {"subscription": outbox.subscription_view(row)},
                    channel_id=row.channel_id)
    elif row.status == "active" and (was == "failed" or actions & REPAIRS):
        outbox.emit(session, "subscription.repaired",
                    {"subscription": outbox.subscription_view(row)}, channel_id=row.channel_id)


def check_all(app) -> dict[int, list[dict]]:
    """The periodic check: every active channel, and inactive ones still holding subscriptions.
    Without ORDERHOOKS_PUBLIC_BASE_URL it checks nothing and logs why, once per round."""
    try:
        public_base_url(app.config)
    except PublicURLMissing as exc:
        log.warning("subscription.check_skipped", extra={"detail": str(exc)})
        return {}
    db = app.extensions["orderhooks.db"]
    with db.Session() as session:
        ids = set(session.scalars(select(SalesChannel.id).where(SalesChannel.active.is_(True))))
        ids |= set(session.scalars(select(Subscription.channel_id)))
    results = {}
    for channel_id in sorted(ids):
        try:
            results[channel_id] = reconcile(app, channel_id)
        except Exception:  # noqa: BLE001 — one channel's failure must not stop the others
            log.exception("subscription.check_failed", extra={"channel_id": channel_id})
    return results
