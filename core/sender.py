"""The outbound sender: POSTs each event to each endpoint that wants it, signed per Standard
Webhooks, retried on a schedule, in order per order. It runs as a thread of ``orderhooks
worker`` (one per process; several processes share the work through leases).

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
from datetime import timedelta

import requests
from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import aliased

from . import alerts, endpoints, events, fanout
from .clock import utcnow
from .config import retry_schedule
from .models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage

log = logging.getLogger("orderhooks.sender")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Bytes of an answer kept on its attempt: enough to read an error, never a 5 MB page.
RESPONSE_SLICE = 2048
#: Messages sent per batch, and events turned into messages per fan-out.
MESSAGE_BATCH = 100
#: Orders of one endpoint sent side by side (each order's messages still one at a time).
ORDER_LANES = 8
FANOUT_BATCH = fanout.BATCH
#: Attempts are recorded at least this often while a batch is sent: what a kill can make the
#: next sender send again is what one such stretch sent.
RECORD_SECONDS = 0.5
#: Jitter: each retry delay times a random factor in this range.
JITTER = (0.8, 1.2)


@dataclass(frozen=True, slots=True)
class Outgoing:
    message_id: int
    event_id: str
    order_key: str | None
    body: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    latency_ms: float
    body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


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
        self._proxy_cache: dict[str, dict] = {}

    # -- the loop ---------------------------------------------------------------------------

    def run_forever(self, stopping: threading.Event) -> None:
        """Until ``stopping``: number waiting events, hand each enabled endpoint with nothing in
        flight to the pool, then wait for events numbered in this process or the idle time."""
        log.info("sender.started", extra={"worker": self.name})
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
        log.info("sender.stopped", extra={"worker": self.name})

    def round(self) -> list:
        with self.db.reading() as session:
            ids = session.scalars(select(WebhookEndpoint.id).where(
                WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)).all()
            # events committed by another process wait for their numbers: the sequencer's
            # write transaction only when the probe (a read) finds one
            waiting = events.unnumbered(session)
        if waiting:
            events.sequence(self.db)
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
            self.serve(endpoint_id, follow=True)
        except Exception:  # noqa: BLE001 — one endpoint's trouble must not stop the others
            log.exception("sender.endpoint_error", extra={"endpoint_id": endpoint_id})
        finally:
            with self._busy_lock:
                self._busy.discard(endpoint_id)

    def serve(self, endpoint_id: int, follow: bool = False) -> int:
        """Fan out and send for one endpoint while it has due work, under one lease; returns
        the attempts made. With ``follow``, also while events are numbered in this process
        meanwhile: the round found the endpoint busy and skipped it, so they are taken here
        rather than left to the idle wait, without a lease and a release between."""
        attempts = 0
        renew_at = 0.0  # the lease is renewed once half of it has passed, not every batch
        try:
            while True:
                seen = events.generation()
                if time.monotonic() >= renew_at:
                    if not self._lease(endpoint_id):
                        break
                    renew_at = time.monotonic() + self.lease_seconds / 2
                fanned = self._fan_out(endpoint_id)
                made, failed, full = self._send_batch(endpoint_id)
                attempts += made
                # drained: a batch that was not full after a fan-out that was not full either
                if not made or failed or (not full and fanned < FANOUT_BATCH):
                    if follow and events.generation() != seen:
                        continue
                    break
        finally:
            self._release(endpoint_id)
        return attempts

    # -- leases -----------------------------------------------------------------------------

    def _lease(self, endpoint_id: int) -> bool:
        now = utcnow()
        with self.db.session() as session:
            taken = session.execute(update(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True),
                or_(WebhookEndpoint.lease_owner.is_(None),
                    WebhookEndpoint.lease_owner == self.name,
                    WebhookEndpoint.lease_until < now)).values(
                lease_owner=self.name, lease_until=now + timedelta(seconds=self.lease_seconds),
                updated_at=WebhookEndpoint.updated_at))
            return taken.rowcount == 1

    def _release(self, endpoint_id: int) -> None:
        with self.db.session() as session:
            session.execute(update(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.lease_owner == self.name)
                .values(lease_owner=None, lease_until=None,
                        updated_at=WebhookEndpoint.updated_at))

    # -- fan-out ----------------------------------------------------------------------------

    def _fan_out(self, endpoint_id: int) -> int:
        """The endpoint's next events become its messages (:mod:`core.fanout`); returns how
        many events were read (fewer than ``FANOUT_BATCH``: the endpoint caught up with the
        feed). The worker fans out the events its batches number; this takes the rest."""
        with self.db.reading() as session:  # usually the worker's batch did it: a look first
            if not fanout.behind(session, endpoint_id):
                return 0
        with self.db.session() as session:
            return fanout.fan_out(session, endpoint_id, FANOUT_BATCH)

    # -- sending ----------------------------------------------------------------------------

    def _due(self, session, endpoint_id: int, now) -> list[Outgoing]:
        """Due messages, oldest first, minus those behind an earlier message of their order
        that waits for a retry."""
        earlier = aliased(WebhookMessage)
        blocked = select(earlier.id).where(
            earlier.endpoint_id == WebhookMessage.endpoint_id,
            earlier.order_key == WebhookMessage.order_key, earlier.state == PENDING,
            earlier.id < WebhookMessage.id, earlier.next_attempt_at > now).exists()
        rows = session.execute(select(WebhookMessage.id, WebhookMessage.order_key, Event).join(
            Event, Event.id == WebhookMessage.event_id).where(
            WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.state == PENDING,
            WebhookMessage.next_attempt_at <= now, ~blocked)
            .order_by(WebhookMessage.id).limit(MESSAGE_BATCH)).all()
        return [Outgoing(message_id, event.event_id, order_key,
                         json.dumps(events.public(event), separators=(",", ":")))
                for message_id, order_key, event in rows]

    def _send_batch(self, endpoint_id: int) -> tuple[int, bool, bool]:
        """Send a batch of due messages; returns (attempts made, whether one failed, whether the
        batch was full).

        The batch's orders go out side by side (at most ``ORDER_LANES`` at once), each order's
        messages one after another: a message is POSTed only after every earlier message of
        its order in the batch succeeded, so a later event never overtakes an earlier one. The
        first failure stops every lane before its next POST (what is in flight finishes), so
        an endpoint that is down costs at most one attempt per lane per round."""
        now = utcnow()
        with self.db.reading() as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None or not endpoint.enabled:
                return 0, False, False
            url = endpoint.url
            secrets_ = endpoints.signing_secrets(endpoint, self.box, now)
            batch = self._due(session, endpoint_id, now)
        if not batch:
            return 0, False, False
        lanes: dict[object, list[Outgoing]] = {}
        for item in batch:  # messages with no order key are ordered with nothing: a lane each
            lanes.setdefault(item.order_key or ("message", item.message_id), []).append(item)
        results: list[tuple[Outgoing, Answer]] = []
        lock = threading.Lock()
        stop = threading.Event()
        ends = time.monotonic() + self.lease_seconds / 2

        def send_lane(items: list[Outgoing]) -> None:
            for item in items:
                if stop.is_set() or time.monotonic() > ends:
                    return
                answer = self.post(url, secrets_, item)
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
        made = 0
        while True:  # record as the lanes go: a slow receiver's answers are kept every stretch
            if pending:
                _, pending = wait(pending, timeout=RECORD_SECONDS)
            with lock:
                taken, results[:] = list(results), []
            if taken:
                self._record(endpoint_id, taken)
                made += len(taken)
            if not pending:
                break
        return made, stop.is_set(), len(batch) == MESSAGE_BATCH

    def _lanes(self) -> ThreadPoolExecutor:
        """The lanes of the endpoint this thread serves (a pool per sending thread, so a slow
        endpoint's lanes never take a fast one's)."""
        if not hasattr(self._local, "lanes"):
            self._local.lanes = ThreadPoolExecutor(ORDER_LANES,
                                                   thread_name_prefix="orderhooks-lane")
            with self._busy_lock:
                self._lane_pools.append(self._local.lanes)
        return self._local.lanes

    def _http(self) -> requests.Session:
        """One keep-alive session per sending thread (requests sessions are not thread-safe)."""
        if not hasattr(self._local, "session"):
            session = requests.Session()
            session.headers["User-Agent"] = "orderhooks-webhooks/0.1"
            # No ~/.netrc credentials on a POST to a receiver; proxies from the environment
            # are still used (:meth:`_proxies`).
            session.trust_env = False
            self._local.session = session
        return self._local.session

    def _proxies(self, url: str) -> dict:
        """The environment's proxies for ``url`` (HTTPS_PROXY, NO_PROXY, ...), once per URL."""
        found = self._proxy_cache.get(url)
        if found is None:
            found = self._proxy_cache[url] = requests.utils.get_environ_proxies(url)
        return found

    def post(self, url: str, secrets_: list[str], item: Outgoing) -> Answer:
        headers = {"Content-Type": "application/json",
                   **endpoints.sign(secrets_, item.event_id, utcnow(), item.body)}
        started = time.perf_counter()
        try:
            # Never a redirect: it would carry the signed event somewhere nobody named.
            with self._http().post(url, data=item.body.encode(), headers=headers,
                                   proxies=self._proxies(url),
                                   timeout=self.timeout, allow_redirects=False,
                                   stream=True) as response:
                head = next(response.iter_content(RESPONSE_SLICE), b"")[:RESPONSE_SLICE]
                latency = (time.perf_counter() - started) * 1000
                status = response.status_code
        except requests.RequestException as exc:
            self._local.__dict__.pop("session", None)  # a broken connection is not reused
            return Answer(None, (time.perf_counter() - started) * 1000,
                          error=_describe(exc, self.timeout))
        text = head.decode("utf-8", "replace")
        error = None
        if 300 <= status < 400:
            error = f"HTTP {status}, a redirect: not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        return Answer(status, latency, text, error)

    # -- recording --------------------------------------------------------------------------

    def _record(self, endpoint_id: int, results: list[tuple[Outgoing, Answer]]) -> None:
        """Every attempt of ``results`` and its message's new state, in one transaction: the
        attempts as one multi-row insert, the delivered messages as one update per status."""
        now = utcnow()
        disable_after = timedelta(seconds=self.config["WEBHOOK_DISABLE_AFTER_SECONDS"])
        with self.db.session() as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                return
            failed = [item.message_id for item, answer in results if not answer.ok]
            messages = {m.id: m for m in session.scalars(select(WebhookMessage).where(
                WebhookMessage.id.in_(failed)))} if failed else {}
            alive = set(session.scalars(select(WebhookMessage.id).where(
                WebhookMessage.id.in_([item.message_id for item, _ in results]))))
            attempts, delivered = [], {}
            for item, answer in results:
                if item.message_id not in alive:
                    continue  # deleted with its endpoint meanwhile
                attempts.append({"endpoint_id": endpoint_id, "message_id": item.message_id,
                                 "at": now, "status_code": answer.status,
                                 "latency_ms": round(answer.latency_ms, 3),
                                 "response_body": answer.body, "error": answer.error})
                if answer.ok:
                    delivered.setdefault(answer.status, []).append(item.message_id)
                    endpoint.failing_since = None
                    continue
                message = messages[item.message_id]
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
                session.execute(insert(WebhookAttempt), attempts)
            for status, ids in delivered.items():
                session.execute(update(WebhookMessage).where(WebhookMessage.id.in_(ids)).values(
                    state=DELIVERED, delivered_at=now, last_status=status, last_error=None),
                    execution_options={"synchronize_session": False})

    @staticmethod
    def _disable(session, endpoint: WebhookEndpoint, reason: str) -> None:
        endpoint.enabled, endpoint.disabled_reason = False, reason
        log.warning("sender.endpoint_disabled", extra={"endpoint_id": endpoint.id,
                                                       "detail": reason})
        events.emit(session, "endpoint.disabled",
                    {"endpoint": endpoints.view(endpoint), "reason": reason})
        alerts.endpoint_disabled(session, endpoint.id, endpoint.url, reason)


def _describe(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s ({type(exc).__name__})"
    cause: BaseException = exc
    for _ in range(10):  # the innermost cause names it: ConnectionResetError, ...
        if cause.__context__ is None:
            break
        cause = cause.__context__
    return f"{type(exc).__name__}: {type(cause).__name__}"[:500]
