"""On SQLite a lease's commit (a worker's claim, a sender's hold on an endpoint) does not wait for
the WAL's fsync, as on PostgreSQL (``synchronous_commit=off``); every other write does."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from core.db import Database


def _synchronous(db: Database, durable: bool) -> int:
    with db.session(durable=durable) as session:
        return session.execute(text("PRAGMA synchronous")).scalar()


def test_a_lease_commits_without_the_fsync_and_a_change_with_it(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'leases.db'}")
    try:
        assert _synchronous(db, durable=False) == 1  # NORMAL: the WAL is not synced at commit
        assert _synchronous(db, durable=True) == 2  # FULL: synced before the commit returns
        # both see one database: a lease written is read by the durable side
        with db.session(durable=False) as session:
            session.execute(text("CREATE TABLE lease (holder TEXT)"))
            session.execute(text("INSERT INTO lease VALUES ('w1')"))
        with db.session() as session:
            assert session.execute(text("SELECT holder FROM lease")).scalar() == "w1"
    finally:
        db.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_database_in_memory_keeps_one_engine(url):
    db = Database(url)
    assert db.lease_engine is db.engine


def test_a_weaker_setting_is_kept_for_leases_too(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'off.db'}", sqlite_synchronous="OFF")
    try:
        assert db.lease_engine is db.engine
        assert _synchronous(db, durable=False) == 0
    finally:
        db.dispose()


def test_autocheckpoint_reaches_the_lease_connections(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        db.sqlite_autocheckpoint(5000)
        with db.session(durable=False) as session:
            assert session.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 5000
    finally:
        db.dispose()
