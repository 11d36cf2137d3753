"""SQLite's writers of every process queue on one file beside the database (``flock``): the
intake's leaders (core/inbox.py) and every ``Database.session`` (the worker's batches, the
sender's leases and records), so a worker or sender process is handed the write lock in its
turn instead of polling for it in SQLite's busy handler."""
from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest
from sqlalchemy import text

from core.db import writer_queue_path


@pytest.fixture
def queue_file(app):
    db = app.extensions["orderhooks.db"]
    if not db.is_sqlite:
        pytest.skip("SQLite only: PostgreSQL takes many writers at once")
    fd = os.open(writer_queue_path(db.engine.url.database), os.O_RDWR | os.O_CREAT, 0o600)
    yield fd  # an open file of its own: as another process's place in the queue
    os.close(fd)


def test_a_write_transaction_waits_its_turn_in_the_queue(app, queue_file):
    db = app.extensions["orderhooks.db"]
    entered = threading.Event()

    def write():
        with db.session() as session:
            entered.set()
            session.execute(text("SELECT 1"))

    fcntl.flock(queue_file, fcntl.LOCK_EX)  # another process is writing
    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert not entered.wait(0.5)  # queued behind it
        with db.reading() as session:  # a reader queues for nothing
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        fcntl.flock(queue_file, fcntl.LOCK_UN)
    started = time.monotonic()
    assert entered.wait(5.0)
    assert time.monotonic() - started < 1.0  # handed over at once, no busy-handler sleep
    thread.join(timeout=5)


def test_a_nested_session_keeps_the_place_until_the_outer_one_ends(app, queue_file):
    db = app.extensions["orderhooks.db"]

    def others_can_write() -> bool:
        try:
            fcntl.flock(queue_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(queue_file, fcntl.LOCK_UN)
        return True

    with db.session():
        assert not others_can_write()
        with db.session():
            pass
        assert not others_can_write()  # the inner session's end left the queue held
    assert others_can_write()


def test_the_intake_queues_on_the_same_file(app, queue_file):
    from core.inbox import Writer
    db = app.extensions["orderhooks.db"]
    assert Writer(db).lock_path == writer_queue_path(db.engine.url.database)
    assert writer_queue_path(":memory:") is None and writer_queue_path(None) is None


def test_disposing_closes_the_handle_on_the_queue(tmp_path):
    """Each Database (an app, a test) opens the queue file once; disposing it closes it, so a
    process that makes many does not run out of descriptors."""
    from core.db import Database
    before = len(os.listdir("/proc/self/fd"))
    for n in range(20):
        db = Database(f"sqlite:///{tmp_path / 'fds.db'}")
        with db.session() as session:
            session.execute(text("SELECT 1"))
        db.dispose()
    assert len(os.listdir("/proc/self/fd")) <= before + 2
