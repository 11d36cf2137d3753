"""The worker: claim stored deliveries, ask the plugin for intents, apply them under the status
rules and record the outcome on the delivery.

Claims are leases (``claimed_until``): a worker killed mid-batch leaves rows that any worker
re-claims once the lease expires. On PostgreSQL several workers claim with ``FOR UPDATE SKIP
LOCKED``; on SQLite every transaction is ``BEGIN IMMEDIATE``, so claims serialise.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update

from . import metrics, orders, rules
from .channels import Delivery as IncomingDelivery, Headers
from .db import Database
from .errors import ChannelAPIError, RetryLater
from .intents import (Cancel, DeactivateChannel, Fulfill, Ignore, RedactPersonalData, to_dict)
from .models import Delivery, SalesChannel, WorkerState, utcnow
from .saleschannels import view

log = logging.getLogger("orderhooks.worker")


class Worker:
    def __init__(self, app, name: str | None = None):
        self.app = app
        self.config = app.config
        self.db: Database = app.extensions["orderhooks.db"]
        self.channels = app.extensions["orderhooks.channels"]
        self.box = app.extensions["orderhooks.box"]
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10000}"
        self.stopping = threading.Event()
        self._last_housekeeping = 0.0

    # -- claiming ---------------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[int]:
        limit = limit or self.config["WORKER_BATCH"]
        now = utcnow()
        due = or_(and_(Delivery.state == "pending", Delivery.next_attempt_at <= now),
                  and_(Delivery.state == "processing", Delivery.claimed_until < now))
        query = select(Delivery.id).where(due).order_by(Delivery.next_attempt_at).limit(limit)
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with self.db.session() as session:
            ids = list(session.scalars(query))
            if ids:
                session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
                    state="processing", claimed_by=self.name,
                    claimed_until=now + timedelta(seconds=self.config["CLAIM_SECONDS"])))
        return ids

    def release(self, ids: list[int]) -> None:
        """Hand unprocessed claims back (graceful shutdown)."""
        if not ids:
            return
        with self.db.session() as session:
            session.execute(update(Delivery).where(
                Delivery.id.in_(ids), Delivery.claimed_by == self.name,
                Delivery.state == "processing").values(state="pending", claimed_by=None,
                                                       claimed_until=None))

    # -- processing -------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch and process it. Returns how many deliveries were processed."""
        ids = self.claim()
        done = 0
        for index, delivery_id in enumerate(ids):
            if self.stopping.is_set():
                self.release(ids[index:])
                break
            self.process(delivery_id)
            done += 1
        return done

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Process until nothing is due (tests, ``orderhooks worker --once``)."""
        total = 0
        for _ in range(max_rounds):
            count = self.run_once()
            total += count
            if not count:
                break
        return total

    def process(self, delivery_id: int) -> str | None:
        started = time.perf_counter()
        with self.db.Session() as session:
            row = session.get(Delivery, delivery_id)
            if row is None or row.claimed_by != self.name:
                return None
            channel_row = session.get(SalesChannel, row.channel_id)
            incoming = IncomingDelivery(body=row.body or b"", headers=Headers(row.headers or {}),
                                        received_at=row.received_at, id=row.id)
            channel_type, attempts = row.channel_type, row.attempts
            body_missing = row.body is None
            channel = view(channel_row, self.box, self.config["PUBLIC_BASE_URL"])
        adapter = self.channels.get(channel_type)
        try:
            if adapter is None:
                raise ChannelAPIError(f"no plugin provides channel type {channel_type!r}")
            if body_missing:
                intents = [Ignore("the delivery's body was purged or redacted; nothing to do")]
            elif not channel.active:
                intents = [Ignore("the channel is inactive")]
            else:
                intents = list(adapter.translate(incoming, channel))
        except RetryLater as exc:
            self._reschedule(delivery_id, exc.delay, f"throttled by the channel: {exc.reason}",
                             count_attempt=False)
            return "throttled"
        except Exception as exc:  # noqa: BLE001 — a plugin's failure must not stop the worker
            return self._failed(delivery_id, attempts, exc, channel_type)
        outcome = self._apply(delivery_id, intents)
        metrics.OUTCOMES.labels(channel_type, outcome or "lost_claim").inc()
        metrics.PROCESS_SECONDS.labels(channel_type).observe(time.perf_counter() - started)
        return outcome

    def _apply(self, delivery_id: int, intents: list) -> str | None:
        with self.db.session() as session:
            row = session.get(Delivery, delivery_id, with_for_update=True)
            if row is None or row.claimed_by != self.name or row.state != "processing":
                return None  # our claim expired and another worker took it over
            channel_row = session.get(SalesChannel, row.channel_id)
            decisions: list[tuple[str, str]] = []
            deferred_until = None
            for intent in intents:
                if isinstance(intent, (Cancel, Fulfill)):
                    decision = orders.apply_intent(session, channel_row, intent,
                                                   delivery_id=row.id, config=self.config)
                    decisions.append((decision.outcome,
                                      f"order {intent.channel_order_id}: {decision.reason}"))
                    if decision.outcome == rules.DEFERRED:
                        window = (self.config["UNKNOWN_ORDER_WINDOW_SECONDS"]
                                  if "not imported" in decision.reason
                                  else self.config["UNPROCESSED_WINDOW_SECONDS"])
                        deferred_until = utcnow() + timedelta(seconds=window)
                elif isinstance(intent, DeactivateChannel):
                    decisions.append((rules.APPLIED, deactivate(session, channel_row,
                                                                intent.reason)))
                elif isinstance(intent, RedactPersonalData):
                    from .privacy import redact
                    decisions.append((rules.APPLIED, redact(session, channel_row, intent,
                                                            exclude_delivery=row.id)))
                elif isinstance(intent, Ignore):
                    decisions.append((rules.IGNORED, intent.reason))
                else:
                    decisions.append((rules.IGNORED, f"unknown intent {intent!r}"))
            if not decisions:
                decisions.append((rules.IGNORED, "the delivery asks for nothing"))
            outcomes = {o for o, _ in decisions}
            outcome = next(o for o in (rules.DEFERRED, rules.APPLIED, rules.IGNORED)
                           if o in outcomes)
            row.outcome = outcome
            row.reason = "; ".join(r for _, r in decisions)
            row.intents = [to_dict(i) for i in intents]
            row.deferred_until = deferred_until
            row.state, row.claimed_by, row.claimed_until = "done", None, None
            row.processed_at = utcnow()
        log.info("worker.processed", extra={"delivery_id": delivery_id, "outcome": outcome})
        return outcome

    def _reschedule(self, delivery_id: int, delay: float, reason: str, *,
                    count_attempt: bool, outcome: str | None = None) -> None:
        with self.db.session() as session:
            values = dict(state="pending", claimed_by=None, claimed_until=None, reason=reason,
                          next_attempt_at=utcnow() + timedelta(seconds=delay))
            if count_attempt:
                values["attempts"] = Delivery.attempts + 1
            if outcome:
                values["outcome"] = outcome
            session.execute(update(Delivery).where(Delivery.id == delivery_id,
                                                   Delivery.claimed_by == self.name)
                            .values(**values))

    def _failed(self, delivery_id: int, attempts: int, exc: Exception, channel_type: str) -> str:
        attempts += 1
        message = f"{type(exc).__name__}: {exc}"[:2000]
        if attempts >= self.config["MAX_ATTEMPTS"]:
            with self.db.session() as session:
                session.execute(update(Delivery).where(Delivery.id == delivery_id,
                                                       Delivery.claimed_by == self.name).values(
                    state="done", outcome="dead", attempts=attempts, claimed_by=None,
                    claimed_until=None, processed_at=utcnow(),
                    reason=f"dead after {attempts} attempts; last error: {message}"))
            log.error("worker.dead", extra={"delivery_id": delivery_id, "error": message})
            metrics.OUTCOMES.labels(channel_type, "dead").inc()
            return "dead"
        delay = backoff(attempts, self.config["RETRY_BASE_SECONDS"],
                        self.config["RETRY_MAX_SECONDS"])
        self._reschedule(delivery_id, delay, f"attempt {attempts} failed: {message}",
                         count_attempt=True, outcome="failed")
        log.warning("worker.failed", extra={"delivery_id": delivery_id, "error": message,
                                            "attempt": attempts, "retry_in": round(delay, 1)})
        metrics.OUTCOMES.labels(channel_type, "failed").inc()
        return "failed"

    # -- housekeeping -----------------------------------------------------------------------

    def housekeeping(self, force: bool = False) -> None:
        """Expire held intents, check subscriptions and purge old bodies when due."""
        now = time.monotonic()
        if not force and now - self._last_housekeeping < 5:
            return
        self._last_housekeeping = now
        with self.db.session() as session:
            orders.expire_held(session)
            oldest = session.scalar(select(func.min(Delivery.received_at)).where(
                Delivery.state != "done", Delivery.next_attempt_at <= utcnow()))
            metrics.LAG.set((utcnow() - oldest).total_seconds() if oldest else 0)
        if self._due("subscriptions_checked_at", self.config["SUBSCRIPTION_CHECK_SECONDS"]):
            from .subscriptions import check_all
            check_all(self.app)
        if self._due("bodies_purged_at", 3600):
            from .retention import purge_bodies
            purge_bodies(self.db, self.config["RETENTION_DAYS"])

    def _due(self, key: str, interval: int) -> bool:
        """True for exactly one worker once per ``interval`` (a row in worker_state)."""
        now = utcnow()
        with self.db.session() as session:
            query = select(WorkerState).where(WorkerState.key == key)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            state = session.scalars(query).first()
            if state is None:
                try:
                    with session.begin_nested():
                        session.add(WorkerState(key=key, value=now.isoformat()))
                except Exception:  # noqa: BLE001 — another worker inserted it first
                    return False
                return True
            if state.value and now - _parse(state.value) < timedelta(seconds=interval):
                return False
            state.value = now.isoformat()
            return True

    def run_forever(self) -> None:
        log.info("worker.started", extra={"worker": self.name})
        while not self.stopping.is_set():
            try:
                self.housekeeping()
                if not self.run_once():
                    self.stopping.wait(self.config["WORKER_IDLE_SECONDS"])
            except Exception:  # noqa: BLE001 — e.g. the database restarting: wait and go on
                log.exception("worker.error")
                self.stopping.wait(min(5.0, self.config["WORKER_IDLE_SECONDS"] * 4))
        log.info("worker.stopped", extra={"worker": self.name})


def _parse(value: str):
    from datetime import datetime
    return datetime.fromisoformat(value)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, times a random 0.5–1."""
    return min(cap, base * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)


def deactivate(session, channel_row: SalesChannel, reason: str) -> str:
    """Deactivate a channel whose credentials are dead; no API call is made."""
    from .models import ChannelChange, Subscription
    if channel_row.active:
        channel_row.active = False
        session.add(ChannelChange(channel_id=channel_row.id, field="active", old_value=True,
                                  new_value=False, actor="channel"))
    for sub in session.scalars(select(Subscription).where(
            Subscription.channel_id == channel_row.id)):
        session.delete(sub)
    return f"channel deactivated: {reason}"


def replay(session, delivery: Delivery) -> None:
    """Queue a delivery to be processed again from its stored body."""
    delivery.state, delivery.attempts = "pending", 0
    delivery.next_attempt_at = utcnow()
    delivery.claimed_by = delivery.claimed_until = None
    delivery.reason = f"replay requested at {utcnow().isoformat()}Z; previously: " \
                      f"{delivery.outcome or 'not processed'}"
    delivery.outcome = None
    from .models import PendingIntent
    for held in session.scalars(select(PendingIntent).where(
            PendingIntent.delivery_id == delivery.id)):
        session.delete(held)
