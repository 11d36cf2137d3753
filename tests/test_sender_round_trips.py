"""The sender's fixed cost per pass: at 100 events/s every pass carries one event, so the
statements and transactions of a pass are its latency and its CPU (issue 17). Counted here for
one pass (a round and the endpoint's serve) carrying one event, with ceilings at what the
sender costs now: a change that adds a round trip to every pass fails here. And the leases a
sender keeps between passes: held while it runs, given back when it stops or the endpoint is
disabled or deleted, taken by another sender once they run out."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event, select, update

from core import endpoints, events, fanout
from core.clock import utcnow
from core.models import WebhookEndpoint
from core.sender import Sender
from tests.webhook_receiver import Receiver

#: A pass carrying one event the worker's batch already made a message of, the endpoint's lease
#: kept from an earlier pass: the round's one read (enabled endpoints and the unnumbered-event
#: probe), one read transaction of the endpoint's row with the feed's top and of its due
#: messages joined with their events, and the recording (attempts inserted, messages updated:
#: the endpoint's row is not read when its attempts were not failing and every answer
#: succeeded).
STEADY = (5, 3)
#: The first such pass of a sender keeping its leases: the lease taken besides.
FIRST = (6, 4)
#: A worker's sender thread, which gives the lease back after each pass.
GIVEN_BACK = (7, 5)
#: An event numbered but not made a message (numbered by a process without the worker's
#: fan-out): the look finds the endpoint behind, a fan-out transaction, the due read again.
FANNED_HERE = (11, 5)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*"}


@pytest.fixture
def db(app):
    return app.extensions["orderhooks.db"]


@pytest.fixture
def endpoint_id(app, db, receiver) -> int:
    with db.session() as session:
        return endpoints.create(session, app.extensions["orderhooks.box"],
                                url=receiver.url("/ok"))[0].id


def make_sender(app, name: str, keep_leases: bool) -> Sender:
    sender = Sender(app, name)
    sender.keep_leases = keep_leases
    return sender


@pytest.fixture
def senders():
    made: list[Sender] = []
    yield made
    for sender in made:
        sender.pool.shutdown(wait=True)


class Counter:
    """Statements (SQLite's BEGINs left out: PostgreSQL's are not cursor statements) and
    transactions on the database's engines, the lease engine's too."""

    def __init__(self, db):
        self.engines = {db.engine, db.lease_engine}
        self.statements: list[str] = []
        self.transactions = 0

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("BEGIN"):
            self.statements.append(" ".join(statement.split()))

    def _begin(self, conn):
        self.transactions += 1

    @property
    def cost(self) -> tuple[int, int]:
        return len(self.statements), self.transactions

    def __enter__(self):
        for engine in self.engines:
            sa_event.listen(engine, "before_cursor_execute", self._statement)
            sa_event.listen(engine, "begin", self._begin)
        return self

    def __exit__(self, *exc):
        for engine in self.engines:
            sa_event.remove(engine, "before_cursor_execute", self._statement)
            sa_event.remove(engine, "begin", self._begin)


def worker_batch(db, order: int, fan_out: bool = True) -> None:
    """An event written and numbered in one transaction, as a worker's batch does, and made the
    endpoints' messages there too (core/worker.py) unless ``fan_out`` is false."""
    with db.session() as session:
        events.emit(session, "order.cancelled", {"order": {"id": order}},
                    order_key=f"order:{order}")
        numbered = events.number_events(session)
        if fan_out:
            fanout.fan_out_caught_up(session, numbered)
    events.wake(db)


def within(cost: tuple[int, int], ceiling: tuple[int, int]) -> bool:
    """Statements and transactions each at most the ceiling's."""
    return cost[0] <= ceiling[0] and cost[1] <= ceiling[1]


def one_pass(sender: Sender) -> None:
    futures = sender.round()
    assert futures, "the round served no endpoint"
    for future in futures:
        future.result(timeout=10)


def counted_pass(db, sender: Sender) -> Counter:
    with Counter(db) as counted:
        one_pass(sender)
    return counted


def lease_owner(db, endpoint_id: int) -> str | None:
    with db.Session() as session:
        return session.get(WebhookEndpoint, endpoint_id).lease_owner


def test_a_pass_carrying_one_event_costs_its_ceiling(app, db, receiver, endpoint_id, senders):
    sender = make_sender(app, "counted", keep_leases=True)
    senders.append(sender)
    costs = []
    for n in range(4):
        worker_batch(db, n)
        counted = counted_pass(db, sender)
        costs.append(counted.cost)
        assert len(receiver.at("/ok")) == n + 1, counted.statements
    assert within(costs[0], FIRST), costs
    assert all(within(cost, STEADY) for cost in costs[1:]), costs
    assert lease_owner(db, endpoint_id) == sender.name  # kept


