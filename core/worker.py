"""The worker: claim stored deliveries, ask the plugin for intents, apply them under the status
rules and record the outcome on the delivery.

Claims are leases (``claimed_until``): a worker killed mid-batch leaves rows that any worker
re-claims once the lease expires. On PostgreSQL several workers claim with ``FOR UPDATE SKIP
LOCKED``; on SQLite every transaction is ``BEGIN IMMEDIATE``, so claims serialise.

Between batches the loop runs the periodic jobs (:mod:`core.housekeeping`); a worker process is
tuned for its long run by :mod:`core.tuning`.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (Integer, bindparam, literal, literal_column, or_, select, true,
                        union_all, update)
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import defer, object_session

from . import alerts, events, fanout, imports, metrics, orders, owners, products, rmas
from .adapters import Delivery, Headers
from .channel_store import deactivate, view
from .clock import utcnow
from .db import Database, defer_inserts
from .errors import ChannelAPIError, RetryLater
from .housekeeping import Housekeeping
from .intents import (ORDER_INTENTS, CreateOrder, DeactivateChannel, DeleteProduct, Ignore,
                      InvalidIntent, RecordRefund, RedactPersonalData, UpsertProduct, to_dict)
from .models import StoredDelivery, Order, PendingIntent, SalesChannel
from .outcomes import DeliveryState, Outcome
from .privacy import redact
from .wakeup import Listener

log = logging.getLogger("orderhooks.worker")

PENDING, PROCESSING, DONE = DeliveryState.PENDING, DeliveryState.PROCESSING, DeliveryState.DONE
#: What ``process_batch`` reports (and counts) for a delivery whose channel asked us to wait:
#: not an outcome (nothing is recorded on the delivery but its next attempt).
THROTTLED = "throttled"
#: ... and for a delivery whose claim another worker took over meanwhile.
LOST_CLAIM = "lost_claim"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed delivery as the worker carries it from translating to recording."""
    id: int
    channel_id: int
    channel_type: str
    #: What the plugin translates (the stored body and headers).
    delivery: Delivery
    #: The stored body was purged or redacted: there is nothing left to translate.
    body_missing: bool


#: What a batch reads of each claimed delivery.
_CLAIMED_COLUMNS = (StoredDelivery.id, StoredDelivery.channel_id, StoredDelivery.channel_type,
                    StoredDelivery.body, StoredDelivery.headers, StoredDelivery.received_at,
                    StoredDelivery.channel_order_id)
#: A batch's claimed deliveries and their channels' views (or why a view failed).
Loaded = tuple[list[Claimed], dict[int, object]]


