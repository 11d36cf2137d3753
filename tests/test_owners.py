"""Claims and endpoint leases held by a dead process of this host are freed when a worker or a
sender starts (core/owners.py), not minutes later when they run out: ``orderhooks serve``
starts one in place of any that died."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import update

from core import endpoints, owners
from core.clock import utcnow
from core.models import StoredDelivery, WebhookEndpoint
from core.sender import Sender
from core.worker import Worker

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that ran and was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_process_of_this_host_that_no_longer_runs_is_dead(dead_pid):
    assert owners.dead_here(f"{HOST}:{dead_pid}:17")
    assert owners.dead_here(f"sender:{HOST}:{dead_pid}", "sender:")
    assert not owners.dead_here(f"{HOST}:{os.getppid()}:1")  # alive
    assert not owners.dead_here(owners.name(3))  # this process
    assert not owners.dead_here(f"elsewhere.example:{dead_pid}")  # its fate is not ours to see
    assert not owners.dead_here(f"sender:{HOST}:{dead_pid}")  # not of the form asked for
    assert not owners.dead_here(f"{HOST}:not-a-pid") and not owners.dead_here(None)
    assert owners.name("x") == f"{HOST}:{os.getpid()}:x"


def _claim_as(app, delivery_id: int, owner: str) -> None:
    with app.extensions["orderhooks.db"].session() as session:
        session.execute(update(StoredDelivery).where(StoredDelivery.id == delivery_id).values(
            state="processing", claimed_by=owner, claimed_until=utcnow() + timedelta(minutes=5)))


def test_a_dead_workers_claims_are_taken_at_once_by_the_worker_that_starts(bc, make_order, app,
                                                                          dead_pid):
    channel = bc.create()
    for order_id in (250, 251):
        make_order(channel["id"], order_id)
        bc.order(order_id, status_id=5)
    dead = bc.send(order_id=250).get_json()["delivery_id"]
    alive = bc.send(order_id=251).get_json()["delivery_id"]
    _claim_as(app, dead, f"{HOST}:{dead_pid}:1")
    _claim_as(app, alive, f"{HOST}:{os.getppid()}:1")
    worker = Worker(app, name="restarted")
    assert worker.run_until_idle() == 0  # both leases still run
    assert worker.free_dead_claims() == 1
    assert worker.run_until_idle() == 1
    with app.extensions["orderhooks.db"].Session() as session:
        taken, held = session.get(StoredDelivery, dead), session.get(StoredDelivery, alive)
        assert taken.outcome == "applied" and taken.attempts == 1  # the dead run counts
        assert held.state == "processing" and held.claimed_by == f"{HOST}:{os.getppid()}:1"


def test_a_dead_senders_endpoint_leases_are_freed_by_the_sender_that_starts(app, dead_pid):
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        ids = [endpoints.create(session, app.extensions["orderhooks.box"],
                                url=f"https://routing.example.com/{n}")[0].id for n in range(2)]
    until = utcnow() + timedelta(minutes=1)
    with db.session() as session:
        session.get(WebhookEndpoint, ids[0]).lease_owner = f"sender:{HOST}:{dead_pid}"
        session.get(WebhookEndpoint, ids[1]).lease_owner = f"sender:{HOST}:{os.getppid()}"
        for endpoint_id in ids:
            session.get(WebhookEndpoint, endpoint_id).lease_until = until
    sender = Sender(app, owners.name())
    try:
        assert sender._lease(ids[0]) is False  # held, until freed
        assert sender.free_dead_leases() == 1
        assert sender._lease(ids[0]) is True
        assert sender._lease(ids[1]) is False  # a live sender's
    finally:
        sender.pool.shutdown(wait=False)