def test_a_sender_that_gives_its_lease_back_each_pass_costs_its_ceiling(
        app, db, receiver, endpoint_id, senders):
    sender = make_sender(app, "thread", keep_leases=False)
    senders.append(sender)
    for n in range(3):
        worker_batch(db, n)
        counted = counted_pass(db, sender)
        assert within(counted.cost, GIVEN_BACK), counted.statements
        assert len(receiver.at("/ok")) == n + 1
        assert lease_owner(db, endpoint_id) is None  # given back


def test_an_event_the_worker_did_not_fan_out_costs_its_ceiling(app, db, receiver, endpoint_id,
                                                               senders):
    sender = make_sender(app, "counted", keep_leases=True)
    senders.append(sender)
    worker_batch(db, 0)
    one_pass(sender)  # the lease taken
    worker_batch(db, 1, fan_out=False)
    counted = counted_pass(db, sender)
    assert len(receiver.at("/ok")) == 2
    assert within(counted.cost, FANNED_HERE), counted.statements


def test_the_newest_attempt_is_not_read_when_nothing_rests(app, db, receiver, endpoint_id,
                                                           senders):
    """The due read of a pass that sends what it finds reads no attempt; a scan that found
    every message held is remembered with the newest attempt, and the next scan checks it."""
    sender = make_sender(app, "counted", keep_leases=True)
    senders.append(sender)
    sender.schedule = [60.0]
    worker_batch(db, 1)
    counted = counted_pass(db, sender)
    assert not [s for s in counted.statements if "FROM webhook_attempts" in s]
    receiver.behave("/ok", "500")
    worker_batch(db, 2)
    one_pass(sender)  # fails: order 2 waits 60 s for its retry
    worker_batch(db, 2)  # held behind it
    counted = counted_pass(db, sender)
    assert [s for s in counted.statements if "FROM webhook_attempts" in s]
    assert endpoint_id in sender._rests
    assert len(receiver.at("/ok")) == 2  # the held one was not sent


def test_a_kept_lease_holds_off_other_senders_until_it_runs_out(app, db, receiver, endpoint_id,
                                                                senders):
    sender = make_sender(app, "keeper", keep_leases=True)
    other = make_sender(app, "other", keep_leases=True)
    senders.extend([sender, other])
    worker_batch(db, 1)
    one_pass(sender)
    assert lease_owner(db, endpoint_id) == sender.name
    worker_batch(db, 2)
    assert other.run_until_idle() == 0  # one sender per endpoint: the lease is kept
    assert len(receiver.at("/ok")) == 1
    # the keeper stalled: once its lease runs out (here: set to have, and the keeper's clock
    # past its renewal), another sender takes it
    with db.session() as session:
        session.execute(update(WebhookEndpoint).values(
            lease_until=utcnow() - timedelta(seconds=1)))
    sender._held[endpoint_id] = time.monotonic() - 1
    assert other.run_until_idle() == 1
    assert len(receiver.at("/ok")) == 2
    # the keeper, going on, finds its lease taken and leaves the endpoint alone
    worker_batch(db, 3)
    one_pass(other)  # other keeps it now
    worker_batch(db, 4)
    one_pass(sender)
    assert endpoint_id not in sender._held
    assert lease_owner(db, endpoint_id) == other.name
    assert len(receiver.at("/ok")) == 3


def test_a_kept_lease_is_renewed_at_half_its_life(app, db, receiver, endpoint_id, senders):
    sender = make_sender(app, "keeper", keep_leases=True)
    senders.append(sender)
    worker_batch(db, 1)
    one_pass(sender)
    with db.Session() as session:
        first = session.get(WebhookEndpoint, endpoint_id).lease_until
    sender._held[endpoint_id] = time.monotonic() - 1  # half of it has passed
    worker_batch(db, 2)
    counted = counted_pass(db, sender)
    assert [s for s in counted.statements if s.startswith("UPDATE webhook_endpoints SET lease")]
    with db.Session() as session:
        assert session.get(WebhookEndpoint, endpoint_id).lease_until > first
    assert sender._held[endpoint_id] > time.monotonic() + sender.lease_seconds / 2 - 5


def test_a_kept_lease_is_given_back_when_the_endpoint_is_disabled_or_deleted(
        app, admin, db, receiver, endpoint_id, senders):
    sender = make_sender(app, "keeper", keep_leases=True)
    senders.append(sender)
    worker_batch(db, 1)
    one_pass(sender)
    assert lease_owner(db, endpoint_id) == sender.name
    admin.patch(f"/webhook-endpoints/{endpoint_id}", {"enabled": False})
    assert sender.round() == []  # nothing to serve: the lease is given back all the same
    assert lease_owner(db, endpoint_id) is None and endpoint_id not in sender._held
    # enabled again, any sender takes it at once
    admin.patch(f"/webhook-endpoints/{endpoint_id}", {"enabled": True})
    other = make_sender(app, "other", keep_leases=True)
    senders.append(other)
    worker_batch(db, 2)
    one_pass(other)
    assert lease_owner(db, endpoint_id) == other.name
    # deleted: forgotten (a sender serving a disabled endpoint gives it back too)
    admin.request("DELETE", f"/webhook-endpoints/{endpoint_id}")
    assert other.round() == []
    assert endpoint_id not in other._held


