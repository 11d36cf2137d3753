"""Email alerts: written to the ``alerts`` table (an outbox) in the transaction of the change
they report, mailed afterwards by the worker's sender thread (docs/alerts.md).

What is mailed:

- ``subscription.check``: a summary of one subscription check of a channel, when the check
  changed something at the channel (created, repaired, removed a hook), when the set of failing
  subscriptions differs from the last summary's, or once a day while the same ones keep
  failing — never one mail per hook, never one per check interval with nothing new;
- ``channel.deactivated``: the channel's plugin said its credentials are dead (app uninstalled);
- ``deliveries.dead``: deliveries gone dead, one mail per channel per
  ORDERHOOKS_ALERT_BATCH_SECONDS;
- anything another module queues with :func:`queue` (e.g. an outbound endpoint disabled).

Without ORDERHOOKS_SMTP_URL, or without a recipient, nothing is written and nothing sent.
"""
from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import mail, metrics
from .clock import utcnow
from .config import ConfigError
from .models import Alert, SalesChannel

log = logging.getLogger("orderhooks.alerts")

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
STATUSES = (PENDING, SENDING, SENT, FAILED)
SUBSCRIPTION_CHECK = "subscription.check"
CHANNEL_DEACTIVATED = "channel.deactivated"
DELIVERIES_DEAD = "deliveries.dead"
ENDPOINT_DISABLED = "endpoint.disabled"
#: A failing set of subscriptions that stays the same is mailed again after this long.
REMIND_SECONDS = 86400
#: Longest wait between two attempts at one alert.
RETRY_MAX_SECONDS = 3600.0
#: Seconds the sender waits when nothing is due.
POLL_SECONDS = 2.0
#: Alerts one sender claims at a time.
CLAIM_BATCH = 10
#: Dead deliveries an alert names by id (the count covers them all).
LISTED_DELIVERIES = 20
#: Where session.info keeps the settings (set on the app's sessions by init_app).
INFO_KEY = "orderhooks.alerts"
SUBJECT_PREFIX = "[orderhooks] "
#: Subscription-check actions that changed something at the channel: always worth a summary.
CHANGES = ("created", "recreated", "reactivated", "repaired", "deleted")


@dataclass(frozen=True)
class Settings:
    server: mail.Server
    sender: str
    recipients: tuple[str, ...]
    batch_seconds: int
    retry_seconds: float
    give_up_seconds: int


def settings_from(config) -> Settings | None:
    """The alert settings, None when no mail server is configured; ConfigError (one line,
    never the URL itself) when one is wrong."""
    recipients = []
    for address in (config.get("ALERT_EMAILS") or "").split(","):
        if address.strip():
            try:
                recipients.append(mail.check_address(address))
            except ValueError as exc:
                raise ConfigError(f"ORDERHOOKS_ALERT_EMAILS: {exc}; give comma-separated "
                                  "addresses") from None
    sender = (config.get("ALERT_FROM") or "").strip()
    if sender:
        try:
            sender = mail.check_address(sender)
        except ValueError as exc:
            raise ConfigError(f"ORDERHOOKS_ALERT_FROM: {exc}") from None
    url = (config.get("SMTP_URL") or "").strip()
    if not url:
        return None
    try:
        server = mail.parse_url(url, float(config.get("SMTP_TIMEOUT_SECONDS", 10.0)))
    except ValueError as exc:
        raise ConfigError(f"ORDERHOOKS_SMTP_URL is not usable: {exc}") from None
    return Settings(server=server, sender=sender or f"orderhooks@{socket.getfqdn()}",
                    recipients=tuple(dict.fromkeys(recipients)),
                    batch_seconds=int(config.get("ALERT_BATCH_SECONDS", 300)),
                    retry_seconds=float(config.get("ALERT_RETRY_SECONDS", 30.0)),
                    give_up_seconds=int(config.get("ALERT_GIVE_UP_SECONDS", 86400)))


def init_app(app) -> Settings | None:
    """Check the settings and hand them to every session of the app's database, so that any
    transaction can queue an alert with nothing but its session."""
    settings = settings_from(app.config)
    app.extensions[INFO_KEY] = settings
    app.extensions["orderhooks.db"].configure_sessions(info={INFO_KEY: settings})
    return settings


# -- writing alerts (in the caller's transaction) -------------------------------------------

