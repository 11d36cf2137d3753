"""Indexes, no scans: every statement the hot paths run (intake, the worker's claim, batch and
housekeeping, the lag gauge, the retention purge) is planned by SQLite as index searches on the
big tables — never a full scan of the inbox, the orders or their history, which grow without
bound. (The benchmark measures the cost at 1,000,000 orders; this catches the plan itself, e.g.
an index dropped from under a query.)"""
from __future__ import annotations

import pytest
from sqlalchemy import event, select, update

from core import metrics, retention

#: Tables that grow with the business; a full scan of one is a bug on a hot path.
BIG_TABLES = ("deliveries", "orders", "order_changes", "pending_intents")
#: What the retention purge walks besides: it runs while they are at their largest.
RETAINED_TABLES = (*BIG_TABLES, "events", "webhook_messages", "webhook_attempts", "alerts")


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


def _scans(app, seen, tables=BIG_TABLES) -> list[str]:
    db = app.extensions["orderhooks.db"]
    found = []
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, parameters in seen:
            plan = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters or ()).fetchall()
            for row in plan:
                detail = row[3]
                if any(detail.startswith(f"SCAN {table}") and "USING" not in detail
                       for table in tables):
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


def test_retention_purge_statements_use_indexes(app, admin, statements):
    """Every batch of the purge is an index range: bodies by channel and outcome, messages by
    endpoint and state, events by position, the messages that still refer to an event by
    event id, alerts by status."""
    from datetime import timedelta

    from core import events
    from core.clock import utcnow
    from core.models import Alert, Event, WebhookAttempt, WebhookEndpoint, WebhookMessage
    db = app.extensions["orderhooks.db"]
    endpoint = admin.post("/webhook-endpoints", {"url": "https://routing.example.com/hooks"})
    old = utcnow() - timedelta(days=400)
    with db.session() as session:
        written = [events.emit(session, "order.cancelled", {"n": n}, channel_id=1)
                   for n in range(6)]
        for event in written:
            event.occurred_at = old
    events.sequence(db)
    with db.session() as session:
        ids = session.scalars(select(Event.id).order_by(Event.position)).all()
        for n, event_id in enumerate(ids[:4]):
            message = WebhookMessage(endpoint_id=endpoint["id"], event_id=event_id,
                                     state=("delivered", "failed", "pending", "delivered")[n],
                                     next_attempt_at=old, delivered_at=old, created_at=old)
            session.add(message)
            session.flush()
            session.add(WebhookAttempt(endpoint_id=endpoint["id"], message_id=message.id,
                                       at=old, status_code=204, latency_ms=1.0))
        for status in ("sent", "failed", "pending"):
            session.add(Alert(kind="subscription.check", recipients=["a@example.com"],
                              subject="s", body="", status=status, next_attempt_at=old,
                              created_at=old))
        session.execute(update(WebhookEndpoint).values(position=6))  # it took them all
    statements.clear()
    done = retention.purge(db, app.config)
    assert (done.messages, done.attempts, done.events, done.alerts) == (3, 3, 4, 2), done
    assert len(statements) > 10, statements
    assert _scans(app, statements, RETAINED_TABLES) == []