def test_an_endpoint_the_sender_disables_is_given_back(app, db, receiver, endpoint_id,
                                                       senders):
    sender = make_sender(app, "keeper", keep_leases=True)
    senders.append(sender)
    receiver.behave("/ok", "410")
    worker_batch(db, 1)
    one_pass(sender)
    with db.Session() as session:
        found = session.get(WebhookEndpoint, endpoint_id)
        assert not found.enabled and found.lease_owner is None
    assert endpoint_id not in sender._held


def test_a_stopping_sender_gives_its_leases_back(app, db, receiver, endpoint_id, senders):
    sender = Sender(app, "process")
    senders.append(sender)
    stopping = threading.Event()
    bell = sender.hear_bell(stopping)  # a sender process: it keeps its leases
    assert sender.keep_leases
    loop = threading.Thread(target=sender.run_forever, args=(stopping,))
    loop.start()
    try:
        worker_batch(db, 1)
        deadline = time.monotonic() + 10
        while not receiver.at("/ok") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(receiver.at("/ok")) == 1
        while sender._busy and time.monotonic() < deadline:  # its pass ends
            time.sleep(0.02)
        assert lease_owner(db, endpoint_id) == sender.name
    finally:
        stopping.set()
        loop.join(timeout=20)
        bell.join(timeout=5)
    assert not loop.is_alive()
    assert lease_owner(db, endpoint_id) is None


# -- recording without the endpoint's row ----------------------------------------------------

def test_a_success_after_a_failure_in_the_same_batch_clears_failing_since(app, db, endpoint_id,
                                                                         senders):
    """A batch recorded in two stretches: the first holds a failure (the endpoint's row read and
    failing_since set), the second a success, which must clear it although the endpoint was
    not failing when the batch was read."""
    slow = Receiver(slow_seconds=0.8)  # beyond RECORD_SECONDS: a stretch of its own
    try:
        with db.session() as session:
            session.get(WebhookEndpoint, endpoint_id).url = slow.url("/slow")
        slow.behave("/slow", "slow")
        sender = make_sender(app, "counted", keep_leases=False)
        senders.append(sender)
        with db.session() as session:
            refused = events.emit(session, "order.cancelled", {"order": {"id": 1}},
                                  order_key="order:1").event_id
            events.emit(session, "order.cancelled", {"order": {"id": 2}}, order_key="order:2")
        slow.refused.add(refused)  # answered 500 at once; the other one 204 after 0.8 s
        assert sender.run_until_idle() == 2
        with db.Session() as session:
            assert session.get(WebhookEndpoint, endpoint_id).failing_since is None
        assert sorted(r.headers["webhook-id"] == refused for r in slow.at("/slow")) == [
            False, True]
    finally:
        slow.stop()


def test_successes_for_an_endpoint_deleted_meanwhile_record_nothing(app, admin, db, receiver,
                                                                    endpoint_id, senders):
    from sqlalchemy import func

    from core.models import WebhookAttempt, WebhookMessage
    from core.sender import Answer
    sender = make_sender(app, "counted", keep_leases=True)
    senders.append(sender)
    worker_batch(db, 1)
    url, signers, batch, failing = sender._look(endpoint_id, behind=True)
    assert len(batch) == 1 and not failing
    admin.request("DELETE", f"/webhook-endpoints/{endpoint_id}")
    answer = sender.post(url, signers, batch[0])
    assert answer.ok
    assert sender._record(endpoint_id, [(batch[0], answer)], failing=False) is False
    with db.Session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 0


def test_messages_picked_past_the_scans_first_page_carry_their_events(app, db, endpoint_id):
    """The first page of the due scan reads the events with the messages; a message picked from
    a later page (here: the first page's first message waits for a retry, so the batch's last
    one is on the second page) has its event read after the scan."""
    import json

    from core.clock import utcnow
    from core.models import WebhookMessage
    from core.sender import MESSAGE_BATCH
    sender = Sender(app, "pages")
    sender.pool.shutdown(wait=False)
    with db.session() as session:
        written = [events.emit(session, "order.cancelled", {"n": n}, order_key=f"order:{n}")
                   for n in range(MESSAGE_BATCH + 1)]
        fanout.fan_out_caught_up(session, events.number_events(session))
    with db.session() as session:
        first = session.scalars(select(WebhookMessage).order_by(WebhookMessage.id)).first()
        first.next_attempt_at = utcnow() + timedelta(hours=1)
    with db.reading() as session:
        batch = sender._due(session, endpoint_id, utcnow())
    assert len(batch) == MESSAGE_BATCH
    assert [item.event_id for item in batch] == [e.event_id for e in written[1:]]
    assert [json.loads(item.body)["data"]["n"] for item in batch] == list(
        range(1, MESSAGE_BATCH + 1))
