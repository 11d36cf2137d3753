"""Intake group commit (core/inbox.py ``Writer``): the threads of a web process share one
transaction at a time. Every delivery is answered only after the commit that holds it, each gets
its own id (or its own duplicate answer), and one bad delivery or a lost connection costs what it
must and nothing more. Runs on SQLite and on PostgreSQL like the rest of the suite.

The batches are made deterministic by holding the first leader inside its transaction until the
other threads have queued behind it."""
from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core import inbox
from core.adapters import DeliveryInfo
from core.models import StoredDelivery

THREADS = 6


@pytest.fixture
def writer(app):
    return app.extensions["orderhooks.inbox"]


@pytest.fixture
def channel(bc):
    row = bc.create()
    return SimpleNamespace(id=row["id"], type="bigcommerce")


def info(key, order="250"):
    return DeliveryInfo(key=key, topic="store/order/statusUpdated", channel_order_id=order,
                        occurred_at=datetime(2026, 11, 28, tzinfo=timezone.utc))


class Held:
    """Wraps ``writer._transaction``: records each batch's size and holds the first batch's
    leader until ``release`` is set (so every other thread queues behind it)."""

    def __init__(self, writer, monkeypatch, before=None):
        self.sizes: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()
        real = writer._transaction

        def transaction(batch):
            self.sizes.append(len(batch))
            if len(self.sizes) == 1:
                self.entered.set()
                assert self.release.wait(10)
            if before:
                before(len(self.sizes))
            return real(batch)

        monkeypatch.setattr(writer, "_transaction", transaction)

    def queued(self, writer, count: int) -> None:
        """Wait until ``count`` deliveries are queued behind the held leader."""
        assert self.entered.wait(10)
        for _ in range(1000):
            with writer._mutex:
                if len(writer._queue) >= count:
                    return
            threading.Event().wait(0.01)
        raise AssertionError(f"{len(writer._queue)} of {count} deliveries queued")


def store_all(writer, calls):
    """Run ``writer.store(*args)`` for each of ``calls`` on its own thread; the answers (or the
    exception) in order."""
    results: list = [None] * len(calls)

    def run(index, args):
        try:
            results[index] = writer.store(*args)
        except Exception as exc:  # noqa: BLE001 — the test looks at it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, args)) for i, args in enumerate(calls)]
    threads[0].start()
    return threads, results


def start_rest(threads):
    for thread in threads[1:]:
        thread.start()


def join(threads):
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def run_held(writer, held, calls):
    """The first call leads and is held; the others queue behind it; then all go on. Returns
    each call's answer (or exception), in order."""
    threads, results = store_all(writer, calls)
    start_rest(threads)
    held.queued(writer, len(calls) - 1)
    held.release.set()
    join(threads)
    return results


def rows(app):
    with app.extensions["orderhooks.db"].Session() as session:
        return {d.dedupe_key: d.id for d in session.scalars(select(StoredDelivery))}


def test_waiting_deliveries_share_one_commit(app, writer, channel, monkeypatch):
    held = Held(writer, monkeypatch)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    calls = [(channel, info(f"k{i}", order=str(i)), {"content-type": "application/json"},
              b'{"n": %d}' % i, now) for i in range(THREADS)]
    threads, results = store_all(writer, calls)
    start_rest(threads)
    held.queued(writer, THREADS - 1)
    assert all(r is None for r in results)  # nobody answered before the commit
    held.release.set()
    join(threads)
    assert held.sizes == [1, THREADS - 1]  # the first alone (held), then all the rest at once
    stored = rows(app)
    assert len(stored) == THREADS
    for i, result in enumerate(results):
        assert result == (stored[f"k{i}"], False), result
    with app.extensions["orderhooks.db"].Session() as session:
        body = session.scalar(select(StoredDelivery.body).where(StoredDelivery.dedupe_key == "k3"))
    assert body == b'{"n": 3}'


def test_a_duplicate_in_the_same_batch_names_the_first(app, writer, channel, monkeypatch):
    held = Held(writer, monkeypatch)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    calls = [(channel, info("first"), {}, b"{}", now)] + [
        (channel, info("same"), {}, b"{}", now) for _ in range(3)]
    results = run_held(writer, held, calls)
    assert held.sizes == [1, 3]
    same = rows(app)["same"]
    assert sorted(results[1:], key=lambda r: r[1]) == [(same, False), (same, True), (same, True)]


def test_a_refused_delivery_fails_alone(app, writer, channel, monkeypatch):
    """A value the database refuses (here a channel that does not exist: a foreign key) rolls
    the batch back; every other delivery is then stored on its own, the bad one gets
    ``Unstorable`` (a 400 at the intake)."""
    held = Held(writer, monkeypatch)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    ghost = SimpleNamespace(id=channel.id + 1000, type="bigcommerce")
    calls = [(channel, info("lead"), {}, b"{}", now), (channel, info("a"), {}, b"{}", now),
             (ghost, info("bad"), {}, b"{}", now), (channel, info("b"), {}, b"{}", now)]
    results = run_held(writer, held, calls)
    assert held.sizes == [1, 3, 1, 1, 1]  # lead; the batch (refused); then each alone
    stored = rows(app)
    assert set(stored) == {"lead", "a", "b"}
    assert results[1] == (stored["a"], False) and results[3] == (stored["b"], False)
    assert isinstance(results[2], inbox.Unstorable), results[2]


