"""The outbound sender: POSTs each event to each endpoint that wants it, signed per Standard
Webhooks, retried on a schedule, in order per order. It runs as a thread of ``orderhooks
worker``, or as a process of its own (``orderhooks sender``, woken by the events bell of
core/wakeup.py); several share the work through leases.

For each endpoint, in turn and one at a time (a lease on its row: one sender per endpoint, so
its messages go out in the order they were made):

1. fan-out: the events past the endpoint's place in the feed (core/events.py: positions never
   skip a committed event) become its messages, in feed order, and its place moves on — in one
   transaction with the endpoint's row locked, so an event becomes a message exactly once
   (core/fanout.py). The worker does this in its batch's own transaction for the events the
   batch numbers, so they are usually messages already; the sender takes the rest;
2. sending: its due messages, oldest first, the batch's orders side by side in up to
   ``ORDER_LANES`` lanes, each order's messages one POST at a time; a message whose order has an
   earlier message waiting for a retry waits too (a later event for an order never overtakes an
   earlier one); the first failure stops every lane before its next POST, so an endpoint that is
   down costs at most one attempt per lane per round, not one timeout per waiting message;
3. recording: each attempt (status, latency, the first ``RESPONSE_SLICE`` bytes of the answer,
   or the error) and the message's new state, in one transaction per batch or per
   ``RECORD_SECONDS`` of a slow batch (one multi-row insert of the attempts, one update per
   answer status of the delivered messages). A kill between the POST and this commit sends the
   message again: delivery is at least once, and the ``webhook-id`` (the event's id) lets a
   receiver drop the repeat.

A sender that hears the events bell (``orderhooks sender``: events numbered by any process wake
it) keeps an endpoint's lease from one pass to the next while it runs, renewing it once half of
it has passed, and gives it back when it stops or finds the endpoint disabled or deleted: a pass
that carries one event then takes no lease and gives none back. Another sender takes such an
endpoint only once its lease has run out, so the endpoints of a sender that dies wait up to
``lease_seconds`` (60 s, or four POST timeouts if longer) before another sender serves them. A
worker's sender thread is woken only by the events its own process numbers, so it gives an
endpoint back after each pass: a sender in another worker takes the events that worker
numbers at once instead of waiting for this one's idle wait.

POSTs go through urllib3 (one pool manager shared by the sending threads, keep-alive per host):
no redirect is followed, no retry is made inside a POST, at most ``RESPONSE_SLICE`` bytes of an
answer are read, the environment's proxies are used and ``~/.netrc`` is not read.

Endpoints are served by a pool of threads, so a slow or dead endpoint holds back only itself.
A failed attempt is retried after the next delay of ``ORDERHOOKS_WEBHOOK_RETRY_SCHEDULE`` (Svix's
by default), spread by ±20 % jitter; after the last one the message is ``failed`` (re-sendable
from the admin API). An endpoint that answers 410 Gone, or whose every attempt failed for
``ORDERHOOKS_WEBHOOK_DISABLE_AFTER_SECONDS``, is disabled with an ``endpoint.disabled`` event;
its events keep becoming nothing until it is enabled again, when it resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.client import HTTPException

import certifi
import orjson
import urllib3
from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy
from sqlalchemy import (Integer, bindparam, false, func, insert, null, or_, select, true,
                        update)
from urllib3.exceptions import (ConnectTimeoutError, NewConnectionError, ProxyError,
                                ReadTimeoutError, SSLError)

from . import alerts, endpoints, events, fanout, metrics, owners, wakeup
from .clock import utcnow
from .config import retry_schedule
from .models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage

log = logging.getLogger("orderhooks.sender")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Bytes of an answer kept on its attempt: enough to read an error, never a 5 MB page.
RESPONSE_SLICE = 2048
#: Messages sent per batch, and events turned into messages per fan-out.
MESSAGE_BATCH = 100
#: Most pending messages read at once while looking for a batch's due ones (the first read
#: takes a batch's worth; each further one, only needed past messages held behind a retry,
#: takes more).
DUE_PAGE_MAX = 5000
#: A due scan that found nothing to send is remembered at most this long (less if a held
#: message comes due sooner, nothing once any attempt is recorded for the endpoint): until
#: then the endpoint's next scans read only the messages made since. A message re-sent from
#: the admin API meanwhile waits at most this long.
REST_SECONDS = 10.0
#: Orders of one endpoint sent side by side (each order's messages still one at a time).
ORDER_LANES = 8
FANOUT_BATCH = fanout.BATCH
#: Attempts are recorded at least this often while a batch is sent: what a kill can make the
#: next sender send again is what one such stretch sent.
RECORD_SECONDS = 0.5
#: Jitter: each retry delay times a random factor in this range.
JITTER = (0.8, 1.2)


USER_AGENT = "orderhooks-webhooks/0.1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    message_id: int
    event_id: str
    order_key: str | None
    body: str
    #: When the event was written (the delivery-time metric starts there).
    written_at: datetime


@dataclass(slots=True)
class Rest:
    """What a due scan that found nothing to send learnt: every pending message up to
    ``read_to`` is held (its order's key in ``held``) until ``until`` at the soonest, as long as
    the endpoint's newest attempt is still ``last_attempt``."""
    until: datetime
    read_to: int
    held: set
    last_attempt: int | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    latency_ms: float
    body: str | None = None
    error: str | None = None
    #: No answer within the timeout (status None).
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def result(self) -> str:
        """The attempt in a word for the metrics: ``2xx`` ... ``5xx``, ``timeout``, ``error``
        (no HTTP answer: refused, reset, TLS, proxy)."""
        if self.status is None:
            return "timeout" if self.timed_out else "error"
        return f"{min(max(self.status // 100, 1), 5)}xx"


class Sender:
    def __init__(self, app, name: str):
        self.config = app.config
        self.db = app.extensions["orderhooks.db"]
        self.box = app.extensions["orderhooks.box"]
        self.name = f"sender:{name}"
        self.schedule = retry_schedule(self.config["WEBHOOK_RETRY_SCHEDULE"])
        self.timeout = float(self.config["WEBHOOK_TIMEOUT_SECONDS"])
        #: An endpoint's lease outlives a batch: sending stops at half of it.
        self.lease_seconds = max(60.0, 4 * self.timeout)
        self.pool = ThreadPoolExecutor(int(self.config["WEBHOOK_SENDERS"]),
                                       thread_name_prefix="orderhooks-sender")
        self._busy: set[int] = set()
        self._busy_lock = threading.Lock()
        self._local = threading.local()
        self._lane_pools: list[ThreadPoolExecutor] = []
        self._proxy_cache: dict[str, str | None] = {}
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._http_timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout)
        #: endpoint id -> (its sealed secrets in use, their signers)
        self._signer_cache: dict[int, tuple[tuple, list]] = {}
        #: endpoint id -> its last due scan that found nothing to send
        self._rests: dict[int, Rest] = {}
        #: Whether leases are kept between passes (module docstring): set by :meth:`hear_bell`,
        #: since only a sender that every numbering wakes may hold endpoints while it waits.
        self.keep_leases = False
        #: endpoint id -> when (``time.monotonic``) this sender's lease on it is to be renewed:
        #: the endpoints whose lease it holds (written under ``_busy_lock``)
        self._held: dict[int, float] = {}

    # -- the loop ---------------------------------------------------------------------------

    def run_forever(self, stopping: threading.Event) -> None:
        """Until ``stopping``: number waiting events, hand each enabled endpoint with nothing in
        flight to the pool, then wait for events numbered in this process or the idle time."""
        log.info("sender.started", extra={"worker": self.name})
        try:
            self.free_dead_leases()
        except Exception:  # noqa: BLE001 — they run out by themselves at lease_until
            log.exception("sender.error")
        while not stopping.is_set():
            seen = events.generation()
            try:
                self.round()
            except Exception:  # noqa: BLE001 — e.g. the database restarting: wait and go on
                log.exception("sender.error")
                stopping.wait(2.0)
                continue
            events.wait_numbered(seen, self.config["WORKER_IDLE_SECONDS"])
        self.pool.shutdown(wait=True, cancel_futures=True)
        for lanes in self._lane_pools:
            lanes.shutdown(wait=False, cancel_futures=True)
        self.give_back()
        log.info("sender.stopped", extra={"worker": self.name})

    def hear_bell(self, stopping: threading.Event) -> threading.Thread:
        """For a sender in a process of its own: events numbered by other processes (the events
        bell) wake this process's loop and its endpoints' threads as events numbered here do
        (:func:`events.wake`), so the rest of the sender need not know where they came from.
        Such a sender keeps its leases between passes (:attr:`keep_leases`)."""
        self.keep_leases = True
        def listen() -> None:
            bell = wakeup.Listener(self.db, wakeup.EVENTS)
            try:
                while not stopping.is_set():
                    if bell.wait(min(1.0, self.config["WORKER_IDLE_SECONDS"])):
                        events.wake()
            finally:
                bell.close()
                events.wake()  # the loop sees the stop now, not after its idle wait
        thread = threading.Thread(target=listen, name="orderhooks-sender-bell", daemon=True)
        thread.start()
        return thread

    def round(self) -> list:
        with self.db.reading() as session:
            # One statement: the enabled endpoints, and a row of no endpoint when a committed
            # event waits for its number (events committed by another process): the
            # sequencer's write transaction only when this probe, a read, finds one.
            rows = session.execute(_ROUND).all()
        ids = sorted(endpoint_id for endpoint_id, _ in rows if endpoint_id is not None)
        if any(waiting for _, waiting in rows):
            events.sequence(self.db)
        if self._held:
            self.give_back(keep=set(ids))
        futures = []
        for endpoint_id in ids:
            with self._busy_lock:
                if endpoint_id in self._busy:
                    continue  # its thread is still at work: one sender per endpoint
                self._busy.add(endpoint_id)
            futures.append(self.pool.submit(self._serve_guarded, endpoint_id))
        return futures

    def run_until_idle(self, max_rounds: int = 100) -> int:
        """Send what is due now, endpoint after endpoint, until nothing is (tests)."""
        total = 0
        for _ in range(max_rounds):
            events.sequence(self.db)
            with self.db.Session() as session:
                ids = session.scalars(select(WebhookEndpoint.id).where(
                    WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)).all()
            sent = sum(self.serve(endpoint_id) for endpoint_id in ids)
            total += sent
            if not sent:
                break
        return total

    def _serve_guarded(self, endpoint_id: int) -> None:
        try:
            self.serve(endpoint_id, follow=True, keep=self.keep_leases)
        except Exception:  # noqa: BLE001 — one endpoint's trouble must not stop the others
            log.exception("sender.endpoint_error", extra={"endpoint_id": endpoint_id})
        finally:
            with self._busy_lock:
                self._busy.discard(endpoint_id)

    def serve(self, endpoint_id: int, follow: bool = False, keep: bool = False) -> int:
        """Fan out and send for one endpoint while it has due work, under one lease; returns
        the attempts made. With ``follow``, also while events are numbered in this process
        meanwhile: the round found the endpoint busy and skipped it, so they are taken here
        rather than left to the idle wait, without a lease and a release between. With
        ``keep``, the lease is kept when the endpoint is drained (module docstring), unless
        the endpoint was found disabled or deleted."""
        attempts = 0
        holding = endpoint_id in self._held
        kept = False
        try:
            while True:
                seen = events.generation()
                # the lease is renewed once half of it has passed, not every batch
                if time.monotonic() >= self._held.get(endpoint_id, 0.0):
                    # a lease whose UPDATE raised may still have been taken: given back below
                    held_before, holding = holding, True
                    if not self._lease(endpoint_id):
                        holding = held_before  # another sender's: nothing to give back
                        break
                    with self._busy_lock:
                        self._held[endpoint_id] = time.monotonic() + self.lease_seconds / 2
                # One read for the look at the feed and the due messages; a fan-out of its own
                # (a write) only when the endpoint is behind the feed, then the due read again.
                fanned, looked = 0, self._look(endpoint_id, behind=True)
                if looked is _BEHIND:
                    fanned = self._fan_out(endpoint_id)
                    looked = self._look(endpoint_id, behind=False)
                if looked is None:
                    break  # disabled or deleted: its lease is given back
                made, failed, full, enabled = self._send_batch(endpoint_id, *looked)
                attempts += made
                if not enabled:
                    break
                # drained: a batch that was not full after a fan-out that was not full either
                if not made or failed or (not full and fanned < FANOUT_BATCH):
                    if follow and events.generation() != seen:
                        continue
                    kept = keep
                    break
        finally:
            if not kept:
                with self._busy_lock:
                    self._held.pop(endpoint_id, None)
                if holding:
                    self._release(endpoint_id)
        return attempts

    def free_dead_leases(self) -> int:
        """Endpoint leases held by senders of this host that no longer run (core/owners.py)
        are freed now, instead of at their ``lease_until``: a sender process started in place
        of a dead one serves its endpoints at once. Returns how many."""
        with self.db.session(durable=False) as session:
            held = session.scalars(select(WebhookEndpoint.lease_owner).where(
                WebhookEndpoint.lease_owner.is_not(None)).distinct()).all()
            dead = [owner for owner in held if owners.dead_here(owner, "sender:")]
            if not dead:
                return 0
            freed = session.execute(update(WebhookEndpoint).where(
                WebhookEndpoint.lease_owner.in_(dead)).values(
                lease_owner=None, lease_until=None,
                updated_at=WebhookEndpoint.updated_at)).rowcount
        log.warning("sender.freed_dead_leases", extra={"worker": self.name, "count": freed,
                                                      "detail": ", ".join(dead)})
        return freed

    def give_back(self, keep: set | frozenset = frozenset()) -> None:
        """Give back the leases this sender keeps between passes, but those on ``keep``
        (:meth:`round`: the enabled endpoints) and those of endpoints it is serving now: at the
        end of :meth:`run_forever`, and for endpoints disabled or deleted while it waited."""
        with self._busy_lock:
            mine = [e for e in self._held if e not in keep and e not in self._busy]
            self._busy.update(mine)
        for endpoint_id in mine:
            try:
                with self._busy_lock:
                    self._held.pop(endpoint_id, None)
                self._release(endpoint_id)
            except Exception:  # noqa: BLE001 — it runs out by itself at lease_until
                log.exception("sender.release_error", extra={"endpoint_id": endpoint_id})
            finally:
                with self._busy_lock:
                    self._busy.discard(endpoint_id)

    # -- leases -----------------------------------------------------------------------------

    # An endpoint's lease and its release are leases in the sense of Database.session's
    # durable=False: one lost in a database crash leaves the endpoint free (or held until
    # lease_until), and the next sender fans out and sends from the committed messages.
    def _lease(self, endpoint_id: int) -> bool:
        now = utcnow()
        with self.db.session(durable=False) as session:
            taken = session.execute(_LEASE, {
                "endpoint_id": endpoint_id, "owner": self.name, "now": now,
                "new_owner": self.name, "until": now + timedelta(seconds=self.lease_seconds)})
            return taken.rowcount == 1

    def _release(self, endpoint_id: int) -> None:
        with self.db.session(durable=False) as session:
            session.execute(_RELEASE, {"endpoint_id": endpoint_id, "owner": self.name})

    # -- fan-out ----------------------------------------------------------------------------

    def _fan_out(self, endpoint_id: int) -> int:
        """The endpoint's next events become its messages (:mod:`core.fanout`); returns how
        many events were read (fewer than ``FANOUT_BATCH``: the endpoint caught up with the
        feed). The worker fans out the events its batches number; this takes the rest, when
        :meth:`_look` found the endpoint behind the feed (a write transaction)."""
        with self.db.session() as session:
            return fanout.fan_out(session, endpoint_id, FANOUT_BATCH)

    def _look(self, endpoint_id: int, behind: bool):
        """One read transaction: the endpoint's row and, with ``behind``, the feed's newest
        position in the same statement; ``_BEHIND`` if the endpoint's place is behind it (a
        look without a lock: :func:`fanout.fan_out` looks again under it), else the endpoint's
        URL, its signers, its due messages (:meth:`_due`) and whether its attempts are failing
        (``failing_since``). None: the endpoint is disabled or deleted."""
        now = utcnow()
        with self.db.reading() as session:
            if behind:
                found = session.execute(_ENDPOINT_AND_NEWEST,
                                        {"endpoint_id": endpoint_id}).first()
                endpoint, top = found if found is not None else (None, None)
            else:
                endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None or not endpoint.enabled:
                return None
            if behind and endpoint.position < (top or 0):
                return _BEHIND
            return (endpoint.url, self._signers(endpoint, now),
                    self._due(session, endpoint_id, now), endpoint.failing_since is not None)

    # -- sending ----------------------------------------------------------------------------

    def _due(self, session, endpoint_id: int, now) -> list[Outgoing]:
        """Due messages, oldest first, minus those behind an earlier message of their order
        that waits for a retry.

        The endpoint's pending messages are read in id order (``ix_webhook_messages_pending``:
        equality on endpoint and state, then id — a plan with no sort and no per-row subquery,
        whatever the planner knows of the table) and the order rule is kept while reading: a
        message not due yet holds back every later message of its order. A backlog therefore
        costs one page per batch however long it is; only messages held behind a retry are
        read again on the next batch.

        When every pending message is held (an endpoint that is down, its backlog behind
        retries), the scan is remembered (:class:`Rest`) and the next ones read only the
        messages made since — unless a held message may have come due, or an attempt was
        recorded since by any sender (a message it sent may now hold its order).

        The first page carries each message's event (joined by its primary key), so a batch
        found there is read in one statement; events of messages picked past it are read
        after the scan. The endpoint's newest attempt is read only when there is a rest to
        check or to keep: not on the pass that sends what it finds."""
        rest = self._rests.pop(endpoint_id, None)
        if rest is not None and now >= rest.until:
            rest = None
        last_attempt = None
        if rest is not None:
            # taken before the scan: an attempt committed after it voids what the scan learns
            last_attempt = self._last_attempt(session, endpoint_id)
        if rest is not None and rest.last_attempt == last_attempt:
            held, after, soonest = rest.held, rest.read_to, rest.until
        else:
            held, after, soonest = set(), 0, now + timedelta(seconds=REST_SECONDS)
        picked: list[tuple[int, str | None, int]] = []
        #: event row id -> the event, read with the first page (usually all a batch needs)
        found: dict[int, object] = {}
        page, first = MESSAGE_BATCH, True
        while len(picked) < MESSAGE_BATCH:
            rows = session.execute(_FIRST_DUE_PAGE if first else _NEXT_DUE_PAGE, {
                "endpoint_id": endpoint_id, "after": after, "page": page}).all()
            for row in rows:
                message_id, order_key, due_at, event_id = row[:4]
                if first and row.event_id is not None:  # (None: the event is gone)
                    found[event_id] = row
                if order_key is not None and order_key in held:
                    continue
                if due_at > now:  # waits for a retry: its order's later messages wait too
                    if order_key is not None:
                        held.add(order_key)
                    soonest = min(soonest, due_at)
                    continue
                picked.append((message_id, order_key, event_id))
                if len(picked) == MESSAGE_BATCH:
                    break
            if rows:
                after = rows[-1][0]
            if len(rows) < page:
                break
            page, first = min(4 * page, DUE_PAGE_MAX), False
        if not picked:
            if after:  # messages were read, every one held: remembered
                if rest is None:
                    # Read after the scan, which is sound only because the caller holds the
                    # endpoint's lease: no other sender records an attempt for it meanwhile,
                    # and this one records none before its next scan.
                    last_attempt = self._last_attempt(session, endpoint_id)
                self._rests[endpoint_id] = Rest(soonest, after, held, last_attempt)
            return []
        missing = [event_id for _, _, event_id in picked if event_id not in found]
        if missing:  # picked past the first page
            found.update((row.id, row) for row in session.execute(select(
                Event.id, *_EVENT_COLUMNS).where(Event.id.in_(missing))))
        return [Outgoing(message_id, found[event_id].event_id, order_key,
                         _render(found[event_id]), found[event_id].occurred_at)
                for message_id, order_key, event_id in picked if event_id in found]

    @staticmethod
    def _last_attempt(session, endpoint_id: int) -> int | None:
        return session.scalar(select(func.max(WebhookAttempt.id)).where(
            WebhookAttempt.endpoint_id == endpoint_id))

    def _signers(self, endpoint: WebhookEndpoint, now) -> list:
        """The endpoint's signers, decrypted and decoded once for as long as its secrets in
        use stay the same (a rotation, or the end of its overlap, changes them)."""
        in_use = (endpoint.secret_sealed,
                  endpoint.previous_secret_sealed if endpoint.previous_secret_until
                  and endpoint.previous_secret_until > now else None)
        found = self._signer_cache.get(endpoint.id)
        if found is None or found[0] != in_use:
            found = self._signer_cache[endpoint.id] = (in_use, endpoints.signers(
                endpoints.signing_secrets(endpoint, self.box, now)))
        return found[1]

    def _send_batch(self, endpoint_id: int, url: str, signers: list, batch: list[Outgoing],
                    failing: bool = True) -> tuple[int, bool, bool, bool]:
        """Send a batch of due messages (:meth:`_look`); returns (attempts made, whether one
        failed, whether the batch was full, whether the endpoint is still enabled).

        The batch's orders go out side by side (at most ``ORDER_LANES`` at once), each order's
        messages one after another: a message is POSTed only after every earlier message of
        its order in the batch succeeded, so a later event never overtakes an earlier one. The
        first failure stops every lane before its next POST (what is in flight finishes), so
        an endpoint that is down costs at most one attempt per lane per round."""
        if not batch:
            return 0, False, False, True
        lanes: dict[object, list[Outgoing]] = {}
        for item in batch:  # messages with no order key are ordered with nothing: a lane each
            lanes.setdefault(item.order_key or ("message", item.message_id), []).append(item)
        results: list[tuple[Outgoing, Answer]] = []
        lock = threading.Lock()
        stop = threading.Event()
        ends = time.monotonic() + self.lease_seconds / 2
        label = str(endpoint_id)

        def send_lane(items: list[Outgoing]) -> None:
            for item in items:
                if stop.is_set() or time.monotonic() > ends:
                    return
                answer = self.post(url, signers, item)
                metrics.webhook_attempt(label, answer.result, answer.latency_ms / 1000,
                                        item.written_at if answer.ok else None)
                with lock:
                    results.append((item, answer))
                if not answer.ok:
                    stop.set()
                    return

        if len(lanes) == 1:
            send_lane(batch)
            pending: set = set()
        else:
            pending = {self._lanes().submit(send_lane, items) for items in lanes.values()}
        made, enabled = 0, True
        while True:  # record as the lanes go: a slow receiver's answers are kept every stretch
            if pending:
                _, pending = wait(pending, timeout=RECORD_SECONDS)
            with lock:
                taken, results[:] = list(results), []
            if taken:
                enabled = self._record(endpoint_id, taken, failing) and enabled
                # the endpoint's failing_since is now set if and only if its last answer failed
                failing = not taken[-1][1].ok
                made += len(taken)
            if not pending:
                break
        return made, stop.is_set(), len(batch) == MESSAGE_BATCH, enabled

    def _lanes(self) -> ThreadPoolExecutor:
        """The lanes of the endpoint this thread serves (a pool per sending thread, so a slow
        endpoint's lanes never take a fast one's)."""
        if not hasattr(self._local, "lanes"):
            self._local.lanes = ThreadPoolExecutor(ORDER_LANES,
                                                   thread_name_prefix="orderhooks-lane")
            with self._busy_lock:
                self._lane_pools.append(self._local.lanes)
        return self._local.lanes

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The connection pools for ``url``: direct, or through the proxy the environment
        names for it (HTTPS_PROXY, NO_PROXY, ...; looked up once per URL). Shared by every
        sending thread (urllib3's pools are thread-safe), keep-alive per host."""
        try:
            proxy = self._proxy_cache[url]
        except KeyError:
            proxy = self._proxy_cache[url] = select_proxy(url, get_environ_proxies(url))
        manager = self._managers.get(proxy)
        if manager is None:
            with self._busy_lock:
                manager = self._managers.get(proxy)
                if manager is None:
                    manager = self._managers[proxy] = _pool_manager(
                        proxy, int(self.config["WEBHOOK_SENDERS"]) * ORDER_LANES)
        return manager

    def post(self, url: str, signers: list, item: Outgoing) -> Answer:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **endpoints.sign(signers, item.event_id, utcnow(), item.body)}
        started = time.perf_counter()
        try:
            # Never a redirect (with retries off urllib3 hands a 3xx back as it came): it would
            # carry the signed event somewhere nobody named. No retry here either: a failed
            # attempt is recorded and retried on the schedule. No ~/.netrc is read.
            response = self._manager(url).urlopen(
                "POST", url, body=item.body.encode(), headers=headers, redirect=False,
                retries=False, timeout=self._http_timeout, preload_content=False)
            try:
                head = response.read(RESPONSE_SLICE)
                latency = (time.perf_counter() - started) * 1000
                status = response.status
            finally:
                _let_go(response)
        except (urllib3.exceptions.HTTPError, HTTPException, OSError, ValueError) as exc:
            return Answer(None, (time.perf_counter() - started) * 1000,
                          error=_describe(exc, self.timeout),
                          timed_out=_timed_out(exc))
        text = head.decode("utf-8", "replace")
        error = None
        if 300 <= status < 400:
            error = f"HTTP {status}, a redirect: not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        return Answer(status, latency, text, error)

    # -- recording --------------------------------------------------------------------------

    def _record(self, endpoint_id: int, results: list[tuple[Outgoing, Answer]],
                failing: bool = True) -> bool:
        """Every attempt of ``results`` and its message's new state, in one transaction: the
        attempts as one multi-row insert, the delivered messages as one update per status.
        ``failing``: whether the endpoint's ``failing_since`` may be set (as this sender last
        saw or left it: under its lease no other sender changes it, and the admin API only
        clears it). Returns whether the endpoint is still enabled (not deleted, not disabled
        here)."""
        now = utcnow()
        if not failing and all(answer.ok for _, answer in results):
            return self._record_successes(endpoint_id, results, now)
        disable_after = timedelta(seconds=self.config["WEBHOOK_DISABLE_AFTER_SECONDS"])
        with self.db.session() as session:
            # The endpoint's row is locked (PostgreSQL; SQLite's write transaction is the only
            # one): deleting it, and its messages with it, waits until these are recorded.
            endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
            if endpoint is None:
                return False  # deleted meanwhile, its messages with it
            failed = [item.message_id for item, answer in results if not answer.ok]
            messages = {m.id: m for m in session.scalars(select(WebhookMessage).where(
                WebhookMessage.id.in_(failed)))} if failed else {}
            attempts, delivered = [], {}
            for item, answer in results:
                attempts.append(_attempt(endpoint_id, item, answer, now))
                if answer.ok:
                    delivered.setdefault(answer.status, []).append(item.message_id)
                    endpoint.failing_since = None
                    continue
                message = messages.get(item.message_id)
                if message is None:
                    continue
                message.last_status, message.last_error = answer.status, answer.error
                message.attempts += 1
                if message.attempts > len(self.schedule):
                    message.state = FAILED
                else:
                    delay = self.schedule[message.attempts - 1] * random.uniform(*JITTER)
                    message.next_attempt_at = now + timedelta(seconds=delay)
                endpoint.failing_since = endpoint.failing_since or now
                if endpoint.enabled and answer.status == 410:
                    self._disable(session, endpoint, "the endpoint answered 410 Gone")
                elif endpoint.enabled and now - endpoint.failing_since >= disable_after:
                    self._disable(session, endpoint, f"every attempt failed for "
                                                     f"{int(disable_after.total_seconds())} s "
                                                     f"(last: {answer.error})")
            if attempts:
                session.execute(_INSERT_ATTEMPTS, attempts)
            _delivered(session, delivered, now)
            return endpoint.enabled

    def _record_successes(self, endpoint_id: int, results: list[tuple[Outgoing, Answer]],
                          now) -> bool:
        """:meth:`_record` of answers that all succeeded, for an endpoint whose attempts were
        not failing: nothing of the endpoint's row changes, so it is neither read nor locked.
        The messages are updated first, and attempts are written for the messages updated:
        deleting the endpoint deletes its messages before its attempts (core/endpoints.py), so
        either that waits for this commit and then deletes these attempts too, or these
        messages are gone already and nothing is recorded, as :meth:`_record` records nothing
        then."""
        delivered: dict[int, list[int]] = {}
        for item, answer in results:
            delivered.setdefault(answer.status, []).append(item.message_id)
        with self.db.session() as session:
            updated = _delivered(session, delivered, now)
            if not updated:
                return False  # deleted meanwhile, its messages with it
            session.execute(_INSERT_ATTEMPTS,
                            [_attempt(endpoint_id, item, answer, now)
                             for item, answer in results if item.message_id in updated])
        return True

    @staticmethod
    def _disable(session, endpoint: WebhookEndpoint, reason: str) -> None:
        endpoint.enabled, endpoint.disabled_reason = False, reason
        log.warning("sender.endpoint_disabled", extra={"endpoint_id": endpoint.id,
                                                       "detail": reason})
        events.emit(session, "endpoint.disabled",
                    {"endpoint": endpoints.view(endpoint), "reason": reason})
        alerts.endpoint_disabled(session, endpoint.id, endpoint.url, reason)