def queue(session: Session, kind: str, subject: str, body: str, channel_id: int | None = None,
          details: dict | None = None) -> Alert | None:
    """Write an alert in ``session``'s transaction: it is mailed once that commits (and never if
    it rolls back), to ORDERHOOKS_ALERT_EMAILS and the channel's ``alert_emails``. None, and
    nothing written, when mail is not configured or nobody would receive it."""
    settings = session.info.get(INFO_KEY)
    if settings is None:
        return None
    recipients = _recipients(session, settings, channel_id)
    if not recipients:
        return None
    alert = Alert(kind=kind, channel_id=channel_id, recipients=recipients,
                  subject=_subject(SUBJECT_PREFIX + subject), body=body, details=details,
                  status=PENDING, attempts=0, next_attempt_at=utcnow(), created_at=utcnow())
    session.add(alert)
    return alert


def _subject(text: str) -> str:
    """A subject as a mail header takes it: one line (a channel's name may hold line breaks,
    which would end the header), at most the column's 255 characters."""
    return mail.one_line(text, 255)


def _recipients(session: Session, settings: Settings, channel_id: int | None) -> list[str]:
    found = list(settings.recipients)
    if channel_id is not None:
        channel = session.get(SalesChannel, channel_id)
        found += list((channel.alert_emails or []) if channel is not None else [])
    return list(dict.fromkeys(found))


def _channel_words(session: Session, channel_id: int) -> str:
    channel = session.get(SalesChannel, channel_id)
    name = channel.name if channel is not None else "?"
    kind = channel.type if channel is not None else "?"
    return f"{kind} channel {name!r} (id {channel_id})"


def subscription_checked(session: Session, channel_id: int, events: list[dict],
                         current: dict) -> Alert | None:
    """The summary of one subscription check (``events``: what it found and did, per topic;
    ``current``: topic -> (remote id, status, error) as recorded), if it is news."""
    failing = sorted(topic for topic, (_rid, status, _err) in current.items()
                     if status == "failed")
    changes = [e for e in events if e["action"] in CHANGES]
    last = _last_summary(session, channel_id)
    last_failing = sorted((last.details or {}).get("failing", [])) if last else []
    reminder = bool(failing and last is not None and failing == last_failing
                    and utcnow() - last.created_at >= timedelta(seconds=REMIND_SECONDS))
    if not changes and failing == last_failing and not reminder:
        return None
    words = _channel_words(session, channel_id)
    healthy = sorted(t for t, (_r, status, _e) in current.items() if status != "failed")
    if failing:
        subject = (f"Subscriptions of {words}: {len(failing)} failing"
                   + (" (still)" if reminder else ""))
    elif not healthy:  # the channel was deactivated or deleted, or needs no hooks any more
        removed = sum(1 for e in changes if e["action"] == "deleted")
        subject = f"Subscriptions of {words}: none left ({removed} removed)"
    elif last_failing:
        subject = f"Subscriptions of {words}: repaired, all {len(healthy)} active"
    else:
        subject = f"Subscriptions of {words}: {len(healthy)} active"
    lines = [f"A subscription check of the {words} ran at "
             f"{utcnow().isoformat(timespec='seconds')}Z.", ""]
    if failing:
        lines.append("Failing (its webhooks may not arrive; the next check tries again):")
        lines += [f"  - {t}: {current[t][2] or 'failed'}" for t in failing]
        lines.append("")
    if healthy:
        lines.append("Active:")
        lines += [f"  - {t}" for t in healthy]
        lines.append("")
    if changes or any(e["action"] == "failed" for e in events):
        lines.append("What this check found and did:")
        lines += [f"  - {e['topic'] or '(all)'}: {e['action']}: {e['message']}"
                  for e in events if e["action"] != "ok"]
        lines.append("")
    if last_failing and not failing:
        lines += [f"Failing before, active now: {', '.join(last_failing)}", ""]
    lines.append(f"Details: GET /api/v1/channels/{channel_id}/subscriptions")
    return queue(session, SUBSCRIPTION_CHECK, subject, "\n".join(lines), channel_id,
                 details={"failing": failing,
                          "changes": [[e["topic"], e["action"]] for e in changes]})


