"""The worker: claim stored deliveries, ask the plugin for intents, apply them under the status
rules and record the outcome on the delivery.

Claims are leases (``claimed_until``): a worker killed mid-batch leaves rows that any worker
re-claims once the lease expires. On PostgreSQL several workers claim with ``FOR UPDATE SKIP
LOCKED``; on SQLite every transaction is ``BEGIN IMMEDIATE``, so claims serialise.
"""
from __future__ import annotations

import gc
import logging
import os
import random
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import StatementError

from . import metrics, orders, rules
from .channels import Delivery, Headers
from .db import Database
from .errors import ChannelAPIError, RetryLater
from .intents import (Cancel, DeactivateChannel, Fulfill, Ignore, InvalidIntent,
                      RedactPersonalData, to_dict)
from .models import StoredDelivery, Order, SalesChannel, WorkerState, utcnow
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
        #: channel id -> monotonic time until which its API asked us to wait.
        self.blocked: dict[int, float] = {}
        self._rotation = 0

    # -- claiming ---------------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[int]:
        """Claim up to ``limit`` due deliveries, fairly across channels: each channel with work
        gets a share, so a small store is never stuck behind a big store's backlog. Channels
        whose API told us to wait (``self.blocked``) are skipped until then."""
        limit = limit or self.config["WORKER_BATCH"]
        now = utcnow()
        claimed: list[int] = []
        with self.db.session() as session:
            # Claims whose worker died (or overran its lease) count as an attempt, so a delivery
            # that kills its worker every time ends dead instead of looping forever.
            # (channel_id IN / state =: ranges of ix_deliveries_claim, not a scan of the inbox.)
            expired = select(StoredDelivery.id, StoredDelivery.attempts).where(
                StoredDelivery.channel_id.in_(select(SalesChannel.id)),
                StoredDelivery.state == "processing", StoredDelivery.claimed_until < now).limit(limit)
            for delivery_id, attempts in session.execute(self._lock_query(expired)).all():
                values = dict(attempts=attempts + 1, claimed_by=None, claimed_until=None,
                              reason="the worker that claimed it stopped before finishing")
                if attempts + 1 >= self.config["MAX_ATTEMPTS"]:
                    values.update(state="done", outcome="dead", processed_at=now,
                                  reason=f"dead after {attempts + 1} attempts: its worker "
                                         "stopped before finishing each time")
                else:
                    claimed.append(delivery_id)
                session.execute(update(StoredDelivery).where(StoredDelivery.id == delivery_id)
                                .values(**values))
            channel_ids = self._channels_with_work(session, now)
            # Rounds of equal shares; channels that filled their share may take more.
            while channel_ids and len(claimed) < limit:
                share = max(1, -(-(limit - len(claimed)) // len(channel_ids)))
                hungry = []
                for channel_id in channel_ids:
                    want = min(share, limit - len(claimed))
                    if want <= 0:
                        break
                    query = (select(StoredDelivery.id)
                             .where(StoredDelivery.channel_id == channel_id,
                                    StoredDelivery.state == "pending", StoredDelivery.next_attempt_at <= now,
                                    StoredDelivery.id.not_in(claimed))
                             .order_by(StoredDelivery.next_attempt_at, StoredDelivery.id).limit(want))
                    got = list(session.scalars(self._lock_query(query)))
                    claimed += got
                    if len(got) == want:
                        hungry.append(channel_id)
                channel_ids = hungry
            if claimed:
                session.execute(update(StoredDelivery).where(StoredDelivery.id.in_(claimed)).values(
                    state="processing", claimed_by=self.name,
                    claimed_until=now + timedelta(seconds=self.config["CLAIM_SECONDS"])))
        return claimed

    def _lock_query(self, query):
        return query if self.db.is_sqlite else query.with_for_update(skip_locked=True)

    def _channels_with_work(self, session, now) -> list[int]:
        """Channels with due deliveries, in a rotating order, minus blocked ones."""
        blocked_now = time.monotonic()
        # One index probe per channel (ix_deliveries_claim), not a scan of the backlog.
        due = select(StoredDelivery.id).where(StoredDelivery.channel_id == SalesChannel.id,
                                        StoredDelivery.state == "pending",
                                        StoredDelivery.next_attempt_at <= now).exists()
        ids = [cid for cid in session.scalars(select(SalesChannel.id).where(due)
                                              .order_by(SalesChannel.id))
               if self.blocked.get(cid, 0) <= blocked_now]
        if not ids:
            return []
        self._rotation = (self._rotation + 1) % len(ids)
        return ids[self._rotation:] + ids[:self._rotation]

    def release(self, ids: list[int]) -> None:
        """Hand unprocessed claims back (graceful shutdown)."""
        if not ids:
            return
        with self.db.session() as session:
            session.execute(update(StoredDelivery).where(
                StoredDelivery.id.in_(ids), StoredDelivery.claimed_by == self.name,
                StoredDelivery.state == "processing").values(state="pending", claimed_by=None,
                                                       claimed_until=None))

    # -- processing -------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch and process it. Returns how many deliveries were processed."""
        ids = self.claim()
        if not ids:
            return 0
        if self.stopping.is_set():
            self.release(ids)
            return 0
        try:
            self.process_batch(ids)
        except BaseException:
            self.release(ids)  # e.g. the database went away: let any worker take them again
            raise
        return len(ids)

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
        """Process one claimed delivery; returns its outcome (None if the claim was lost)."""
        return self.process_batch([delivery_id]).get(delivery_id)

    def process_batch(self, ids: list[int]) -> dict[int, str | None]:
        """Translate a batch of claimed deliveries (channel API calls happen here, outside any
        transaction), then record every outcome in one transaction: one commit per batch."""
        started = time.perf_counter()
        with self.db.Session() as session:
            rows = session.scalars(select(StoredDelivery).where(
                StoredDelivery.id.in_(ids), StoredDelivery.claimed_by == self.name,
                StoredDelivery.state == "processing").order_by(StoredDelivery.id)).all()
            work = [(r.id, r.channel_id, r.channel_type, r.attempts,
                     Delivery(body=r.body or b"", headers=Headers(r.headers or {}),
                                      received_at=r.received_at, id=r.id),
                     r.body is None) for r in rows]
            channel_rows = {c.id: c for c in session.scalars(select(SalesChannel).where(
                SalesChannel.id.in_({w[1] for w in work})))}
            # A channel whose settings cannot be read (e.g. credentials its plugin no longer
            # accepts) fails its own deliveries, not the batch's other channels.
            views: dict[int, object] = {}
            for cid, channel_row in channel_rows.items():
                try:
                    views[cid] = view(channel_row, self.box, self.config["PUBLIC_BASE_URL"])
                except Exception as exc:  # noqa: BLE001
                    log.exception("worker.channel_unreadable", extra={"channel_id": cid})
                    views[cid] = exc
        results: dict[int, list | Exception] = {}
        by_channel: dict[int, list] = {}
        for item in work:
            delivery_id, channel_id = item[0], item[1]
            channel = views.get(channel_id, ChannelAPIError(f"no channel {channel_id}"))
            try:
                routed = channel if isinstance(channel, Exception) else self._route(item, channel)
            except Exception as exc:  # noqa: BLE001 — a plugin's failure is this delivery's
                routed = exc
            if routed is None:
                by_channel.setdefault(channel_id, []).append(item)
            else:
                results[delivery_id] = routed
        for channel_id, items in by_channel.items():
            adapter = self.channels.get(items[0][2])
            for item, result in zip(items, self._translate(adapter, items, views[channel_id])):
                results[item[0]] = result
                if isinstance(result, RetryLater):
                    self.blocked[channel_id] = time.monotonic() + result.delay
        outcomes = self._record(work, results)
        elapsed = time.perf_counter() - started
        for item in work:
            metrics.OUTCOMES.labels(item[2], outcomes.get(item[0]) or "lost_claim").inc()
            metrics.PROCESS_SECONDS.labels(item[2]).observe(elapsed / max(1, len(work)))
        return outcomes

    def _route(self, item, channel):
        """What becomes of a delivery before its plugin translates it: a result (an exception
        or intents) when it is settled here, None when the plugin must translate it."""
        _id, _channel_id, channel_type, _attempts, incoming, body_missing = item
        adapter = self.channels.get(channel_type)
        if adapter is None:
            return ChannelAPIError(f"no plugin provides channel type {channel_type!r}")
        if body_missing:
            return [Ignore("the delivery's body was purged or redacted; nothing to do")]
        if not channel.active and not adapter.accepts_when_inactive(incoming, channel):
            return [Ignore("the channel is inactive")]
        return None

    @staticmethod
    def _translate(adapter, items, channel) -> list:
        """One result per delivery: its intents (a list) or the exception that stopped it. A
        plugin that raises for the whole batch, or answers out of shape, is asked again one
        delivery at a time, so only the delivery that makes it fail fails (exceptions it hands
        back per delivery stay as they are: e.g. one API failure shared by an order's
        deliveries)."""
        def ask(group) -> tuple[list, bool]:
            try:
                answer = list(adapter.translate_many([i[4] for i in group], channel))
            except RetryLater as exc:  # throttled: asking again now would only add calls
                return [exc] * len(group), False
            except Exception as exc:  # noqa: BLE001 — a plugin's failure must not stop us
                return [exc] * len(group), True
            if len(answer) != len(group):
                return [TypeError(f"the plugin gave {len(answer)} results for {len(group)} "
                                  "deliveries")] * len(group), True
            return [r if isinstance(r, (list, Exception)) else
                    TypeError(f"the plugin gave {type(r).__name__}, not a list of intents")
                    for r in answer], False

        results, whole_batch_failed = ask(items)
        if whole_batch_failed and len(items) > 1:
            results = [ask([item])[0][0] for item in items]
        return results

    def _record(self, work, results) -> dict[int, str | None]:
        """Record the batch's outcomes. Fast path: the whole batch in one transaction, orders
        prefetched in one query. If anything fails on the way — applying a delivery, a flush, the
        commit itself (a value the database refuses) — that transaction is rolled back and each
        delivery is recorded again in a transaction of its own; one that fails alone is counted
        as a failed attempt (retried with backoff, dead after MAX_ATTEMPTS), so one delivery can
        never hold back the others or the worker. If even recording that failure fails, the
        database itself is in trouble: the error propagates and the claims are released."""
        try:
            return self._record_batch(work, results)
        except Exception:  # noqa: BLE001 — narrowed to its delivery below
            log.warning("worker.batch_record_failed", exc_info=True,
                        extra={"deliveries": len(work)})
        outcomes: dict[int, str | None] = {}
        for item in work:
            try:
                outcomes.update(self._record_batch([item], results))
            except Exception as exc:  # noqa: BLE001 — this delivery fails, not the batch
                log.exception("worker.apply_failed", extra={"delivery_id": item[0]})
                outcomes[item[0]] = self._record_failure(item[0], exc)
        return outcomes

    def _record_failure(self, delivery_id: int, exc: Exception) -> str | None:
        with self.db.session() as session:
            query = select(StoredDelivery).where(StoredDelivery.id == delivery_id)
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = session.scalars(query).first()
            if row is None or row.claimed_by != self.name or row.state != "processing":
                return None
            return self._failed(row, exc, utcnow())

    def _record_batch(self, work, results) -> dict[int, str | None]:
        outcomes: dict[int, str | None] = {}
        now = utcnow()
        with self.db.session() as session, session.no_autoflush:
            # Our own claimed rows: wait for a lock (no SKIP LOCKED), or a row briefly locked by
            # someone else (e.g. a redaction) would look like a lost claim.
            query = select(StoredDelivery).where(StoredDelivery.id.in_([w[0] for w in work]))
            if not self.db.is_sqlite:
                query = query.with_for_update()
            rows = {r.id: r for r in session.scalars(query)}
            channel_rows = {c.id: c for c in session.scalars(select(SalesChannel).where(
                SalesChannel.id.in_({w[1] for w in work})))}
            cache = self._prefetch_orders(session, work, results)
            for delivery_id, channel_id, channel_type, attempts, _incoming, _missing in work:
                row = rows.get(delivery_id)
                if row is None or row.claimed_by != self.name or row.state != "processing":
                    outcomes[delivery_id] = None  # our claim expired; another worker has it
                    continue
                result = results[delivery_id]
                if isinstance(result, RetryLater):
                    self._reschedule(row, result.delay, f"throttled by the channel: "
                                                        f"{result.reason}", now)
                    outcomes[delivery_id] = "throttled"
                elif isinstance(result, Exception):
                    outcomes[delivery_id] = self._failed(row, result, now)
                else:
                    outcomes[delivery_id] = self._apply(session, row, channel_rows[channel_id],
                                                        result, cache)
            session.flush()
        for delivery_id, outcome in outcomes.items():
            if outcome in ("applied", "ignored", "deferred"):
                log.info("worker.processed", extra={"delivery_id": delivery_id,
                                                    "outcome": outcome})
        return outcomes

    def _prefetch_orders(self, session, work, results) -> dict:
        """The batch's orders in one query per channel (locked on PostgreSQL), so applying an
        intent does not query its order again."""
        wanted: dict[int, set[str]] = {}
        for delivery_id, channel_id, *_rest in work:
            result = results.get(delivery_id)
            if isinstance(result, list):
                for intent in result:
                    if isinstance(intent, (Cancel, Fulfill)):
                        wanted.setdefault(channel_id, set()).add(str(intent.channel_order_id))
        cache: dict = {}
        for channel_id, order_ids in wanted.items():
            for key in order_ids:
                cache[(channel_id, key)] = None
            query = select(Order).where(Order.channel_id == channel_id,
                                        Order.channel_order_id.in_(order_ids))
            if not self.db.is_sqlite:
                query = query.with_for_update()
            for order in session.scalars(query):
                cache[(channel_id, order.channel_order_id)] = order
        return cache

    def _apply(self, session, row: StoredDelivery, channel_row: SalesChannel, intents: list,
               cache: dict | None) -> str:
        decisions: list[tuple[str, str]] = []
        deferred_until = None
        for intent in intents:
            if isinstance(intent, (Cancel, Fulfill)):
                decision = orders.apply_intent(session, channel_row, intent,
                                               delivery_id=row.id, config=self.config,
                                               cache=cache)
                decisions.append((decision.outcome,
                                  f"order {intent.channel_order_id}: {decision.reason}"))
                if decision.held_until is not None:
                    deferred_until = max(deferred_until or decision.held_until,
                                         decision.held_until)
            elif isinstance(intent, DeactivateChannel):
                decisions.append((rules.APPLIED, deactivate(session, channel_row,
                                                            intent.reason)))
            elif isinstance(intent, RedactPersonalData):
                from .privacy import redact
                decisions.append((rules.APPLIED, redact(session, channel_row, intent,
                                                        exclude_delivery=row.id)))
                # The request itself names the customer: once carried out, drop its body too.
                row.body, row.body_purged_at = None, utcnow()
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
        return outcome

    def _reschedule(self, row: StoredDelivery, delay: float, reason: str, now) -> None:
        """Throttled: try again later without counting an attempt."""
        row.state, row.claimed_by, row.claimed_until = "pending", None, None
        row.reason = reason
        row.next_attempt_at = now + timedelta(seconds=delay)

    def _failed(self, row: StoredDelivery, exc: Exception, now) -> str:
        """Count a failed attempt: retried with backoff, dead after MAX_ATTEMPTS; dead at once
        when no retry can succeed (an intent the service cannot hold)."""
        row.attempts = (row.attempts or 0) + 1
        message = describe(exc)
        row.claimed_by, row.claimed_until = None, None
        if isinstance(exc, InvalidIntent):
            row.state, row.outcome, row.processed_at = "done", "dead", now
            row.reason = f"dead: the delivery cannot be applied: {message}"
            log.error("worker.dead", extra={"delivery_id": row.id, "error": message})
            return "dead"
        if row.attempts >= self.config["MAX_ATTEMPTS"]:
            row.state, row.outcome, row.processed_at = "done", "dead", now
            row.reason = f"dead after {row.attempts} attempts; last error: {message}"
            log.error("worker.dead", extra={"delivery_id": row.id, "error": message})
            return "dead"
        delay = backoff(row.attempts, self.config["RETRY_BASE_SECONDS"],
                        self.config["RETRY_MAX_SECONDS"])
        row.state, row.outcome = "pending", "failed"
        row.reason = f"attempt {row.attempts} failed: {message}"
        row.next_attempt_at = now + timedelta(seconds=delay)
        log.warning("worker.failed", extra={"delivery_id": row.id, "error": message,
                                            "attempt": row.attempts,
                                            "retry_in": round(delay, 1)})
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
        # Waiting rows only (an index range), never a walk over the processed history.
        metrics.update_lag(self.db)
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


#: The worker process's collector thresholds: a young-generation pass every 10,000 net
#: allocations instead of 700 (a batch allocates tens of thousands of short-lived ORM and JSON
#: objects, nearly all freed by reference counting; 700 ran a pass every few deliveries). Measured
#: over 100,000 deliveries: RssAnon flat (58.4 -> 58.5 MiB after the first 8,000) with these;
#: 50,000 for the young generation made it step up 13.5 MiB.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """For a long-running worker process, after its imports and app set-up: those objects move
    to the collector's permanent generation (``gc.freeze``: never scanned again), and collections
    run less often (``GC_THRESHOLDS``). The collector was 11-25 % of the worker's profile; with
    this, the benchmark's Shopify worker on SQLite went from ~1,600-1,800 to ~2,100-2,250
    applied/s with 1,000 orders. Garbage cycles are still collected: memory stays flat (the
    benchmark's memory run)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_for_long_run(app) -> None:
    """A long-running worker process is the throughput side: fewer, larger WAL checkpoints on
    its SQLite connections and fewer garbage-collector passes (both measured: see
    ``Database.sqlite_autocheckpoint`` and :func:`tune_gc`). ``orderhooks worker`` calls it once
    its app is set up; so does ``bench/worker_lab.py``, to measure the same worker."""
    app.extensions["orderhooks.db"].sqlite_autocheckpoint(
        app.config["SQLITE_WORKER_AUTOCHECKPOINT"])
    tune_gc()


def _parse(value: str):
    from datetime import datetime
    return datetime.fromisoformat(value)


def describe(exc: Exception) -> str:
    """A failure as the delivery's reason shows it: the database driver's own message, never
    the SQL statement or its parameters (they may carry a customer's data)."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:2000]


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


def replay(session, deliveries: list[StoredDelivery]) -> None:
    """Queue deliveries to be processed again from their stored bodies, from attempt 0: a few
    statements for the lot (one UPDATE per previous outcome, one DELETE of their held intents),
    not a round trip per delivery."""
    from .models import PendingIntent
    now = utcnow()
    by_outcome: dict[str | None, list[int]] = {}
    for delivery in deliveries:
        by_outcome.setdefault(delivery.outcome, []).append(delivery.id)
    for outcome, ids in by_outcome.items():
        session.execute(update(StoredDelivery).where(StoredDelivery.id.in_(ids)).values(
            state="pending", attempts=0, next_attempt_at=now, claimed_by=None,
            claimed_until=None, deferred_until=None, outcome=None,
            reason=f"replay requested at {now.isoformat()}Z; previously: "
                   f"{outcome or 'not processed'}"), execution_options={
                       "synchronize_session": False})
        session.execute(delete(PendingIntent).where(PendingIntent.delivery_id.in_(ids)))
    for delivery in deliveries:
        session.expire(delivery)
