"""The inbox's doorbell: a stored delivery wakes a waiting worker at once (PostgreSQL NOTIFY at
commit; on SQLite a datagram to a socket beside the database)."""
from __future__ import annotations

import time

from core.wakeup import Listener


def test_a_stored_delivery_rings_the_bell(app, bc):
    bc.create()
    bell = Listener(app.extensions["orderhooks.db"])
    try:
        assert bell.wait(0.05) is False  # listening now; nothing rang
        assert bc.send(order_id=250, new_status=5).status_code == 200
        started = time.monotonic()
        assert bell.wait(5.0) is True
        assert time.monotonic() - started < 0.5
        # a duplicate stores nothing: no ring
        assert bc.send(order_id=250, new_status=5).get_json()["status"] == "duplicate"
        assert bell.wait(0.3) is False
    finally:
        bell.close()


def test_an_idle_wait_lasts_its_timeout(app):
    bell = Listener(app.extensions["orderhooks.db"])
    try:
        started = time.monotonic()
        assert bell.wait(0.3) is False
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        bell.close()


def test_the_worker_loop_wakes_on_the_bell(app, bc, make_order):
    """With a 3 s idle sleep, a delivery stored while the worker idles is applied at once."""
    import threading

    from core.worker import Worker
    app.config["WORKER_IDLE_SECONDS"] = 3.0
    channel = bc.create()
    make_order(channel["id"], 251)
    bc.order(251, status_id=5)
    worker = Worker(app, name="bell-worker")
    worker.house.run = lambda force=False: None  # no periodic jobs in the way
    loop = threading.Thread(target=worker.run_forever)
    loop.start()
    try:
        time.sleep(0.5)  # idle, listening
        started = time.monotonic()
        delivery_id = bc.send(order_id=251, new_status=5).get_json()["delivery_id"]
        from core.models import StoredDelivery
        db = app.extensions["orderhooks.db"]
        while time.monotonic() - started < 5:
            with db.Session() as session:
                if session.get(StoredDelivery, delivery_id).outcome:
                    break
            time.sleep(0.02)
        assert time.monotonic() - started < 2.0  # not after the 3 s idle sleep
    finally:
        worker.stopping.set()
        loop.join(timeout=15)


def test_a_second_listener_sleeps_instead_of_stealing_the_bell(app, database_url):
    db = app.extensions["orderhooks.db"]
    if not db.is_sqlite:
        return  # on PostgreSQL every worker LISTENs: nothing to share
    first, second = Listener(db), Listener(db)
    try:
        first.wait(0.01)
        second.wait(0.01)
        assert first._sock is not None and second._sock is None
        first.close()
        # the dead one's socket file is gone or refused: the next listener takes the bell
        third = Listener(db)
        third.wait(0.01)
        assert third._sock is not None
        third.close()
    finally:
        second.close()


def test_numbered_events_ring_the_sender_bell(app):
    """Events numbered (here by the sequencer; the worker's batch numbers its own the same way)
    ring the events bell a sender process listens on, once they are committed."""
    from core import events
    from core.wakeup import EVENTS
    db = app.extensions["orderhooks.db"]
    bell = Listener(db, EVENTS)
    inbox = Listener(db)
    try:
        assert bell.wait(0.05) is False  # listening now; nothing rang
        assert inbox.wait(0.01) is False
        with db.session() as session:
            events.emit(session, "order.cancelled", {"order": {"id": 1}}, channel_id=None,
                        order_key="order:1")
        assert bell.wait(0.3) is False  # written, not numbered yet: nothing to send
        started = time.monotonic()
        assert events.sequence(db) == 1
        assert bell.wait(5.0) is True
        assert time.monotonic() - started < 0.5
        assert inbox.wait(0.2) is False  # the worker's bell stays quiet
        assert events.sequence(db) == 0  # nothing numbered: no ring
        assert bell.wait(0.3) is False
    finally:
        bell.close()
        inbox.close()


def test_a_sender_hearing_the_bell_sends_at_once(app):
    """A sender in a process of its own (:meth:`Sender.hear_bell`) with a 30 s idle wait: an
    event numbered elsewhere goes out within a second, which only the bell explains."""
    import threading

    from core import endpoints, events
    from core.sender import Sender
    from tests.webhook_receiver import Receiver
    app.config["WORKER_IDLE_SECONDS"] = 30.0
    db = app.extensions["orderhooks.db"]
    receiver = Receiver()
    with db.session() as session:
        endpoints.create(session, app.extensions["orderhooks.box"], url=receiver.url("/hooks"))
    sender = Sender(app, "bell-sender")
    stopping = threading.Event()
    sender.hear_bell(stopping)
    loop = threading.Thread(target=sender.run_forever, args=(stopping,))
    loop.start()
    try:
        time.sleep(1.0)  # its first round done; idle now, for 30 s unless woken
        with db.session() as session:
            events.emit(session, "order.cancelled", {"order": {"id": 2}}, channel_id=None,
                        order_key="order:2")
        started = time.monotonic()
        # numbered as another process does it: that process's own wake-up does not reach here
        with db.session() as session:
            assert events.number(session) == 1
        wakeup_bell(db)
        while not receiver.at("/hooks") and time.monotonic() - started < 10:
            time.sleep(0.02)
        assert receiver.at("/hooks"), "nothing sent within 10 s"
        assert time.monotonic() - started < 2.0
    finally:
        stopping.set()
        loop.join(timeout=15)
        receiver.stop()


def wakeup_bell(db) -> None:
    """What another process's :func:`core.events.wake` rings on SQLite (PostgreSQL's NOTIFY
    went with the commit)."""
    from core.wakeup import EVENTS, Doorbell
    Doorbell(db, EVENTS).ring()


def test_a_strangers_datagrams_only_wake_the_sender_once(app):
    """Anyone on the box who can write to the events bell's socket can only make a sender look
    for work early: a flood of odd datagrams is one wake-up, drained whole, never an error, and
    the next wait is a plain idle wait again."""
    import socket

    import pytest

    from core.wakeup import EVENTS, socket_path
    db = app.extensions["orderhooks.db"]
    if not db.is_sqlite:
        pytest.skip("the socket bell is SQLite's (PostgreSQL rings by NOTIFY at the commit)")
    bell = Listener(db, EVENTS)
    try:
        assert bell.wait(0.05) is False  # bound and listening
        stranger = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stranger.setblocking(False)
        sent = 0
        try:
            for n in range(300):
                try:
                    stranger.sendto(bytes([n % 256]) * (1 + n * 13 % 4000), socket_path(db, EVENTS))
                    sent += 1
                except BlockingIOError:
                    break  # the socket's queue is full: the rest are dropped, as rings may be
        finally:
            stranger.close()
        assert sent > 0
        assert bell.wait(1.0) is True
        started = time.monotonic()
        assert bell.wait(0.2) is False  # every datagram was drained by the one wake-up
        assert time.monotonic() - started >= 0.15
    finally:
        bell.close()
