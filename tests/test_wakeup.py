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