class Worker:
    def __init__(self, app, name: str | None = None):
        self.app = app
        self.config = app.config
        self.db: Database = app.extensions["orderhooks.db"]
        self.channel_types = app.extensions["orderhooks.channel_types"]
        self.box = app.extensions["orderhooks.box"]
        self.name = name or owners.name(id(self) % 10000)
        self.stopping = threading.Event()
        self.house = Housekeeping(app)
        #: channel id -> monotonic time until which its API asked us to wait.
        self.blocked: dict[int, float] = {}
        self._rotation = 0
        self._first_look_statement = None
        self._claiming_statements: dict[tuple[bool, bool], object] = {}
        #: A standby worker looks for work every idle interval instead of waiting for the
        #: inbox's bell (``orderhooks worker --standby``: see :meth:`run_forever`).
        self.standby = False
        #: A batch this large tells a standby worker that work waits past the listening one.
        self._backlog = max(2, self.config["WORKER_BATCH"] // 10)

    # -- claiming ---------------------------------------------------------------------------

    def claim(self, limit: int | None = None) -> list[int]:
        """Claim up to ``limit`` due deliveries, fairly across channels: each channel with work
        gets a share, so a small store is never stuck behind a big store's backlog. Channels
        whose API told us to wait (``self.blocked``) are skipped until then."""
        return self._claim(limit)[0]

    def _claim(self, limit: int | None = None) -> tuple[list[int], "Loaded | None"]:
        """:meth:`claim`, and what :meth:`process_batch` reads of the claimed deliveries and
        their channels, read in the claim's own transaction (the claiming UPDATE returns the
        rows): a batch costs no read transaction of its own between its claim and its
        record."""
        limit = limit or self.config["WORKER_BATCH"]
        now = utcnow()
        claimed: list[int] = []
        # A claim is a lease: lost in a database crash, its deliveries are PENDING again (or
        # lapsed claims again for the first look below, which counts the attempt, or the death),
        # so its commit need not wait for the WAL flush (durable=False). The batch that records
        # their changes and events is durable.
        with self.db.session(durable=False) as session:
            blocked_now = time.monotonic()
            blocked = [cid for cid, until in self.blocked.items() if until > blocked_now]
            expired, due = [], []
            for row in session.execute(self._first_look(), {
                    "now": now, "limit": limit, "limit_and_one": limit + 1, "blocked": blocked}):
                (expired if row.expired else due).append(row)
            # Claims whose worker died (or overran its lease) count as an attempt, so a delivery
            # that kills its worker every time ends dead instead of looping forever.
            for delivery_id, attempts, channel_id, _ in expired:
                values = dict(attempts=attempts + 1, claimed_by=None, claimed_until=None,
                              reason="the worker that claimed it stopped before finishing")
                if attempts + 1 >= self.config["MAX_ATTEMPTS"]:
                    values.update(state=DONE, outcome=Outcome.DEAD, processed_at=now,
                                  reason=f"dead after {attempts + 1} attempts: its worker "
                                         "stopped before finishing each time")
                    alerts.delivery_dead(session, channel_id, delivery_id, values["reason"])
                else:
                    claimed.append(delivery_id)
                session.execute(update(StoredDelivery).where(StoredDelivery.id == delivery_id)
                                .values(**values))
            want = limit - len(claimed)
            if len(due) <= want:
                # Every due delivery is in hand: no share to keep. They were read, not locked
                # (locking a backlog's extra row would hide it from the other workers until
                # this commit): the claiming UPDATE locks them, skipping any another worker
                # holds, and takes only those still pending.
                unlocked = [row.id for row in due]
            else:
                claimed += self._fair_shares(session, now, want, claimed)
                unlocked = []
            if not claimed and not unlocked:
                return claimed, None
            values = {"name": self.name,
                      "until": now + timedelta(seconds=self.config["CLAIM_SECONDS"])}
            if claimed:
                values["claimed"] = claimed
            if unlocked:
                values["unlocked"] = unlocked
            # nothing of this session's to keep in step: its reads so far were rows, not objects
            rows = session.execute(self._claiming(bool(claimed), bool(unlocked)), values,
                                   execution_options={"synchronize_session": False}).all()
            if not rows:
                return [], None
            rows.sort(key=lambda row: row.id)
            loaded = self._load(session, rows)
        return [row.id for row in rows], loaded

    def _first_look(self):
        """One statement for a claim's first look: up to ``limit`` deliveries whose claim
        expired, locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and up to ``limit + 1``
        (``limit_and_one``) due ones, read (no order among them: when they are at most
        ``limit``, they are every due delivery, and all are taken; one more means a backlog,
        shared fairly by :meth:`_fair_shares`), not in the ``blocked`` channels, as of
        ``now``. Rows: id, attempts, channel_id, expired. Channel and state make both parts
        ranges of ix_deliveries_claim, not scans of the inbox. Built once per worker: its
        values are parameters."""
        if self._first_look_statement is None:
            self._first_look_statement = _first_look(self.db.is_sqlite)
        return self._first_look_statement

    def _claiming(self, claimed: bool, unlocked: bool):
        """The claiming UPDATE, built once per worker for each of its shapes: it takes the
        lapsed claims taken over (``claimed`` ids), the due deliveries read without a lock
        (``unlocked`` ids: locked here, skipping any another worker holds, and taken only if
        still pending), or both, and returns them (:data:`_CLAIMED_COLUMNS`)."""
        statement = self._claiming_statements.get((claimed, unlocked))
        if statement is None:
            taking = []
            if claimed:
                taking.append(StoredDelivery.id.in_(bindparam("claimed", expanding=True)))
            if unlocked:
                taking.append(StoredDelivery.id.in_(self._lock_query(
                    select(StoredDelivery.id).where(
                        StoredDelivery.id.in_(bindparam("unlocked", expanding=True)),
                        StoredDelivery.state == PENDING))))
            statement = self._claiming_statements[(claimed, unlocked)] = (
                update(StoredDelivery).where(or_(*taking))
                .values(state=PROCESSING, claimed_by=bindparam("name"),
                        claimed_until=bindparam("until"))
                .returning(*_CLAIMED_COLUMNS))
        return statement

    def _fair_shares(self, session, now, want: int, claimed: list[int]) -> list[int]:
        """Up to ``want`` due deliveries of a backlog, in rounds of equal shares across the
        channels with work (in a rotating order), oldest first within each: a small store is
        never stuck behind a big store's backlog. Channels that filled their share may take
        more in the next round."""
        taken: list[int] = []
        channel_ids = self._channels_with_work(session, now)
        while channel_ids and len(taken) < want:
            share = max(1, -(-(want - len(taken)) // len(channel_ids)))
            hungry = []
            for channel_id in channel_ids:
                wanted = min(share, want - len(taken))
                if wanted <= 0:
                    break
                query = (select(StoredDelivery.id)
                         .where(StoredDelivery.channel_id == channel_id,
                                StoredDelivery.state == PENDING,
                                StoredDelivery.next_attempt_at <= now,
                                StoredDelivery.id.not_in(claimed + taken))
                         .order_by(StoredDelivery.next_attempt_at, StoredDelivery.id)
                         .limit(wanted))
                got = list(session.scalars(self._lock_query(query)))
                taken += got
                if len(got) == wanted:
                    hungry.append(channel_id)
            channel_ids = hungry
        return taken

    def _lock_query(self, query):
        return query if self.db.is_sqlite else query.with_for_update(skip_locked=True)

    def _channels_with_work(self, session, now) -> list[int]:
        """Channels with due deliveries, in a rotating order, minus blocked ones."""
        blocked_now = time.monotonic()
        # One index probe per channel (ix_deliveries_claim), not a scan of the backlog.
        due = select(StoredDelivery.id).where(StoredDelivery.channel_id == SalesChannel.id,
                                              StoredDelivery.state == PENDING,
                                              StoredDelivery.next_attempt_at <= now).exists()
        ids = [cid for cid in session.scalars(select(SalesChannel.id).where(due)
                                              .order_by(SalesChannel.id))
               if self.blocked.get(cid, 0) <= blocked_now]
        if not ids:
            return []
        self._rotation = (self._rotation + 1) % len(ids)
        return ids[self._rotation:] + ids[:self._rotation]

    def free_dead_claims(self) -> int:
        """Claims held by processes of this host that no longer run (core/owners.py) lapse
        now, instead of after ``CLAIM_SECONDS``: the next claim's first look takes them and
        counts the attempt, as for any lapsed claim. Returns how many. Run when the worker
        starts: ``orderhooks serve`` starts one in place of any that died."""
        now = utcnow()
        with self.db.session(durable=False) as session:
            held = session.scalars(select(StoredDelivery.claimed_by).where(
                StoredDelivery.channel_id.in_(select(SalesChannel.id)),
                StoredDelivery.state == PROCESSING, StoredDelivery.claimed_until >= now)
                .distinct()).all()
            dead = [owner for owner in held if owners.dead_here(owner)]
            if not dead:
                return 0
            freed = session.execute(update(StoredDelivery).where(
                StoredDelivery.channel_id.in_(select(SalesChannel.id)),
                StoredDelivery.state == PROCESSING, StoredDelivery.claimed_by.in_(dead))
                .values(claimed_until=now - timedelta(seconds=1))).rowcount
        log.warning("worker.freed_dead_claims", extra={"worker": self.name, "count": freed,
                                                       "detail": ", ".join(dead)})
        return freed

    def release(self, ids: list[int]) -> None:
        """Hand unprocessed claims back (graceful shutdown)."""
        if not ids:
            return
        with self.db.session() as session:
            session.execute(update(StoredDelivery).where(
                StoredDelivery.id.in_(ids), StoredDelivery.claimed_by == self.name,
                StoredDelivery.state == PROCESSING).values(state=PENDING, claimed_by=None,
                                                           claimed_until=None))

    # -- processing -------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim one batch and process it. Returns how many deliveries were processed."""
        ids, loaded = self._claim()
        if not ids:
            return 0
        if self.stopping.is_set():
            self.release(ids)
            return 0
        try:
            self.process_batch(ids, loaded)
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

    def run_forever(self) -> None:
        """The worker process's loop: housekeeping when due, then a batch, or a short wait when
        nothing is due, until ``stopping`` is set.

        A stored delivery rings the bell (core/wakeup.py): idle, the worker waits for it or the
        idle time, whichever comes first. A ``standby`` worker waits the idle time alone: every
        listening worker wakes at each ring, so beside one that listens, a second would pay a
        claim for every delivery only to find it taken, and split a trickle's batches in two
        (each batch's fixed cost paid twice as often, and their numbering steps queued on one
        lock). A standby one joins when work waits past the listening worker: it looks every
        idle interval, and claims batch after batch while they hold a tenth of a full batch or
        more (work waiting past the listening worker); a smaller one sends it back to looking
        every interval, so at a trickle it takes a delivery now and then, never half of them."""
        log.info("worker.started", extra={"worker": self.name, "standby": self.standby})
        self.free_dead_claims()
        bell = None if self.standby else Listener(self.db)
        # Alert mails go out on their own thread: a slow mail server never holds up a batch.
        alerts.Sender(self.app, self.stopping).start()
        try:
            while not self.stopping.is_set():
                try:
                    self.housekeeping()
                    done = self.run_once()
                    if done and (not self.standby or done >= self._backlog):
                        continue
                    if bell is None:
                        self.stopping.wait(self.idle_wait())
                    else:
                        bell.wait(self.idle_wait())
                except Exception:  # noqa: BLE001 — e.g. the database restarting: wait, go on
                    log.exception("worker.error")
                    self.stopping.wait(min(5.0, self.config["WORKER_IDLE_SECONDS"] * 4))
        finally:
            if bell is not None:
                bell.close()
        log.info("worker.stopped", extra={"worker": self.name})

    def idle_wait(self) -> float:
        """How long to wait for the bell with nothing due: the idle time, or less when a
        channel's API wait ends sooner (its deliveries are due then: the store's new rate-limit
        window is used from its start, not from the next idle tick)."""
        idle = self.config["WORKER_IDLE_SECONDS"]
        now = time.monotonic()
        ends = [until - now for until in self.blocked.values() if until > now]
        return max(0.001, min([idle, *ends]))

    def housekeeping(self, force: bool = False) -> None:
        """The periodic jobs (:mod:`core.housekeeping`), when due."""
        self.house.run(force)

    def process(self, delivery_id: int) -> str | None:
        """Process one claimed delivery; returns its outcome (None if the claim was lost)."""
        return self.process_batch([delivery_id]).get(delivery_id)

    def _load(self, session, rows) -> "Loaded":
        """The claimed deliveries (``rows``: :data:`_CLAIMED_COLUMNS`, in id order) as the
        batch carries them, and their channels' views."""
        work = [Claimed(r.id, r.channel_id, r.channel_type,
                        Delivery(body=r.body or b"", headers=Headers(r.headers or {}),
                                 received_at=r.received_at, id=r.id),
                        r.body is None) for r in rows]
        channel_rows = {c.id: c for c in session.scalars(
            _CHANNELS, {"ids": list({item.channel_id for item in work})})}
        # A channel whose settings cannot be read (e.g. credentials its plugin no longer
        # accepts) fails its own deliveries, not the batch's other channels.
        views: dict[int, object] = {}
        for cid, channel_row in channel_rows.items():
            try:
                views[cid] = view(channel_row, self.box, self.config["PUBLIC_BASE_URL"])
            except Exception as exc:  # noqa: BLE001
                log.exception("worker.channel_unreadable", extra={"channel_id": cid})
                views[cid] = exc
        imports.mark_known_orders(session, rows, work, views)
        return work, views

    def process_batch(self, ids: list[int], loaded: "Loaded | None" = None
                      ) -> dict[int, str | None]:
        """Translate a batch of claimed deliveries (channel API calls happen here, outside any
        transaction), then record every outcome in one transaction: one commit per batch.
        ``loaded``: what the claim read (:meth:`_claim`); without it, the deliveries still
        claimed by this worker are read first."""
        started = time.perf_counter()
        if loaded is None:
            with self.db.reading() as session:
                loaded = self._load(session, session.execute(select(*_CLAIMED_COLUMNS).where(
                    StoredDelivery.id.in_(ids), StoredDelivery.claimed_by == self.name,
                    StoredDelivery.state == PROCESSING).order_by(StoredDelivery.id)).all())
        work, views = loaded
        results: dict[int, list | Exception] = {}
        by_channel: dict[int, list[Claimed]] = {}
        for item in work:
            channel = views.get(item.channel_id, ChannelAPIError(f"no channel {item.channel_id}"))
            try:
                routed = channel if isinstance(channel, Exception) else self._route(item, channel)
            except Exception as exc:  # noqa: BLE001 — a plugin's failure is this delivery's
                routed = exc
            if routed is None:
                by_channel.setdefault(item.channel_id, []).append(item)
            else:
                results[item.id] = routed
        for channel_id, items in by_channel.items():
            adapter = self.channel_types.get(items[0].channel_type)
            for item, result in zip(items, self._translate(adapter, items, views[channel_id])):
                results[item.id] = result
                if isinstance(result, RetryLater):
                    self.blocked[channel_id] = time.monotonic() + result.remaining()
        imports.import_unknown_orders(self.db.Session, self.channel_types, work, results, views)
        for item in work:
            if isinstance(results.get(item.id), RetryLater):  # an import's read was throttled
                self.blocked[item.channel_id] = max(self.blocked.get(item.channel_id, 0.0),
                                                    time.monotonic() + results[item.id].remaining())
        outcomes = self._record(work, results)
        elapsed = time.perf_counter() - started
        for item in work:
            metrics.OUTCOMES.labels(item.channel_type, outcomes.get(item.id) or LOST_CLAIM).inc()
            metrics.PROCESS_SECONDS.labels(item.channel_type).observe(elapsed / max(1, len(work)))
        return outcomes

    def _route(self, item: Claimed, channel):
        """What becomes of a delivery before its plugin translates it: a result (an exception
        or intents) when it is settled here, None when the plugin must translate it."""
        adapter = self.channel_types.get(item.channel_type)
        if adapter is None:
            return ChannelAPIError(f"no plugin provides channel type {item.channel_type!r}")
        if item.body_missing:
            return [Ignore("the delivery's body was purged or redacted; nothing to do")]
        if not channel.active and not adapter.accepts_when_inactive(item.delivery, channel):
            return [Ignore("the channel is inactive")]
        return None

    @staticmethod
    def _translate(adapter, items: list[Claimed], channel) -> list:
        """One result per delivery: its intents (a list) or the exception that stopped it. A
        plugin that raises for the whole batch, or answers out of shape, is asked again one
        delivery at a time, so only the delivery that makes it fail fails (exceptions it hands
        back per delivery stay as they are: e.g. one API failure shared by an order's
        deliveries)."""
        def ask(group) -> tuple[list, bool]:
            try:
                answer = list(adapter.translate_many([item.delivery for item in group], channel))
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

    def _record(self, work: list[Claimed], results) -> dict[int, str | None]:
        """Record the batch's outcomes. Fast path: the whole batch in one transaction, orders
        prefetched in one query. If anything fails on the way — applying a delivery, a flush, the
        commit itself (a value the database refuses) — that transaction is rolled back and each
        delivery is recorded again in a transaction of its own; one that fails alone is counted
        as a failed attempt (retried with backoff, dead after MAX_ATTEMPTS), so one delivery can
        never hold back the others or the worker. If even recording that failure fails, the
        database itself is in trouble: the error propagates and the claims are released."""
        try:
            return self._record_batch(work, results)
        except Exception as exc:  # noqa: BLE001 — narrowed to its delivery below
            if _database_unavailable(exc):
                raise  # no delivery's fault: the claims are released, no attempt counted
            log.warning("worker.batch_record_failed", exc_info=True,
                        extra={"deliveries": len(work)})
        outcomes: dict[int, str | None] = {}
        for item in work:
            try:
                outcomes.update(self._record_batch([item], results))
            except Exception as exc:  # noqa: BLE001 — this delivery fails, not the batch
                if _database_unavailable(exc):
                    raise
                log.exception("worker.apply_failed", extra={"delivery_id": item.id})
                outcomes[item.id] = self._record_failure(item.id, exc)
        return outcomes

    def _record_failure(self, delivery_id: int, exc: Exception) -> str | None:
        with self.db.session() as session:
            query = select(StoredDelivery).where(StoredDelivery.id == delivery_id)
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = session.scalars(query).first()
            if row is None or row.claimed_by != self.name or row.state != PROCESSING:
                return None
            return self._failed(row, exc, utcnow())

    def _record_batch(self, work: list[Claimed], results) -> dict[int, str | None]:
        outcomes: dict[int, str | None] = {}
        now = utcnow()
        # Each delivery's intents as its row records them, made before the write transaction:
        # on SQLite every process's writers wait while it is open.
        forms = {item.id: [to_dict(intent) for intent in result] for item in work
                 if isinstance(result := results.get(item.id), list)}
        with self.db.session() as session, session.no_autoflush:
            # The batch's history lines and events go in one executemany per table.
            defer_inserts(session)
            rows = {r.id: r for r in session.scalars(
                _OWN_ROWS if self.db.is_sqlite else _OWN_ROWS_LOCKED,
                {"ids": [item.id for item in work]})}
            channel_rows = {c.id: c for c in session.scalars(
                _CHANNELS, {"ids": list({item.channel_id for item in work})})}
            cache = self._prefetch_orders(session, work, results)
            products.prefetch(session, [(item.channel_id, results.get(item.id)) for item in work])
            for item in work:
                row = rows.get(item.id)
                if row is None or row.claimed_by != self.name or row.state != PROCESSING:
                    outcomes[item.id] = None  # our claim expired; another worker has it
                    continue
                result = results[item.id]
                if isinstance(result, RetryLater):
                    self._reschedule(row, result.remaining(), f"throttled by the channel: "
                                                        f"{result.reason}", now)
                    outcomes[item.id] = THROTTLED
                elif isinstance(result, Exception):
                    outcomes[item.id] = self._failed(row, result, now)
                else:
                    outcomes[item.id] = self._apply(session, row, channel_rows[item.channel_id],
                                                    result, cache, forms[item.id])
            session.flush()
            # The batch's events are numbered and fanned out to the endpoints' messages in the
            # batch's own transaction: they commit with their changes, ready to POST.
            numbered = events.number_events(session) if events.emitted(session) else ()
            if numbered:
                fanout.fan_out_caught_up(session, numbered)
        if numbered:
            events.wake(self.db)
        for delivery_id, outcome in outcomes.items():
            if outcome in (Outcome.APPLIED, Outcome.IGNORED, Outcome.DEFERRED):
                log.info("worker.processed", extra={"delivery_id": delivery_id,
                                                    "outcome": outcome})
        return outcomes

    def _prefetch_orders(self, session, work: list[Claimed], results) -> dict:
        """The batch's orders in one query per channel (locked on PostgreSQL), so applying an
        intent does not query its order again."""
        wanted: dict[int, set[str]] = {}
        imported: dict[int, set[str]] = {}
        refunds: list[tuple[int, RecordRefund]] = []
        for item in work:
            result = results.get(item.id)
            if isinstance(result, list):
                for intent in result:
                    if isinstance(intent, ORDER_INTENTS):
                        wanted.setdefault(item.channel_id, set()).add(
                            str(intent.channel_order_id))
                    if isinstance(intent, CreateOrder):
                        imported.setdefault(item.channel_id, set()).add(
                            intent.channel_order_id)
                    elif isinstance(intent, RecordRefund):
                        refunds.append((item.channel_id, intent))
        cache: dict = {}
        for channel_id, order_ids in imported.items():
            # which of the orders this batch imports have intents held for them (one query)
            cache[(orders.HELD, channel_id)] = set(session.scalars(
                select(PendingIntent.channel_order_id).where(
                    PendingIntent.channel_id == channel_id,
                    PendingIntent.channel_order_id.in_(order_ids))))
        for channel_id, order_ids in wanted.items():
            for key in order_ids:
                cache[(channel_id, key)] = None
            for order in session.scalars(_ORDERS if self.db.is_sqlite else _ORDERS_LOCKED,
                                         {"channel_id": channel_id, "keys": list(order_ids)}):
                cache[(channel_id, order.channel_order_id)] = order
        # the refunds' duplicate checks and their orders' lines, once for the batch
        rmas.prefetch(session, [(cache.get((channel_id, str(intent.channel_order_id))), intent)
                                for channel_id, intent in refunds])
        return cache

    def _apply(self, session, row: StoredDelivery, channel_row: SalesChannel, intents: list,
               cache: dict | None, forms: list[dict]) -> str:
        """Carry out a delivery's intents; ``forms``: the intents as its row records them."""
        decisions: list[tuple[str, str]] = []
        deferred_until = None
        for intent in intents:
            if isinstance(intent, ORDER_INTENTS):
                carry_out = (orders.import_order if isinstance(intent, CreateOrder)
                             else orders.apply_intent)
                decision = carry_out(session, channel_row, intent, delivery_id=row.id,
                                     config=self.config, cache=cache)
                decisions.append((decision.outcome,
                                  f"order {intent.channel_order_id}: {decision.reason}"))
                if decision.held_until is not None:
                    deferred_until = max(deferred_until or decision.held_until,
                                         decision.held_until)
            elif isinstance(intent, DeactivateChannel):
                decisions.append((Outcome.APPLIED, deactivate(session, channel_row,
                                                              intent.reason)))
            elif isinstance(intent, RedactPersonalData):
                decisions.append((Outcome.APPLIED, redact(session, channel_row, intent,
                                                          exclude_delivery=row.id)))
                # The request itself names the customer: once carried out, drop its body too.
                row.body, row.body_purged_at = None, utcnow()
            elif isinstance(intent, (UpsertProduct, DeleteProduct)):
                decisions.append(products.apply_intent(session, channel_row.id, intent,
                                                       delivery_id=row.id,
                                                       received_at=row.received_at))
            elif isinstance(intent, Ignore):
                decisions.append((Outcome.IGNORED, intent.reason))
            else:
                decisions.append((Outcome.IGNORED, f"unknown intent {intent!r}"))
        if not decisions:
            decisions.append((Outcome.IGNORED, "the delivery asks for nothing"))
        outcomes = {o for o, _ in decisions}
        outcome = next(o for o in (Outcome.DEFERRED, Outcome.APPLIED, Outcome.IGNORED)
                       if o in outcomes)
        row.outcome = outcome
        row.reason = "; ".join(r for _, r in decisions)
        row.intents = forms
        row.deferred_until = deferred_until
        row.state, row.claimed_by, row.claimed_until = DONE, None, None
        row.processed_at = utcnow()
        return outcome

    def _reschedule(self, row: StoredDelivery, delay: float, reason: str, now) -> None:
        """Throttled: try again later without counting an attempt."""
        row.state, row.claimed_by, row.claimed_until = PENDING, None, None
        row.reason = reason
        row.next_attempt_at = now + timedelta(seconds=delay)

    def _failed(self, row: StoredDelivery, exc: Exception, now) -> str:
        """Count a failed attempt: retried with backoff, dead after MAX_ATTEMPTS; dead at once
        when no retry can succeed (an intent the service cannot hold)."""
        row.attempts = (row.attempts or 0) + 1
        message = describe(exc)
        row.claimed_by, row.claimed_until = None, None
        if isinstance(exc, InvalidIntent):
            row.state, row.outcome, row.processed_at = DONE, Outcome.DEAD, now
            row.reason = f"dead: the delivery cannot be applied: {message}"
            log.error("worker.dead", extra={"delivery_id": row.id, "error": message})
            alerts.delivery_dead(object_session(row), row.channel_id, row.id, row.reason)
            return Outcome.DEAD
        if row.attempts >= self.config["MAX_ATTEMPTS"]:
            row.state, row.outcome, row.processed_at = DONE, Outcome.DEAD, now
            row.reason = f"dead after {row.attempts} attempts; last error: {message}"
            log.error("worker.dead", extra={"delivery_id": row.id, "error": message})
            alerts.delivery_dead(object_session(row), row.channel_id, row.id, row.reason)
            return Outcome.DEAD
        delay = backoff(row.attempts, self.config["RETRY_BASE_SECONDS"],
                        self.config["RETRY_MAX_SECONDS"])
        row.state, row.outcome = PENDING, Outcome.FAILED
        row.reason = f"attempt {row.attempts} failed: {message}"
        row.next_attempt_at = now + timedelta(seconds=delay)
        log.warning("worker.failed", extra={"delivery_id": row.id, "error": message,
                                            "attempt": row.attempts,
                                            "retry_in": round(delay, 1)})
        return Outcome.FAILED


# A batch's statements, built once: building a statement and its cache key costs more CPU than
# running it in a batch of one delivery. What varies is bound (lists as expanding parameters).
_CHANNELS = select(SalesChannel).where(SalesChannel.id.in_(bindparam("ids", expanding=True)))
#: The batch's own claimed rows (their bodies and headers came with the claim: not read again).
#: The PostgreSQL form waits for a lock (no SKIP LOCKED): a row briefly locked by someone else
#: (e.g. a redaction) would otherwise look like a lost claim.
_OWN_ROWS = (select(StoredDelivery)
             .where(StoredDelivery.id.in_(bindparam("ids", expanding=True)))
             .options(defer(StoredDelivery.body), defer(StoredDelivery.headers)))
_OWN_ROWS_LOCKED = _OWN_ROWS.with_for_update()
#: A channel's orders the batch names (locked on PostgreSQL until the batch commits).
_ORDERS = select(Order).where(Order.channel_id == bindparam("channel_id"),
                              Order.channel_order_id.in_(bindparam("keys", expanding=True)))
_ORDERS_LOCKED = _ORDERS.with_for_update()


def _first_look(sqlite: bool):
    """:meth:`Worker._first_look`'s statement."""
    columns = (StoredDelivery.id, StoredDelivery.attempts, StoredDelivery.channel_id)
    now = bindparam("now", type_=StoredDelivery.next_attempt_at.type)
    # The state as a literal: the partial index ix_deliveries_lapsed is chosen only for a
    # condition that names its predicate (a bound parameter could be any state).
    lapsed = (StoredDelivery.state == literal_column(f"'{PROCESSING}'"),
              StoredDelivery.claimed_until < now)
    due = (StoredDelivery.state == PENDING, StoredDelivery.next_attempt_at <= now)
    unblocked = SalesChannel.id.not_in(bindparam("blocked", expanding=True))
    parts = (("lapsed", True, lapsed, true(), bindparam("limit", type_=Integer)),
             ("due", False, due, unblocked, bindparam("limit_and_one", type_=Integer)))
    if sqlite:
        return union_all(*(select(select(*columns, literal(expired).label("expired")).where(
            StoredDelivery.channel_id.in_(select(SalesChannel.id).where(where_channel)),
            *conditions).limit(size).subquery(name))
            for name, expired, conditions, where_channel, size in parts))
    # PostgreSQL's planner may take ``IN (channels)`` for a scan of the whole inbox (or of the
    # index past its first column); a lateral subquery per channel keeps each to that
    # channel's range of the index. The lapsed claims are locked there (a locking clause is
    # allowed in a subquery, not in a UNION's arm).
    ctes = []
    for name, expired, conditions, where_channel, size in parts:
        listed = select(SalesChannel.id).where(where_channel).subquery(f"{name}_channels")
        of_channel = select(*columns).where(StoredDelivery.channel_id == listed.c.id,
                                            *conditions).limit(size)
        if expired:
            of_channel = of_channel.with_for_update(skip_locked=True)
        of_channel = of_channel.lateral(f"{name}_of_channel")
        ctes.append(select(of_channel.c.id, of_channel.c.attempts, of_channel.c.channel_id,
                           literal(expired).label("expired"))
                    .select_from(listed).join(of_channel, true()).limit(size).cte(name))
    return union_all(*(select(cte) for cte in ctes))


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


def _database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached (down, restarting, connection lost): an outage, not a
    value it refused, so no delivery is blamed for it."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)
