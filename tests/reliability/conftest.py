"""Fixtures of the reliability suite: real processes (gunicorn, workers, the stand-in) on
loopback, sharing the test database (SQLite file, or ORDERHOOKS_TEST_DATABASE_URL)."""
from __future__ import annotations

import os

import pytest

from .live import Stack


def on_postgres() -> bool:
    return (os.environ.get("ORDERHOOKS_TEST_DATABASE_URL") or "").startswith("postgresql")


def postgres_only(why: str):
    """Skip unless the suite runs on PostgreSQL, saying why the test needs it."""
    return pytest.mark.skipif(
        not on_postgres(),
        reason=f"PostgreSQL only: {why}; set ORDERHOOKS_TEST_DATABASE_URL=postgresql+psycopg://...")


MULTI_WORKER = ("several worker processes claim concurrently only on PostgreSQL (FOR UPDATE SKIP "
                "LOCKED); SQLite serialises them")


@pytest.fixture
def stack(database_url, tmp_path):
    """A :class:`Stack` on the test's (migrated, empty) database; stopped after the test."""
    with Stack(database_url, tmp_path / "live") as live:
        yield live
