"""Retention: what orderhooks keeps, and for how long (docs/reliability.md, "Retention").

- **Raw delivery bodies** (customers' personal data): dropped ``ORDERHOOKS_RETENTION_DAYS``
  after receipt once the delivery is processed; its outcome, reason and intents stay.
- **Delivered outbound webhook messages**, with their attempts: deleted
  ``ORDERHOOKS_WEBHOOK_RETENTION_DAYS`` after delivery.
- **Failed messages** (retries used up), with their attempts: deleted
  ``ORDERHOOKS_WEBHOOK_FAILED_RETENTION_DAYS`` after their last retry was due, so an operator
  has that long to re-send them. A re-sent message is pending again: never purged while
  pending, its clock restarts with its next outcome.
- **Events**: deleted ``ORDERHOOKS_EVENT_RETENTION_DAYS`` after they happened, and only once
  every enabled endpoint's place in the feed is past them and no message refers to them (a
  pending, failed or recently delivered message keeps its event, so a receiver that is down
  loses nothing). The newest numbered event is always kept: the sequencer numbers on from it.
  A feed reader whose cursor is older than the purged events is answered 410 with the oldest
  cursor that reads whole (:func:`feed_purged_through`); an event is never skipped silently.
  A disabled endpoint holds nothing back: enabled again after longer than the retention, it
  resumes with the events still kept.
- **Alert mails** sent or given up: deleted ``ORDERHOOKS_ALERT_RETENTION_DAYS`` after their
  last attempt; each channel's newest subscription summary stays (the next check compares
  with it, so a purge never makes old news look new).

Every purge works in batches of at most ``BATCH`` rows, one short transaction each (SQLite's
one writer is held for one batch at a time, never for a whole purge), and each batch is an
index range (tests/test_query_plans.py checks the plans).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from datetime import timedelta

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.exc import IntegrityError

from .clock import utcnow
from .models import (DELIVERY_OUTCOMES, Alert, Event, SalesChannel, StoredDelivery, WebhookAttempt,
                     WebhookEndpoint, WebhookMessage, WorkerState)
from .outcomes import DeliveryState

log = logging.getLogger("orderhooks.retention")

#: Rows deleted (or bodies dropped) per transaction.
BATCH = 500
#: The ``worker_state`` row holding the highest feed position purged: cursors below it are
#: answered 410.
PURGED_THROUGH = "events_purged_through"
#: Kept for good: the summary the next subscription check compares with.
SUBSCRIPTION_CHECK = "subscription.check"
#: Message states (core.sender) and alert statuses (core.alerts) a purge may delete.
DELIVERED, FAILED = "delivered", "failed"
ALERT_DONE = ("sent", "failed")


@dataclass
class Purged:
    """What one purge removed; ``finished`` is False when it stopped at its time budget with
    more to do."""
    bodies: int = 0
    messages: int = 0
    attempts: int = 0
    events: int = 0
    alerts: int = 0
    finished: bool = True

    def add(self, other: "Purged") -> None:
        for field in fields(self):
            if field.name != "finished":
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        self.finished = self.finished and other.finished

    def summary(self) -> str:
        return (f"{self.bodies} delivery bodies, {self.messages} webhook messages with "
                f"{self.attempts} attempts, {self.events} events, {self.alerts} alert mails")


class _Budget:
    """Batches run until ``seconds`` have passed (None: until done)."""

    def __init__(self, seconds: float | None):
        self.ends = None if seconds is None else time.monotonic() + seconds

    def spent(self) -> bool:
        return self.ends is not None and time.monotonic() >= self.ends

    def run(self, batch) -> bool:
        """Call ``batch()`` — one batch in its own transaction, True when more may follow —
        until one says there is no more (True) or the time is up after one (False)."""
        while batch():
            if self.spent():
                return False
        return True


def purge(db, config, *, seconds: float | None = None, batch: int = BATCH) -> Purged:
    """Every purge, each with its ``ORDERHOOKS_*_RETENTION_DAYS``. With ``seconds``, a purge
    that has used them up stops after its current batch, with ``finished`` False (every call
    makes progress: at least one batch). Messages go before events: a delivered message older
    than its retention no longer keeps its event."""
    budget = _Budget(seconds)
    steps = (lambda: purge_bodies(db, config["RETENTION_DAYS"], budget=budget, batch=batch),
             lambda: purge_messages(db, config["WEBHOOK_RETENTION_DAYS"],
                                    config["WEBHOOK_FAILED_RETENTION_DAYS"],
                                    budget=budget, batch=batch),
             lambda: purge_events(db, config["EVENT_RETENTION_DAYS"], budget=budget,
                                  batch=batch),
             lambda: purge_alerts(db, config["ALERT_RETENTION_DAYS"], budget=budget,
                                  batch=batch))
    done = Purged()
    for step in steps:
        done.add(step())
        if not done.finished:
            break
    if done.bodies or done.messages or done.events or done.alerts:
        log.info("retention.purged", extra={
            "bodies": done.bodies, "messages": done.messages, "attempts": done.attempts,
            "events": done.events, "alerts": done.alerts, "finished": done.finished})
    return done


def _cutoff(days: int):
    return utcnow() - timedelta(days=days)


# -- delivery bodies ---------------------------------------------------------------------------

def purge_bodies(db, days: int, *, budget: _Budget | None = None, batch: int = BATCH) -> Purged:
    """Drop the raw bodies of processed deliveries older than ``days``; keep the outcome."""
    budget = budget or _Budget(None)
    cutoff = _cutoff(days)
    done = Purged()
    with db.Session() as session:
        channel_ids = session.scalars(select(SalesChannel.id).order_by(SalesChannel.id)).all()
    for channel_id in channel_ids:
        for outcome in DELIVERY_OUTCOMES:
            since = None  # where the last batch ended: bodies already dropped are not read again

            def one_batch() -> bool:
                nonlocal since
                with db.session() as session:
                    # channel_id = / outcome = / received_at range: ix_deliveries_channel_outcome
                    # in its order, not a walk over every processed row (ix_deliveries_claim,
                    # which "state = 'done'" would otherwise pick: "state || ''" keeps the
                    # planner off it).
                    query = select(StoredDelivery.id, StoredDelivery.received_at).where(
                        StoredDelivery.channel_id == channel_id,
                        StoredDelivery.outcome == outcome,
                        StoredDelivery.received_at < cutoff,
                        StoredDelivery.body.is_not(None),
                        StoredDelivery.state + literal("") == DeliveryState.DONE)
                    if since is not None:
                        query = query.where(StoredDelivery.received_at >= since)
                    rows = session.execute(query.order_by(StoredDelivery.received_at)
                                           .limit(batch)).all()
                    if rows:
                        session.execute(update(StoredDelivery).where(
                            StoredDelivery.id.in_([r.id for r in rows])).values(
                            body=None, body_purged_at=utcnow()),
                            execution_options={"synchronize_session": False})
                done.bodies += len(rows)
                since = rows[-1].received_at if rows else since
                return len(rows) == batch

            if not budget.run(one_batch):
                done.finished = False
                return done
    return done


# -- outbound webhook messages and attempts ----------------------------------------------------

def purge_messages(db, delivered_days: int, failed_days: int, *,
                   budget: _Budget | None = None, batch: int = BATCH) -> Purged:
    """Delete delivered messages ``delivered_days`` after delivery and failed ones
    ``failed_days`` after their last retry was due, each with its attempts. Pending messages
    (waiting, retrying, re-sent, or of a disabled endpoint) are never touched."""
    budget = budget or _Budget(None)
    done = Purged()
    with db.Session() as session:
        endpoint_ids = session.scalars(select(WebhookEndpoint.id)
                                       .order_by(WebhookEndpoint.id)).all()
    for endpoint_id in endpoint_ids:
        for state, days in ((DELIVERED, delivered_days), (FAILED, failed_days)):
            cutoff = _cutoff(days)

            def one_batch() -> bool:
                with db.session() as session:
                    # endpoint_id = / state = / next_attempt_at <: a range of
                    # ix_webhook_messages_due. A delivered message was due before it was
                    # delivered, so "delivered_at < cutoff" implies the range's bound.
                    query = select(WebhookMessage.id).where(
                        WebhookMessage.endpoint_id == endpoint_id,
                        WebhookMessage.state == state,
                        WebhookMessage.next_attempt_at < cutoff)
                    if state == DELIVERED:
                        query = query.where(WebhookMessage.delivered_at < cutoff)
                    ids = session.scalars(query.order_by(WebhookMessage.next_attempt_at)
                                          .limit(batch)).all()
                    if ids:
                        done.attempts += session.execute(delete(WebhookAttempt).where(
                            WebhookAttempt.message_id.in_(ids)),
                            execution_options={"synchronize_session": False}).rowcount
                        done.messages += session.execute(delete(WebhookMessage).where(
                            WebhookMessage.id.in_(ids)),
                            execution_options={"synchronize_session": False}).rowcount
                return len(ids) == batch

            if not budget.run(one_batch):
                done.finished = False
                return done
    return done


# -- events ------------------------------------------------------------------------------------

def purge_events(db, days: int, *, budget: _Budget | None = None,
                 batch: int = BATCH) -> Purged:
    """Delete events older than ``days`` that every enabled endpoint has passed and no message
    refers to, walking the feed from its start (ix_events_position) and stopping at the first
    event still young. Each batch raises the purged-through mark in its own transaction, so a
    feed reader never sees an event gone without the mark that says so."""
    budget = budget or _Budget(None)
    cutoff = _cutoff(days)
    done = Purged()
    _ensure_mark(db)
    with db.Session() as session:
        newest = session.scalar(select(func.max(Event.position))) or 0
        taken = session.scalar(select(func.min(WebhookEndpoint.position)).where(
            WebhookEndpoint.enabled.is_(True)))
    # The newest event stays: the sequencer numbers after the highest position there is.
    bound = newest - 1 if taken is None else min(taken, newest - 1)
    after = 0

    def one_batch() -> bool:
        nonlocal after, bound
        with db.session() as session:
            mark = _lock_mark(session)
            rows = session.execute(select(Event.id, Event.position, Event.occurred_at).where(
                Event.position > after, Event.position <= bound)
                .order_by(Event.position).limit(batch)).all()
            old = []
            for row in rows:
                if row.occurred_at >= cutoff:
                    # positions follow time: what comes after is younger still
                    bound = row.position
                    break
                old.append(row)
            referred = set(session.scalars(select(WebhookMessage.event_id).where(
                WebhookMessage.event_id.in_([r.id for r in old])))) if old else set()
            gone = [r for r in old if r.id not in referred]
            if gone:
                session.execute(delete(Event).where(Event.id.in_([r.id for r in gone])),
                                execution_options={"synchronize_session": False})
                top = max(r.position for r in gone)
                if top > mark.position:
                    mark.row.value = str(top)
        done.events += len(gone)
        after = rows[-1].position if rows else bound
        return len(rows) == batch and after < bound

    if bound > 0 and not budget.run(one_batch):
        done.finished = False
    return done


@dataclass
class _Mark:
    row: WorkerState
    position: int


def _ensure_mark(db) -> None:
    with db.session() as session:
        if session.get(WorkerState, PURGED_THROUGH) is None:
            try:
                with session.begin_nested():
                    session.add(WorkerState(key=PURGED_THROUGH, value="0"))
            except IntegrityError:  # another purge inserted it first
                pass


def _lock_mark(session) -> _Mark:
    """The purged-through row, locked until the batch commits (PostgreSQL: two purges take
    turns; SQLite: every write transaction already does)."""
    query = select(WorkerState).where(WorkerState.key == PURGED_THROUGH)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.scalars(query).one()
    return _Mark(row, int(row.value or 0))


def feed_purged_through(session) -> int:
    """The highest feed position retention purged (0: none): events at or below it may be
    gone, every event above it is kept. A feed cursor below it cannot be read whole."""
    row = session.get(WorkerState, PURGED_THROUGH)
    return int(row.value or 0) if row is not None else 0


# -- alert mails -------------------------------------------------------------------------------

def purge_alerts(db, days: int, *, budget: _Budget | None = None,
                 batch: int = BATCH) -> Purged:
    """Delete alert mails sent or given up whose last attempt is older than ``days``, except
    each channel's newest subscription summary (not given up): the next check compares with
    it."""
    budget = budget or _Budget(None)
    cutoff = _cutoff(days)
    done = Purged()
    newest_summaries = (select(func.max(Alert.id)).where(
        Alert.kind == SUBSCRIPTION_CHECK, Alert.status != "failed")
        .group_by(Alert.channel_id))
    for status in ALERT_DONE:
        def one_batch() -> bool:
            with db.session() as session:
                # status = / next_attempt_at <: a range of ix_alerts_due (an alert's last
                # claim leaves its next_attempt_at just after its last attempt)
                ids = session.scalars(select(Alert.id).where(
                    Alert.status == status, Alert.next_attempt_at < cutoff,
                    Alert.id.not_in(newest_summaries))
                    .order_by(Alert.next_attempt_at).limit(batch)).all()
                if ids:
                    session.execute(delete(Alert).where(Alert.id.in_(ids)),
                                    execution_options={"synchronize_session": False})
            done.alerts += len(ids)
            return len(ids) == batch

        if not budget.run(one_batch):
            done.finished = False
            return done
    return done