def _attempt(endpoint_id: int, item: Outgoing, answer: Answer, now) -> dict:
    return {"endpoint_id": endpoint_id, "message_id": item.message_id, "at": now,
            "status_code": answer.status, "latency_ms": round(answer.latency_ms, 3),
            "response_body": answer.body, "error": answer.error}


def _delivered(session, delivered: dict[int, list[int]], now) -> set[int]:
    """The delivered messages (answer status -> their ids): one update per status. Returns the
    ids of the messages updated (a message deleted meanwhile is not)."""
    updated: set[int] = set()
    for status, ids in delivered.items():
        updated.update(session.scalars(_DELIVERED, {"ids": ids, "now": now, "status": status}))
    return updated


# A pass's writes, built once, through the tables: what varies is bound. Leases run in
# sessions of their own, and the messages and attempts written are never held as objects, so
# the ORM's bulk statements (and keeping a session's objects in step) would only add CPU.
_ENDPOINTS, _MESSAGES = WebhookEndpoint.__table__, WebhookMessage.__table__
#: Take or renew an enabled endpoint's lease: free, this sender's own, or lapsed.
_LEASE = (update(_ENDPOINTS)
          .where(_ENDPOINTS.c.id == bindparam("endpoint_id"), _ENDPOINTS.c.enabled.is_(True),
                 or_(_ENDPOINTS.c.lease_owner.is_(None),
                     _ENDPOINTS.c.lease_owner == bindparam("owner"),
                     _ENDPOINTS.c.lease_until < bindparam("now")))
          .values(lease_owner=bindparam("new_owner"), lease_until=bindparam("until"),
                  updated_at=_ENDPOINTS.c.updated_at))
