"""Read-only looks at the benchmark database that never take SQLite's write lock (the app's
engine starts every transaction with BEGIN IMMEDIATE, which would compete with the workers)."""
from __future__ import annotations

from datetime import datetime


class Peek:
    def __init__(self, url: str):
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            import sqlite3
            self.conn = sqlite3.connect(url.split("///", 1)[1], timeout=30, isolation_level=None)
        else:
            import psycopg
            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                        autocommit=True)

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        return list(self.conn.execute(sql, params).fetchall())

    def one(self, sql: str, params: tuple = ()):
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self.conn.close()


def as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
