"""The long-running worker's own settings: the SQLite WAL checkpoint interval on its connections
and the garbage collector's thresholds."""
import gc

from sqlalchemy import text

from core.db import Database
from core.tuning import GC_THRESHOLDS, tune_gc


def test_sqlite_autocheckpoint_applies_to_every_connection(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:  # a pooled connection made before the change
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 1000
    db.sqlite_autocheckpoint(12345)
    one, two = db.engine.raw_connection(), db.engine.raw_connection()  # two at once
    try:
        for raw in (one, two):
            assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 12345
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # still there
    finally:
        one.close()
        two.close()
    db.dispose()


def test_sqlite_autocheckpoint_is_nothing_on_postgresql():
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connects
    db.sqlite_autocheckpoint(12345)
    assert db.engine.pool.checkedout() == 0


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