#: Give back this sender's lease of an endpoint.
_RELEASE = (update(_ENDPOINTS)
            .where(_ENDPOINTS.c.id == bindparam("endpoint_id"),
                   _ENDPOINTS.c.lease_owner == bindparam("owner"))
            .values(lease_owner=None, lease_until=None, updated_at=_ENDPOINTS.c.updated_at))
_INSERT_ATTEMPTS = insert(WebhookAttempt.__table__)

#: An event's columns its message's POST needs (:func:`_render`).
_EVENT_COLUMNS = (Event.event_id, Event.type, Event.occurred_at, Event.channel_id, Event.data)
#: A page of the due scan (:meth:`Sender._due`): (message id, order key, due at, event row id).
_DUE_PAGE = select(WebhookMessage.id.label("message_id"), WebhookMessage.order_key,
                   WebhookMessage.next_attempt_at, WebhookMessage.event_id.label("event_row"))
#: The scan's first page, with each message's event (an outer join: one that retention
#: deleted meanwhile reads as None): a batch of one event needs no second statement.
_DUE_PAGE_WITH_EVENTS = _DUE_PAGE.add_columns(*_EVENT_COLUMNS).outerjoin(
    Event, Event.id == WebhookMessage.event_id)
#: A page of an endpoint's pending messages past ``after``, in id order: the scan's first page
#: with their events, its later ones without.
_FIRST_DUE_PAGE, _NEXT_DUE_PAGE = (
    page.where(WebhookMessage.endpoint_id == bindparam("endpoint_id"),
               WebhookMessage.state == PENDING, WebhookMessage.id > bindparam("after"))
    .order_by(WebhookMessage.id).limit(bindparam("page", type_=Integer))
    for page in (_DUE_PAGE_WITH_EVENTS, _DUE_PAGE))
