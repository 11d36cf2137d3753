"""Fixtures of the reliability suite: real processes (gunicorn, workers, the stand-in) on
loopback, sharing the test database (SQLite file, or ORDERHOOKS_TEST_DATABASE_URL)."""
from __future__ import annotations

import os

import pytest

from .live import Stack


def on_postgres() -> bool:
    return (os.environ.get("ORDERHOOKS_TEST_DATABASE_URL") or "").startswith("postgresql")


postgres_only = pytest.mark.skipif(
    not on_postgres(),
    reason="PostgreSQL only: several worker processes and FOR UPDATE SKIP LOCKED need a "
           "server database; set ORDERHOOKS_TEST_DATABASE_URL=postgresql+psycopg://...")


@pytest.fixture
def stack(database_url, tmp_path):
    """A :class:`Stack` on the test's (migrated, empty) database; stopped after the test."""
    with Stack(database_url, tmp_path / "live") as live:
        yield live
