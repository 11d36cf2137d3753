"""Indexes, no scans: every statement the hot paths run (intake, the worker's claim, batch and
housekeeping, the lag gauge, the retention purge) is planned by SQLite as index searches on the
big tables — never a full scan of the inbox, the orders or their history, which grow without
bound. (The benchmark measures the cost at 1,000,000 orders; this catches the plan itself, e.g.
an index dropped from under a query.)"""
from __future__ import annotations

import contextlib
import json

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
        for n in range(6):
            events.emit(session, "order.cancelled", {"n": n}, channel_id=1)
        session.execute(update(Event).values(occurred_at=old))
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


#: The outbound side's tables: every event, every message, every attempt is kept.
OUTBOUND_TABLES = ("events", "webhook_messages", "webhook_attempts")


def _outbound_endpoint(app, url: str) -> int:
    from core import endpoints
    db = app.extensions["orderhooks.db"]
    with db.session() as session:
        return endpoints.create(session, app.extensions["orderhooks.box"], url=url)[0].id


def test_sender_and_outbound_metrics_statements_use_indexes(app, statements):
    """Fan-out, the due scan (with an order held behind a retry), recording and the scrape's
    message gauges."""
    from core import events
    from core.sender import Sender
    from tests.webhook_receiver import Receiver
    receiver = Receiver()
    sender = Sender(app, "plans")
    db = app.extensions["orderhooks.db"]
    try:
        _outbound_endpoint(app, receiver.url("/ok"))
        written = []
        with db.session() as session:
            for n in range(6):
                written.append(events.emit(session, "order.cancelled", {"n": n},
                                           order_key=f"order:{n % 3}").event_id)
        receiver.refused.add(written[0])  # order 0 waits for a retry; its later event waits
        statements.clear()
        sender.run_until_idle()
        metrics.update_webhooks(db)
        assert len(receiver.at("/ok")) >= 2
    finally:
        sender.pool.shutdown(wait=False, cancel_futures=True)
        receiver.stop()
    assert any("webhook_messages" in s for s, _ in statements)  # the paths did run
    assert _scans(app, statements, OUTBOUND_TABLES) == []


def test_the_due_scan_reads_one_page_of_a_backlog_on_postgresql(app):
    """PostgreSQL plans the due scan as a read of the endpoint's pending messages in id order
    that stops after a page — on a freshly filled table it has no statistics for (the state
    after a long outage, before autovacuum's ANALYZE) and after ANALYZE alike: no sequential
    scan of the messages, no sort of the backlog, and rows read bounded by the batch, not by
    the 20,000 waiting."""
    from sqlalchemy import text

    from core.clock import utcnow
    from core.sender import MESSAGE_BATCH, Sender
    db = app.extensions["orderhooks.db"]
    if db.is_sqlite:
        pytest.skip("PostgreSQL's planner (SQLite's is checked above)")
    endpoint_id = _outbound_endpoint(app, "https://routing.example.com/hooks")
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO events (event_id, type, occurred_at, order_key, data, position) "
            "SELECT 'evt_' || g, 'order.cancelled', now(), 'order:' || (g % 1000), '{}', g "
            "FROM generate_series(1, 20000) AS g"))
        conn.execute(text(
            "INSERT INTO webhook_messages (endpoint_id, event_id, order_key, state, attempts, "
            "next_attempt_at, created_at) SELECT :e, id, order_key, 'pending', 0, "
            "now() - interval '1 minute', now() FROM events ORDER BY id"), {"e": endpoint_id})
        # order:7's first message waits for a retry: its 19 later ones are held
        conn.execute(text("UPDATE webhook_messages SET next_attempt_at = now() + interval '1 "
                          "hour' WHERE id = (SELECT min(id) FROM webhook_messages WHERE "
                          "order_key = 'order:7')"))
    sender = Sender(app, "plans")
    sender.pool.shutdown(wait=False)
    for analysed in (False, True):
        if analysed:
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE webhook_messages"))
                conn.execute(text("ANALYZE events"))
        with _recorded(db.engine) as seen, db.Session() as session:
            batch = sender._due(session, endpoint_id, utcnow())
        assert len(batch) == MESSAGE_BATCH
        assert "order:7" not in {item.order_key for item in batch}
        for statement, parameters in seen:
            with db.engine.connect() as conn:
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]["Plan"]
            # (the batch's events are read by id: by index or, on a table this small, by a
            # sequential scan, as the planner's costs say; the messages are what grows)
            nodes = [n for n in _plan_nodes(plan)
                     if n.get("Relation Name", "webhook_messages") == "webhook_messages"]
            shown = json.dumps(plan)[:2000]
            assert not [n for n in nodes if n["Node Type"] in ("Sort", "Seq Scan")], shown
            assert all(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)
                       <= 5 * MESSAGE_BATCH for n in nodes), shown