#: Messages delivered (``ids``, all answered ``status``), returning the ids still there.
_DELIVERED = (update(_MESSAGES).where(_MESSAGES.c.id.in_(bindparam("ids", expanding=True)))
              .values(state=DELIVERED, delivered_at=bindparam("now"),
                      last_status=bindparam("status"), last_error=None)
              .returning(_MESSAGES.c.id))
#: :meth:`Sender.round`'s one statement: (id, False) per enabled endpoint, and (None, True) when
#: a committed event has no position yet (an index probe, as :func:`events.unnumbered`).
_ROUND = select(WebhookEndpoint.id, false()).where(WebhookEndpoint.enabled.is_(True)).union_all(
    select(null(), true()).where(select(Event.id).where(Event.position.is_(None)).exists()))
#: The feed's newest position, read with the endpoint's row (:meth:`Sender._look`).
_NEWEST_POSITION = select(func.max(Event.position)).scalar_subquery()
#: :meth:`Sender._look`'s endpoint, with the feed's newest position.
_ENDPOINT_AND_NEWEST = select(WebhookEndpoint, _NEWEST_POSITION).where(
    WebhookEndpoint.id == bindparam("endpoint_id"))
#: :meth:`Sender._look`: the endpoint is behind the feed (a fan-out first).
_BEHIND = object()


