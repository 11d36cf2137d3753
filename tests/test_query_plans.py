"""Indexes, no scans: every statement the hot paths run (intake, the worker's claim, batch and
housekeeping, the lag gauge, the retention purge) is planned by SQLite as index searches on the
big tables — never a full scan of the inbox, the orders or their history, which grow without
bound. (The benchmark measures the cost at 1,000,000 orders; this catches the plan itself, e.g.
an index dropped from under a query.)"""
from __future__ import annotations

import pytest
from sqlalchemy import event

from core import metrics, retention

#: Tables that grow with the business; a full scan of one is a bug on a hot path.
BIG_TABLES = ("deliveries", "orders", "order_changes", "pending_intents")


@pytest.fixture
def statements(app):
    """Every statement run through the engine, with its parameters."""
    db = app.extensions["orderhooks.db"]
    if not db.is_sqlite:
        pytest.skip("query plans are checked on SQLite (EXPLAIN QUERY PLAN)")
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany and statement.lstrip().upper().startswith(
                ("SELECT", "UPDATE", "DELETE", "INSERT")):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def _scans(app, seen) -> list[str]:
    db = app.extensions["orderhooks.db"]
    found = []
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, parameters in seen:
            plan = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters or ()).fetchall()
            for row in plan:
                detail = row[3]
                if any(detail.startswith(f"SCAN {table}") and "USING" not in detail
                       for table in BIG_TABLES):
                    found.append(f"{detail}  <-  {' '.join(statement.split())[:300]}")
    return found


def test_worker_and_housekeeping_statements_use_indexes(app, bc, make_order, worker, statements):
    channel = bc.create()
    for order_id in (250, 251, 252):
        make_order(channel["id"], order_id)
        bc.order(order_id, 5)
        bc.shipments(order_id, [])
        assert bc.send(order_id=order_id).status_code == 200
    assert bc.send(order_id=999).status_code == 200  # an order not imported yet: held
    statements.clear()
    worker.run_until_idle()
    worker.housekeeping(force=True)
    metrics.update_lag(app.extensions["orderhooks.db"])
    retention.purge_bodies(app.extensions["orderhooks.db"], days=0)
    assert len(statements) > 10, statements  # the hot paths did run
    assert _scans(app, statements) == []


def test_intake_statements_use_indexes(app, bc, statements):
    """Intake inserts on its own DBAPI connection; its statements are checked directly."""
    bc.create()
    assert bc.send(order_id=250).status_code == 200
    writer = app.extensions["orderhooks.inbox"]
    probe = [(writer.existing, (1, "k"))]
    assert _scans(app, probe) == []