def _last_summary(session: Session, channel_id: int) -> Alert | None:
    """The last summary queued for the channel and not given up (one that never reached
    anyone does not count as told)."""
    return session.scalars(select(Alert).where(
        Alert.channel_id == channel_id, Alert.kind == SUBSCRIPTION_CHECK,
        Alert.status != FAILED).order_by(Alert.id.desc()).limit(1)).first()


def channel_deactivated(session: Session, channel_id: int, reason: str) -> Alert | None:
    words = _channel_words(session, channel_id)
    return queue(session, CHANNEL_DEACTIVATED, f"The {words} was deactivated",
                 f"The {words} was deactivated at {utcnow().isoformat(timespec='seconds')}Z: "
                 f"{reason}.\n\nIts webhooks are no longer processed and its subscriptions "
                 f"were forgotten. Once the app is installed again with new credentials, "
                 f"PATCH /api/v1/channels/{channel_id} with them and \"active\": true.",
                 channel_id)


def endpoint_disabled(session: Session, endpoint_id: int, url: str, reason: str) -> Alert | None:
    return queue(session, ENDPOINT_DISABLED, f"Webhook endpoint {endpoint_id} was disabled",
                 f"The outbound webhook endpoint {endpoint_id} ({url}) was disabled at "
                 f"{utcnow().isoformat(timespec='seconds')}Z: {reason}.\n\nIts events wait in "
                 f"the feed. Once the receiver is fixed, PATCH /api/v1/webhook-endpoints/"
                 f"{endpoint_id} with \"enabled\": true: it resumes where it stopped.")


def delivery_dead(session: Session, channel_id: int, delivery_id: int, reason: str
                  ) -> Alert | None:
    """Report a delivery gone dead: added to the channel's batch still collecting (sent
    ORDERHOOKS_ALERT_BATCH_SECONDS after the batch's first), or a new batch."""
    settings = session.info.get(INFO_KEY)
    if settings is None:
        return None
    now = utcnow()
    query = select(Alert).where(Alert.channel_id == channel_id, Alert.kind == DELIVERIES_DEAD,
                                Alert.status == PENDING, Alert.attempts == 0,
                                Alert.next_attempt_at > now).order_by(Alert.id.desc()).limit(1)
    if session.get_bind().dialect.name != "sqlite":
        # Locked until this transaction ends: the sender skips it meanwhile, so a delivery is
        # never added to a batch that is being mailed.
        query = query.with_for_update()
    # A batch this transaction began is not in the database yet (the worker records without
    # autoflush): look among the session's new rows first.
    batch = next((a for a in session.new if isinstance(a, Alert) and a.kind == DELIVERIES_DEAD
                  and a.channel_id == channel_id), None) or session.scalars(query).first()
    if batch is None or batch.status != PENDING or batch.next_attempt_at <= now:
        details = {"count": 0, "delivery_ids": [], "last_reason": ""}
        batch = queue(session, DELIVERIES_DEAD, "", "", channel_id, details=details)
        if batch is None:
            return None
        batch.next_attempt_at = now + timedelta(seconds=settings.batch_seconds)
    details = dict(batch.details or {})
    details["count"] = int(details.get("count", 0)) + 1
    ids = list(details.get("delivery_ids", []))
    if len(ids) < LISTED_DELIVERIES:
        ids.append(delivery_id)
    details["delivery_ids"] = ids
    details["last_reason"] = reason[:500]
    batch.details = details
    words = _channel_words(session, channel_id)
    count = details["count"]
    batch.subject = _subject(f"{SUBJECT_PREFIX}{count} deliver{'y' if count == 1 else 'ies'} "
                             f"of the {words} went dead")
    more = count - len(ids)
    batch.body = "\n".join([
        f"{count} webhook deliver{'y' if count == 1 else 'ies'} of the {words} went dead: "
        "every attempt to apply them failed, and no more are made.", "",
        "Deliveries: " + ", ".join(str(i) for i in ids) + (f" and {more} more" if more else ""),
        f"Last reason: {details['last_reason']}", "",
        "Once the cause is fixed, replay them: POST /api/v1/deliveries/<id>/replay, or a window",
        f"with POST /api/v1/deliveries/replay {{\"channel_id\": {channel_id}, \"since\": ..., "
        "\"until\": ..., \"outcome\": [\"dead\"]}.",
        f"List: GET /api/v1/deliveries?channel_id={channel_id}&outcome=dead"])
    return batch