def _render(event) -> str:
    """An event's body: its feed form as compact JSON (orjson; the standard library for what
    orjson refuses, e.g. an integer beyond 64 bits)."""
    view = events.public(event)
    try:
        return orjson.dumps(view).decode()
    except TypeError:
        return json.dumps(view, separators=(",", ":"))


def _pool_manager(proxy: str | None, connections: int) -> urllib3.PoolManager:
    """Keep-alive pools verifying TLS against certifi's certificates (what requests trusts),
    through ``proxy`` (its user and password as Proxy-Authorization) when one is named."""
    options = {"num_pools": 64, "maxsize": connections, "block": False,
               "cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
    if proxy is None:
        return urllib3.PoolManager(**options)
    user, password = get_auth_from_url(proxy)
    headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)


def _let_go(response) -> None:
    """An answer read to its end has given its connection back for the next POST; one with
    more to read is closed instead (a 5 MB answer is never read to reuse a connection)."""
    if response.connection is not None:
        response.close()
        response.release_conn()


def _timed_out(exc: BaseException) -> bool:
    # urllib3's NewConnectionError is a ConnectTimeoutError: a refused connection is not a
    # timeout
    return isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, TimeoutError)) and \
        not isinstance(exc, NewConnectionError)


def _describe(exc: BaseException, timeout: float) -> str:
    if _timed_out(exc):
        return f"no answer within {timeout:g} s ({type(exc).__name__})"
    kind = "SSLError" if isinstance(exc, SSLError) else \
        "ProxyError" if isinstance(exc, ProxyError) else "ConnectionError"
    cause: BaseException = exc
    for _ in range(10):  # the innermost cause names it: ConnectionResetError, ...
        if cause.__context__ is None:
            break
        cause = cause.__context__
    return f"{kind}: {type(cause).__name__}"[:500]
