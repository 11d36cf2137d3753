"""Round trips of the trickle: at a few deliveries a second every batch holds one delivery, so
the fixed cost of a claim and a batch — statements, each a round trip and the ORM's CPU — is
the latency from a 2xx to the event going out (docs/performance.md, event latency). These
count the statements one Shopify cancellation costs the worker, so the cost cannot creep back
unnoticed."""
from __future__ import annotations

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from core.models import WebhookMessage
from tests.shopify_helpers import ORDER_ID, cancelled_order, shopify  # noqa: F401


class Statements:
    """The statements the app's engines run meanwhile (BEGIN on SQLite aside: it is how a
    transaction starts there, not a statement of ours)."""

    def __init__(self, db):
        self.engines = {db.engine, db.lease_engine}
        self.seen: list[str] = []

    def _note(self, _conn, _cursor, statement, *_args):
        if not statement.startswith("BEGIN"):
            self.seen.append(" ".join(statement.split()))

    def __enter__(self):
        for engine in self.engines:
            sa_event.listen(engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc):
        for engine in self.engines:
            sa_event.remove(engine, "before_cursor_execute", self._note)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ALLOWED_WEBHOOK_URLS": "https://receiver.test/*"}


@pytest.fixture
def one_cancellation(shopify, make_order, admin, app, worker):
    """A Shopify channel, an order in a valid cancellation status, an endpoint for its events,
    and that order's orders/cancelled stored, nothing else pending."""
    channel = shopify.create()
    make_order(channel["id"], ORDER_ID, "AWAITING_SHIPMENT")
    admin.post("/webhook-endpoints", {"url": "https://receiver.test/hook",
                                      "event_types": ["order.cancelled"]})
    worker.run_until_idle()
    assert shopify.send("orders/cancelled", cancelled_order()).status_code == 200
    return app.extensions["orderhooks.db"]


def test_a_claim_of_one_delivery_is_three_statements(one_cancellation, worker):
    """The first look (expired claims and due deliveries together), the claiming UPDATE that
    returns the rows, and their channels."""
    with Statements(one_cancellation) as claim:
        ids, loaded = worker._claim()
    assert len(ids) == 1 and loaded is not None
    assert len(claim.seen) == 3, claim.seen
    assert claim.seen[1].startswith("UPDATE deliveries")


def test_a_batch_of_one_cancellation_numbers_and_fans_out_in_few_statements(one_cancellation,
                                                                          worker):
    """The delivery, channel and order rows read, the order and delivery updated; numbering in
    one UPDATE ... RETURNING (with the advisory lock and the bell in one statement before it
    on PostgreSQL); the fan-out reads no event back: the endpoints, the message, their place.
    (The two held inserts, the history line and the event, run on the DBAPI cursor: not
    counted here.)"""
    ids, loaded = worker._claim()
    with Statements(one_cancellation) as batch:
        assert worker.process_batch(ids, loaded) == {ids[0]: "applied"}
    numbering = [s for s in batch.seen if "position" in s and "events" in s]
    assert len(numbering) == 1 and numbering[0].startswith("WITH todo AS"), numbering
    assert not any(s.startswith("SELECT") and "FROM events" in s for s in batch.seen), batch.seen
    postgres = not one_cancellation.is_sqlite
    assert len(batch.seen) == 9 + postgres, batch.seen
    with one_cancellation.Session() as session:
        assert session.scalars(select(WebhookMessage.state)).all() == ["pending"]