# -- sending (the worker's sender thread) ----------------------------------------------------

class Sender:
    """Mails due alerts, outside any database transaction and on a thread of its own, so a
    slow or dead mail server never holds up deliveries. A refused or timed-out alert is retried
    with backoff (ORDERHOOKS_ALERT_RETRY_SECONDS, doubling, at most an hour) and given up,
    with its last error, ORDERHOOKS_ALERT_GIVE_UP_SECONDS after it was written. An alert claimed
    by a sender that died is taken again once its claim expires (so it may arrive twice, never
    not at all)."""

    def __init__(self, app, stopping: threading.Event | None = None):
        self.settings: Settings | None = app.extensions.get(INFO_KEY)
        self.db = app.extensions["orderhooks.db"]
        self.stopping = stopping or threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> threading.Thread | None:
        """Start the sender thread (none when mail is not configured)."""
        if self.settings is None:
            return None
        self.thread = threading.Thread(target=self.run, name="orderhooks-alerts", daemon=True)
        self.thread.start()
        return self.thread

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sent = self.send_due()
            except Exception:  # noqa: BLE001 — e.g. the database restarting: wait and go on
                log.exception("alert.sender_error")
                sent = 0
            if not sent:
                self.stopping.wait(POLL_SECONDS)

    def send_due(self) -> int:
        """Claim the alerts due now and try each once. Returns how many were tried."""
        if self.settings is None:
            return 0
        alerts = self._claim()
        for alert in alerts:
            if self.stopping.is_set():
                break
            try:
                mail.send(self.settings.server, mail.message(
                    self.settings.sender, alert.recipients, alert.subject, alert.body))
            except mail.MailError as exc:
                self._record(alert, str(exc))
            except Exception as exc:  # noqa: BLE001 — one alert's fault, not the others'
                log.exception("alert.unsendable", extra={"alert_id": alert.id})
                self._record(alert, f"cannot be mailed: {type(exc).__name__}: "
                                    f"{mail.one_line(str(exc))}")
            else:
                self._record(alert, None)
        return len(alerts)

    def _claim(self) -> list[Alert]:
        now = utcnow()
        # Long enough for every exchange of one mail to time out, before another sender may
        # take the alert again.
        lease = timedelta(seconds=self.settings.server.timeout * 6 + 30)
        with self.db.session() as session:
            query = (select(Alert).where(Alert.status.in_((PENDING, SENDING)),
                                         Alert.next_attempt_at <= now)
                     .order_by(Alert.next_attempt_at, Alert.id).limit(CLAIM_BATCH))
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            alerts = session.scalars(query).all()
            for alert in alerts:
                alert.status, alert.next_attempt_at = SENDING, now + lease
                alert.attempts = (alert.attempts or 0) + 1
        return alerts

    def _record(self, alert: Alert, error: str | None) -> None:
        now = utcnow()
        values: dict = {"last_error": error}
        if error is None:
            values.update(status=SENT, sent_at=now)
            result = "sent"
            log.info("alert.sent", extra={"alert_id": alert.id, "kind": alert.kind,
                                          "attempts": alert.attempts})
        elif now - alert.created_at >= timedelta(seconds=self.settings.give_up_seconds):
            values.update(status=FAILED, last_error=(
                f"given up after {alert.attempts} attempts over "
                f"{(now - alert.created_at).total_seconds():.0f} s; last error: {error}")[:2000])
            result = "given_up"
            log.error("alert.given_up", extra={"alert_id": alert.id, "kind": alert.kind,
                                               "error": error})
        else:
            delay = min(RETRY_MAX_SECONDS,
                        self.settings.retry_seconds * 2 ** max(0, alert.attempts - 1))
            values.update(status=PENDING, next_attempt_at=now + timedelta(seconds=delay))
            result = "failed"
            log.warning("alert.failed", extra={"alert_id": alert.id, "kind": alert.kind,
                                               "error": error, "attempt": alert.attempts,
                                               "retry_in": round(delay, 1)})
        with self.db.session() as session:
            # Only while our claim holds: an alert another sender took over is theirs.
            session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == SENDING,
                                                Alert.attempts == alert.attempts)
                            .values(**values))
        metrics.ALERTS.labels(alert.kind, result).inc()
