"""Fan-out: the numbered events past an outbound endpoint's place in the feed become its
messages, in feed order, and its place moves on to the last event read.

Both steps happen in the caller's transaction with the endpoint's row locked (PostgreSQL: ``FOR
UPDATE``; SQLite: the transaction is the only writer), and the place is read under that lock, so
an event becomes an endpoint's message exactly once whoever fans out, and an endpoint's messages
are made (and numbered by their ids) in feed order — the order its sender keeps per order.

Two callers:

* the worker, in its batch's own transaction, right after numbering the batch's events
  (:func:`fan_out_caught_up`): the messages commit with the change, so the sender can POST at
  once, without a fan-out transaction of its own first. Only endpoints at most
  ``CAUGHT_UP`` events behind are fanned out there, and only those whose row no other
  transaction holds: a batch never waits on an endpoint nor catches one up after a long
  pause (an endpoint enabled again after a day resumes through its sender, a page at a time);
* the sender, for one endpoint before sending (:func:`fan_out`): whatever the worker left —
  events numbered by another process, the feed, or an endpoint it skipped.

A disabled endpoint is never fanned out: enabled again, it resumes from its place.
"""
from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from . import endpoints, events
from .clock import utcnow
from .models import Event, WebhookEndpoint, WebhookMessage

PENDING = "pending"
#: Events turned into one endpoint's messages per fan-out.
BATCH = 1000
#: How far behind the feed an endpoint may be for the worker to fan it out in its batch.
CAUGHT_UP = 1000


def _message(endpoint_id: int, event, now) -> dict:
    return {"endpoint_id": endpoint_id, "event_id": event.id, "order_key": event.order_key,
            "state": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}


def _messages(session: Session, endpoint_id: int, wanted, now) -> None:
    if wanted:
        session.execute(_INSERT_MESSAGES, [_message(endpoint_id, e, now) for e in wanted])


def fan_out(session: Session, endpoint_id: int, limit: int = BATCH) -> int:
    """One endpoint's next events (at most ``limit``) become its messages; returns how many
    events were read (fewer than ``limit``: the endpoint caught up with the feed). Waits for
    the endpoint's row if another transaction holds it."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    endpoint = session.scalars(query.execution_options(populate_existing=True)).first()
    if endpoint is None or not endpoint.enabled:
        return 0
    start = endpoint.position
    rows, cursor = events.read(session, start, types=endpoint.event_types or (), limit=limit,
                               with_data=False)
    if cursor == start:
        return 0
    _messages(session, endpoint_id, [e for e in rows if endpoints.matches(endpoint, e)],
              utcnow())
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(
        position=cursor, updated_at=WebhookEndpoint.updated_at))
    return len(rows)


def fan_out_caught_up(session: Session, numbered: events.Numbered) -> int:
    """Every enabled endpoint at most ``CAUGHT_UP`` events behind the feed, and not held by
    another transaction, takes every event up to the feed's newest as messages; returns how
    many messages were made. For the transaction that has just numbered events (the worker's
    batch), before its commit, with what :func:`events.number_events` returned: an endpoint
    that was caught up before that numbering (the usual case) takes its messages from those
    rows, and only one further behind has older events read."""
    top = numbered.top
    if top is None:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    behind = session.execute(_CAUGHT_UP_LOCKED if postgres else _CAUGHT_UP,
                             {"top": top, "floor": top - CAUGHT_UP}).all()
    if not behind:
        return 0
    rows = list(numbered.rows)
    oldest = min(e.position for e in behind)
    if oldest < numbered.before:
        rows[:0] = session.execute(select(Event.id, Event.type, Event.channel_id,
                                          Event.order_key, Event.position).where(
            Event.position > oldest, Event.position <= numbered.before)
            .order_by(Event.position)).all()
    now = utcnow()
    # The endpoints' messages in one multi-row INSERT (made endpoint after endpoint, each in
    # feed order: ids keep each endpoint's order), their places moved on in one UPDATE.
    messages = [_message(endpoint.id, e, now) for endpoint in behind for e in rows
                if e.position > endpoint.position and endpoints.matches(endpoint, e)]
    if messages:
        session.execute(_INSERT_MESSAGES, messages)
    session.execute(_MOVE_ON, {"ids": [endpoint.id for endpoint in behind], "top": top})
    return len(messages)


# The fan-out's statements, built once (each worker batch runs them): what varies is bound.
#: Enabled endpoints behind ``top`` by at most ``CAUGHT_UP`` (``floor``: ``top - CAUGHT_UP``);
#: on PostgreSQL those another transaction holds are skipped.
_CAUGHT_UP = (select(WebhookEndpoint.id, WebhookEndpoint.position, WebhookEndpoint.event_types,
                     WebhookEndpoint.channel_ids)
              .where(WebhookEndpoint.enabled.is_(True),
                     WebhookEndpoint.position < bindparam("top"),
                     WebhookEndpoint.position >= bindparam("floor"))
              .order_by(WebhookEndpoint.id))
_CAUGHT_UP_LOCKED = _CAUGHT_UP.with_for_update(skip_locked=True)
# Messages are written (here and by the sender's fan-out) and places moved on through the
# tables: no session holds these rows as objects, so the ORM's bulk statements would only add
# their own CPU.
_MESSAGES, _ENDPOINTS = WebhookMessage.__table__, WebhookEndpoint.__table__
_INSERT_MESSAGES = insert(_MESSAGES)
#: The fanned-out endpoints' places move on to ``top``.
_MOVE_ON = (update(_ENDPOINTS).where(_ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)))
            .values(position=bindparam("top"), updated_at=_ENDPOINTS.c.updated_at))
