"""Filling a database fast: channels (in-process, through ``core.channel_store``), orders and
their history generated in SQL (a recursive CTE on SQLite, ``generate_series`` on PostgreSQL),
and pending deliveries built exactly as the intake would (the adapter's ``inspect``, the headers it
keeps) but inserted in bulk (executemany on SQLite, COPY on PostgreSQL)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Iterable, Iterator

from sqlalchemy import text

from .common import ALLOWED_API_BASE_URLS, PUBLIC_BASE_URL, SECRET_KEY

VALID = "AWAITING_SHIPMENT"

DELIVERY_COLUMNS = ("channel_id", "channel_type", "dedupe_key", "topic", "channel_order_id",
                    "occurred_at", "received_at", "headers", "body", "state", "attempts",
                    "next_attempt_at")


def make_app(database_url: str, **config):
    """The app, in-process, for filling (or, with production settings, measuring)."""
    from core import create_app
    return create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY,
                       "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "LOG_LEVEL": "WARNING",
                       "ALLOWED_API_BASE_URLS": ALLOWED_API_BASE_URLS,
                       "CHANNEL_CACHE_SECONDS": 0, **config})


def create_channel(app, channel_type: str, name: str, credentials: dict,
                   webhooks=None) -> tuple[int, str]:
    """A channel created in-process (no subscription calls), using ``webhooks`` (core.webhooks
    names; None: the default for its statuses). Returns (id, webhook secret)."""
    from core import channel_store
    adapter = app.extensions["orderhooks.channel_types"].get(channel_type)
    if adapter.credentials_schema is not None:
        credentials = adapter.credentials_schema().load(credentials)
    db = app.extensions["orderhooks.db"]
    with app.app_context(), db.session() as session:
        row = channel_store.create(session, app.extensions["orderhooks.box"], type=channel_type,
                                   name=name, credentials=credentials,
                                   valid_cancellation_statuses=[VALID],
                                   valid_fulfillment_statuses=[VALID], webhooks=webhooks)
        session.flush()
        view = channel_store.view(row, app.extensions["orderhooks.box"], PUBLIC_BASE_URL)
        return row.id, view.webhook_secret


def quiet_housekeeping(app) -> None:
    """Mark the hourly jobs (subscription check, retention purge) as just done, so benchmark
    workers do not call channel APIs for subscriptions in the middle of a measurement."""
    from core.clock import utcnow
    from core.models import WorkerState
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        for key in ("subscriptions_checked_at", "retention_purged_at"):
            row = session.get(WorkerState, key)
            if row is None:
                session.add(WorkerState(key=key, value=utcnow().isoformat()))
            else:
                row.value = utcnow().isoformat()


def fill_orders(app, channel_id: int, count: int, *, start: int = 1, history: bool = True,
                status: str = VALID) -> None:
    """``count`` orders with channel order ids ``start .. start+count-1`` in ``status``; with
    ``history``, each also gets its 'created' history line and one old, processed delivery (as a
    database that has seen that many orders would have)."""
    db = app.extensions["orderhooks.db"]
    now = datetime.utcnow() - timedelta(days=1)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    end = start + count - 1
    if db.is_sqlite:
        series = ("WITH RECURSIVE s(x) AS (SELECT :start UNION ALL SELECT x + 1 FROM s "
                  "WHERE x < :end) ")
        source = "s"
        as_text = "CAST(x AS TEXT)"
        body = "CAST('{\"bench\":\"history\"}' AS BLOB)"
    else:
        series = ""
        source = "generate_series(CAST(:start AS integer), CAST(:end AS integer)) AS s(x)"
        as_text = "x::text"
        body = "convert_to('{\"bench\":\"history\"}', 'UTF8')"
    with db.engine.begin() as conn:
        conn.execute(text(
            f"{series}INSERT INTO orders (channel_id, channel_order_id, status, shipments, "
            f"created_at, updated_at) SELECT :channel, {as_text}, :status, '[]', :now, :now "
            f"FROM {source}"), dict(start=start, end=end, channel=channel_id, status=status,
                                    now=stamp))
        if history:
            conn.execute(text(
                "INSERT INTO order_changes (order_id, at, event, new_status, message) "
                "SELECT id, created_at, 'created', status, 'order imported as ' || status "
                "FROM orders WHERE channel_id = :channel"), dict(channel=channel_id))
            conn.execute(text(
                "INSERT INTO deliveries (channel_id, channel_type, dedupe_key, topic, "
                "channel_order_id, received_at, headers, body, state, outcome, reason, attempts, "
                "next_attempt_at, processed_at) "
                f"SELECT channel_id, 'history', 'history:' || channel_order_id, 'history', "
                f"channel_order_id, created_at, '{{}}', {body}, 'done', 'ignored', 'bench "
                "history', 1, created_at, created_at FROM orders WHERE channel_id = :channel"),
                dict(channel=channel_id))
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def reset_orders(app, channel_id: int, status: str = VALID) -> None:
    db = app.extensions["orderhooks.db"]
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE orders SET status = :s, last_event_at = NULL, shipments = '[]' "
                          "WHERE channel_id = :c AND status <> :s"), dict(s=status, c=channel_id))


def delivery_rows(app, channel_id: int, channel_type: str,
                  requests: Iterable[tuple[dict, bytes]], received_at: datetime,
                  spacing: timedelta = timedelta(microseconds=1)) -> Iterator[tuple]:
    """Rows for the deliveries table from (headers, body) pairs, named by the adapter's own
    ``inspect`` as the intake names them. The channel is read now (not lazily inside the bulk
    insert's transaction, which on SQLite holds the write lock)."""
    from core.adapters import Delivery, Headers
    from core.channel_store import view
    from core.edge import COMMON_HEADERS
    from core.models import SalesChannel
    adapter = app.extensions["orderhooks.channel_types"].get(channel_type)
    db = app.extensions["orderhooks.db"]
    with db.Session() as session:
        channel = view(session.get(SalesChannel, channel_id), app.extensions["orderhooks.box"],
                       PUBLIC_BASE_URL)
    keep = set(COMMON_HEADERS) | set(adapter.stored_headers)

    def rows():
        for index, (headers, body) in enumerate(requests):
            incoming = Delivery(body=body, headers=Headers(headers), received_at=received_at)
            info = adapter.inspect(incoming, channel)
            kept = {k: v for k, v in incoming.headers.items() if k in keep}
            at = received_at + spacing * index
            occurred = info.occurred_at.replace(tzinfo=None) if info.occurred_at else None
            yield (channel_id, channel_type, info.key[:255], info.topic, info.channel_order_id,
                   occurred, at, json.dumps(kept), body, "pending", 0, at)
    return rows()


def insert_deliveries(app, rows: Iterable[tuple], chunk: int = 20000) -> int:
    db = app.extensions["orderhooks.db"]
    cols = ", ".join(DELIVERY_COLUMNS)
    total = 0
    raw = db.engine.raw_connection()
    try:
        if db.is_sqlite:
            sql = f"INSERT INTO deliveries ({cols}) VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))})"
            batch = []
            cursor = raw.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            for row in rows:
                batch.append(tuple(_sqlite_value(v) for v in row))
                if len(batch) >= chunk:
                    cursor.executemany(sql, batch)
                    total += len(batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
                total += len(batch)
            cursor.execute("COMMIT")
        else:
            with raw.cursor() as cursor:
                with cursor.copy(f"COPY deliveries ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        total += 1
            raw.commit()
    finally:
        raw.close()
    return total


def _sqlite_value(value):
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