@contextlib.contextmanager
def _recorded(engine):
    """The statements (with their parameters) ``engine`` runs inside the block."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def test_the_claim_reads_ranges_of_the_claim_index_on_postgresql(app, bc):
    """PostgreSQL plans a claim on a backlog — 50,000 deliveries done, 2,000 due for one store
    and 10 for a small one, one lapsed claim — as ranges of ix_deliveries_claim (the lapsed
    claim: of ix_deliveries_lapsed, the claims in flight), before ANALYZE
    and after: no sequential scan of the inbox, whose done rows grow without bound; and the
    small store gets its share of the batch."""
    from sqlalchemy import text

    from core.worker import Worker
    db = app.extensions["orderhooks.db"]
    if db.is_sqlite:
        pytest.skip("PostgreSQL's planner (SQLite's is checked above)")
    big, small = bc.create()["id"], bc.create(store_hash="small1")["id"]
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO deliveries (channel_id, channel_type, dedupe_key, received_at, headers, "
            "body, state, attempts, next_attempt_at) SELECT CASE WHEN g % 5 = 0 THEN :s "
            "ELSE :b END, 'bigcommerce', 'k' || g, now(), '{}', '{}', CASE WHEN g <= 50000 "
            "THEN 'done' ELSE 'pending' END, 0, now() - interval '1 minute' * random() "
            "FROM generate_series(1, 52000) AS g WHERE g <= 50000 OR g % 5 <> 0 OR g > 51950"),
            {"b": big, "s": small})
        conn.execute(text("UPDATE deliveries SET state = 'processing', claimed_by = 'gone', "
                          "claimed_until = now() - interval '1 minute' WHERE id = 50001"))
    limit = 50
    for analysed in (False, True):
        if analysed:
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE deliveries"))
        worker = Worker(app, name=f"plans{analysed}")
        with _recorded(db.lease_engine) as seen:
            ids, _loaded = worker._claim(limit)
        assert len(ids) == limit
        with db.Session() as session:
            taken = dict(session.execute(text(
                "SELECT channel_id, count(*) FROM deliveries WHERE claimed_by = :w "
                "GROUP BY channel_id"), {"w": worker.name}).all())
        assert taken.get(small, 0) == 10, taken  # all it has: below its share of 50
        assert len(seen) >= 4, seen  # the first look found a backlog: the fair shares ran
        for statement, parameters in seen:
            with db.lease_engine.connect() as conn:
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]["Plan"]
            # a scan, or an index read past its channel filtering on the state, reads done rows
            # (or of an index from a column past its first: every state of every channel). The
            # partial index of claims in flight holds only "processing" rows: a locking read
            # keeps its predicate as a filter (for the recheck of a row updated meanwhile).
            scans = [n for n in _plan_nodes(plan) if n.get("Relation Name") == "deliveries"
                     and (n["Node Type"] == "Seq Scan" or "state" in n.get("Filter", ""))
                     and n.get("Index Name") != "ix_deliveries_lapsed"]
            scans += [n for n in _plan_nodes(plan) if n.get("Index Name", "").startswith(
                "ix_deliveries") and "channel_id" not in n.get("Index Cond", "")]
            assert not scans, (" ".join(statement.split())[:300], json.dumps(plan)[:3000])
        with db.engine.begin() as conn:  # hand them back for the second pass
            conn.execute(text("UPDATE deliveries SET state = 'pending', claimed_by = NULL, "
                              "claimed_until = NULL WHERE claimed_by = :w"), {"w": worker.name})


def test_the_look_for_lapsed_claims_reads_the_index_of_claims_in_flight(app, bc):
    """SQLite plans the claim's look for lapsed claims as a range of ix_deliveries_lapsed
    (channel, expiry): claims in flight that have not lapsed, and rows that left "processing",
    are not read (PostgreSQL's plan: the backlog test above)."""
    from core.worker import Worker
    db = app.extensions["orderhooks.db"]
    if not db.is_sqlite:
        pytest.skip("SQLite's planner (PostgreSQL's is checked on a backlog above)")
    bc.create()
    worker = Worker(app, name="lapsed-plan")
    with _recorded(db.lease_engine) as seen:
        worker._claim(10)
    [look] = [(s, p) for s, p in seen if "claimed_until" in s and "lapsed" in s]
    with db.lease_engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute("EXPLAIN QUERY PLAN " + look[0], look[1])
        plan = [row[3] for row in cursor.fetchall()]
    assert any("ix_deliveries_lapsed (channel_id=? AND claimed_until<?)" in step
               for step in plan), plan
