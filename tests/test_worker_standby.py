"""A standby worker (``orderhooks worker --standby``, serve's second and later workers) looks for
work every idle interval and never listens for the inbox's bell: one worker answers a trickle,
the others join when work waits."""
from __future__ import annotations

import threading
import time

from core import worker as worker_module
from core.cli import background_processes
from core.models import StoredDelivery


def test_serve_starts_its_second_and_later_workers_on_standby():
    plan = dict(background_processes({"DATABASE_URL": "postgresql+psycopg://h/db",
                                      "WORKER_PROCESSES": 3, "SENDER_PROCESS": ""}))
    assert "--standby" not in plan["worker-1"]
    assert "--standby" in plan["worker-2"] and "--standby" in plan["worker-3"]
    assert all("--no-sender" in plan[f"worker-{n}"] for n in (1, 2, 3))
    sqlite = dict(background_processes({"DATABASE_URL": "sqlite:///x.db",
                                        "WORKER_PROCESSES": 0, "SENDER_PROCESS": ""}))
    assert list(sqlite) == ["worker-1", "sender"] and "--standby" not in sqlite["worker-1"]
    assert "--no-sender" in sqlite["worker-1"] and sqlite["sender"][-1] == "sender"
    threaded = dict(background_processes({"DATABASE_URL": "sqlite:///x.db",
                                          "WORKER_PROCESSES": 0, "SENDER_PROCESS": False}))
    assert list(threaded) == ["worker-1"] and "--no-sender" not in threaded["worker-1"]


def _run(worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    return thread


def _outcome(app, delivery_id):
    with app.extensions["orderhooks.db"].Session() as session:
        return session.get(StoredDelivery, delivery_id).outcome


def test_a_standby_worker_never_listens_and_still_takes_what_waits(app, bc, make_order,
                                                                  monkeypatch):
    listening = []
    real = worker_module.Listener
    monkeypatch.setattr(worker_module, "Listener",
                        lambda db: listening.append(db) or real(db))
    app.config["WORKER_IDLE_SECONDS"] = 0.05
    channel = bc.create()
    make_order(channel["id"], 250)
    bc.order(250, status_id=5)
    standby = worker_module.Worker(app, name="standby")
    standby.standby = True
    thread = _run(standby)
    try:
        delivery_id = bc.send(order_id=250).get_json()["delivery_id"]
        deadline = time.monotonic() + 10
        while _outcome(app, delivery_id) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _outcome(app, delivery_id) == "applied"
    finally:
        standby.stopping.set()
        thread.join(10)
    assert listening == []  # it found the delivery by looking, not by the bell
    listener = worker_module.Worker(app, name="listener")
    listener.stopping.set()  # its loop opens the bell, then stops at once
    _run(listener).join(10)
    assert len(listening) == 1