def test_a_lost_connection_fails_the_whole_batch_then_recovers(app, writer, channel,
                                                               monkeypatch):
    """The connection dies under a batch: nothing of it was committed, so every delivery in it
    gets ``Unavailable`` (a 503: the channel sends it again); the next delivery opens a new
    connection and is stored."""
    def before(number):
        if number == 2:  # the batch of three
            writer.connection().close()  # as a server that went away leaves it

    held = Held(writer, monkeypatch, before)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    calls = [(channel, info(f"k{i}"), {}, b"{}", now) for i in range(4)]
    results = run_held(writer, held, calls)
    assert held.sizes == [1, 3]
    stored = rows(app)
    assert results[0] == (stored["k0"], False)
    assert all(isinstance(r, inbox.Unavailable) for r in results[1:]), results
    assert set(stored) == {"k0"}
    answer = writer.store(channel, info("again"), {}, b"{}", now)
    assert answer == (rows(app)["again"], False)


def test_many_threads_many_deliveries_nothing_lost(app, writer, channel):
    """No holding: 8 threads x 40 deliveries (a quarter of them sent twice) through one writer,
    as a gthread worker's threads do; every answer names its own row."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    answers: dict[str, set] = {}
    lock = threading.Lock()

    def run(t):
        for i in range(40):
            key = f"t{t}-{i}" if i % 4 else f"shared-{i}"
            result = writer.store(channel, info(key), {}, b"{}", now)
            with lock:
                answers.setdefault(key, set()).add(result)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    join(threads)
    stored = rows(app)
    assert len(stored) == len(answers) == 8 * 30 + 10
    for key, results in answers.items():
        ids = {r[0] for r in results}
        assert ids == {stored[key]}, (key, results)
        if key.startswith("shared-"):
            assert sorted(r[1] for r in results).count(False) == 1  # stored once


def test_a_batch_is_inserted_in_key_order(app, writer, channel, monkeypatch):
    """Two processes' batches that share keys (a delivery sent twice) must take the keys' row
    locks in the same order, or PostgreSQL finds a deadlock and both batches fail: the rows go
    in key order, whatever order their threads queued in."""
    held = Held(writer, monkeypatch)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    calls = [(channel, info("lead"), {}, b"{}", now)] + [
        (channel, info(key), {}, b"{}", now) for key in ("c", "a", "d", "b")]
    results = run_held(writer, held, calls)
    stored = rows(app)
    assert stored["a"] < stored["b"] < stored["c"] < stored["d"]
    assert [r[0] for r in results[1:]] == [stored[k] for k in ("c", "a", "d", "b")]


def test_an_unexpected_failure_mid_transaction_leaves_nothing_open(app, writer, channel,
                                                                   monkeypatch):
    """Not a database error but a failure half-way (here the duplicate's row cannot be found):
    the answer is a 503-style ``Unavailable``, the connection is dropped so its transaction
    does not stay open (SQLite's write lock, rows a later commit would carry), and the next
    delivery is stored normally."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    writer.store(channel, info("once"), {}, b"{}", now)
    monkeypatch.setattr(writer, "existing", writer.existing.replace("WHERE", "WHERE 1 = 0 AND"))
    with pytest.raises(inbox.Unavailable):
        writer.store(channel, info("once"), {}, b"{}", now)  # a duplicate: row not found
    monkeypatch.undo()
    assert writer._conn is None  # dropped
    assert writer.store(channel, info("next"), {}, b"{}", now)[1] is False
    assert set(rows(app)) == {"once", "next"}


def test_batch_sizes_are_in_the_metrics(app, writer, channel, client):
    from core import metrics
    before = metrics.COMMIT_BATCH._sum.get()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    writer.store(channel, info("measured"), {}, b"{}", now)
    assert metrics.COMMIT_BATCH._sum.get() == before + 1
    text, _ = metrics.render()
    assert b"orderhooks_intake_commit_batch_size_bucket" in text


# -- the gunicorn worker that balances connections ---------------------------------------------

def balanced_worker(monkeypatch, threads=2):
    """Our worker with gunicorn's own accept and finish replaced by their effect on the count
    of connections (no arbiter, no sockets: only our accounting is tested)."""
    from gunicorn.workers import gthread

    from core.gunicorn_ext import ThreadWorker

    def accept(self, listener):
        self.nr_conns += 1

    def finish_request(self, conn, keep):
        if not keep:
            self.nr_conns -= 1

    monkeypatch.setattr(ThreadWorker, "accept", accept)
    monkeypatch.setattr(gthread.ThreadWorker, "finish_request", finish_request)
    worker = ThreadWorker.__new__(ThreadWorker)
    worker.cfg = SimpleNamespace(threads=threads, keepalive=5)
    worker.reading = deque()  # requests the event loop is reading: none here
    worker.nr_conns, worker.keepalive_max, worker.max_keepalived = 0, 998, 998
    return worker


def test_over_one_connection_per_thread_answers_close_their_connections(monkeypatch):
    """A process never leaves a client waiting, but past one connection per thread its answers
    say ``Connection: close`` (gunicorn closes when ``len(keepalived_conns) >=
    max_keepalived``) until it is back to one per thread: keep-alive clients spread over the
    processes, and clients beyond the capacity take turns instead of waiting."""
    worker = balanced_worker(monkeypatch, threads=2)
    worker.accept(None)
    worker.accept(None)
    assert worker.nr_conns == 2 and worker.max_keepalived == 998  # one per thread: keep-alive
    worker.accept(None)  # a third client is served at once...
    assert worker.nr_conns == 3 and worker.max_keepalived == 0  # ...and answers now close
    worker.finish_request(None, False)  # an answer closed its connection
    assert worker.nr_conns == 2 and worker.max_keepalived == 998  # keep-alive again
    worker.accept(None)
    assert worker.max_keepalived == 0
    from gunicorn.workers import gthread

    def murder_keepalived(self, force=False):  # gunicorn's: idle connections timed out
        self.nr_conns -= 1

    monkeypatch.setattr(gthread.ThreadWorker, "murder_keepalived", murder_keepalived)
    worker.murder_keepalived()
    assert worker.nr_conns == 2 and worker.max_keepalived == 998
    worker.accept(None)
    monkeypatch.setattr(gthread.ThreadWorker, "murder_pending", murder_keepalived)
    worker.murder_pending()  # a connection that never sent a request, closed
    assert worker.nr_conns == 2 and worker.max_keepalived == 998


def test_gunicorn_config_uses_the_balanced_threaded_worker():
    import runpy
    from pathlib import Path
    conf = runpy.run_path(str(Path(__file__).parent.parent / "core" / "gunicorn_conf.py"))
    assert conf["worker_class"] == "core.gunicorn_ext.ThreadWorker"
    assert conf["threads"] >= 2
    from gunicorn.config import Config
    cfg = Config()
    cfg.set("worker_class", conf["worker_class"])
    cfg.set("logger_class", conf["logger_class"])
    from core.gunicorn_ext import GunicornLogger, ThreadWorker
    assert cfg.worker_class is ThreadWorker and cfg.logger_class is GunicornLogger


def test_a_forked_child_does_not_inherit_a_commit_in_progress(app, writer, channel):
    """gunicorn forks workers; a child forked while a thread of the parent was leading a commit
    starts with an empty queue (those threads do not exist in the child) and stores at once."""
    import os
    import signal
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    writer.store(channel, info("parent"), {}, b"{}", now)  # the parent has a connection
    with writer._mutex:
        writer._leading = True  # as if a thread of the parent were committing
        writer._queue.append(object())
        pid = os.fork()
        if pid == 0:  # the child: it must not wait for a leader that does not exist here
            code = 1
            try:
                signal.alarm(10)
                code = 0 if writer.store(channel, info("child"), {}, b"{}", now)[1] is False \
                    else 2
            finally:
                os._exit(code)
        writer._leading = False
        writer._queue.clear()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert set(rows(app)) == {"parent", "child"}
    assert writer.store(channel, info("after"), {}, b"{}", now)[1] is False  # parent unharmed


def test_a_batch_of_several_statements_stores_every_value(app, writer, channel, monkeypatch):
    """150 waiting deliveries: three multi-row INSERTs (64 + 64 + 22 rows, 768 parameters in the
    biggest), one key sent twice across the first two; every value reads back as stored."""
    count = 150
    held = Held(writer, monkeypatch)
    now = datetime(2026, 11, 28, 7, 30, 0, 123456)
    calls = [(channel, info(f"big{i}" if i != 100 else "big10", order=str(1000 + i)),
              {"content-type": "application/json", "x-n": str(i)}, b'{"n": %d}' % i, now)
             for i in range(count)]
    results = run_held(writer, held, calls)
    assert held.sizes == [1, count - 1]
    assert all(isinstance(r, tuple) for r in results), results
    assert results[100] == (results[10][0], True)  # the later one of the key: a duplicate
    assert len({r[0] for r in results}) == count - 1
    with app.extensions["orderhooks.db"].Session() as session:
        stored = {d.id: d for d in session.scalars(select(StoredDelivery))}
    for i, (row_id, duplicate) in enumerate(results):
        row = stored[row_id]
        n = 10 if i == 100 else i
        assert row.dedupe_key == f"big{n}" and row.channel_order_id == str(1000 + n)
        assert row.body == b'{"n": %d}' % n and row.headers["x-n"] == str(n)
        assert row.received_at == now and row.state == "pending"
        assert row.occurred_at == datetime(2026, 11, 28)
