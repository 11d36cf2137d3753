"""/api/v1/events: the feed of every change, read with a cursor (optionally long-polled)."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import current_app, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from .. import events, retention
from ..answers import error_body
from ..db import get_db
from .schemas import ErrorSchema, EventQuerySchema, EventSchema

PREFIX = "/events"
blp = Blueprint("events", __name__, description="The feed of changes (see docs/events.md)")

#: Longest long poll: below gunicorn's 30 s worker timeout, with room to answer.
MAX_WAIT_SECONDS = 20.0
#: How often a long poll looks again when no event of this process woke it (events written by
#: other processes).
POLL_SECONDS = 0.05

FEED_LINK = {"Link": {"description": 'Where to read next: `<url>; rel="next"` with '
                                     '`after=<cursor>`; always present (a feed has no last '
                                     'page)', "schema": {"type": "string"}}}


def _types(raw: list[str]) -> list[str]:
    wanted = [t.strip() for item in raw for t in item.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(events.TYPES))
    if unknown:
        abort(422, message=f"unknown event type(s): {', '.join(unknown)[:300]}; known: "
                           f"{', '.join(events.TYPES)}",
              errors={"query": {"types": [f"unknown: {', '.join(unknown)[:300]}"]}})
    return wanted


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return events.decode_cursor(cursor)
    except ValueError:
        abort(400, message="'after' is not a cursor this API gave: use the 'after' of the "
                           "previous answer's Link: rel=\"next\" URL, or leave it out to read "
                           "from the oldest event kept",
              errors={"query": {"after": ["not a cursor this API gave"]}})


def _page(db, after: int, types, channel_id, limit):
    """One look at the feed, in a session of its own (a long poll holds no transaction while
    it waits), and the highest position retention purged — read after the page, so a page
    that missed a purged event always sees the mark that says so. Events committed but not
    numbered yet are numbered first."""
    with db.Session() as session:
        if events.unnumbered(session):
            session.rollback()
            events.sequence(db)
        rows, cursor = events.read(session, after, types=types, channel_id=channel_id,
                                   limit=limit)
        return rows, cursor, retention.feed_purged_through(session)


def _link(cursor: int) -> str:
    following = [(k, v) for k, v in request.args.items(multi=True) if k != "after"]
    following.append(("after", events.encode_cursor(cursor)))
    return f"{request.base_url}?{urlencode(following)}"


def _cursor_expired(after: int, purged: int):
    """410: events past the reader's cursor were purged, so the feed cannot be read on from it
    without a gap. The answer names the oldest cursor that reads whole; never a silent skip."""
    body = error_body("cursor_expired", (
        f"events after this cursor were deleted by retention (events are kept "
        f"ORDERHOOKS_EVENT_RETENTION_DAYS={current_app.config['EVENT_RETENTION_DAYS']} days "
        f"once every enabled webhook endpoint took them): reading on from it would skip "
        f"some. Continue from details.oldest_cursor (GET details.next) and reconcile what "
        f"you missed from /api/v1/orders"))
    body["details"] = {"oldest_cursor": events.encode_cursor(purged), "next": _link(purged),
                       "purged_through_position": purged, "cursor_position": after}
    response = jsonify(body)
    response.status_code = 410
    return response


@blp.route("")
class Events(MethodView):
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventSchema(many=True), headers=FEED_LINK)
    @blp.alt_response(410, schema=ErrorSchema, description=(
        "The cursor is older than the events retention deleted (`cursor_expired`): reading on "
        "from it would skip events. `details.oldest_cursor` is the oldest cursor that reads "
        "whole, `details.next` the URL that reads from it"))
    def get(self, args):
        """Events after the cursor, oldest first. Read with the cursor of each answer's Link
        header: no event is skipped or repeated, whatever order writers committed in. With
        ``wait``, an empty answer waits up to that many seconds and answers as soon as an event
        matches."""
        db = get_db()
        # Without a cursor the feed is read from the oldest event kept; a cursor promises
        # everything after it.
        from_cursor = bool(args.get("after"))
        after = _after(args.get("after"))
        types = _types(request.args.getlist("types"))
        channel_id, limit = args.get("channel"), args["limit"]
        deadline = time.monotonic() + min(args.get("wait") or 0.0, MAX_WAIT_SECONDS)
        while True:
            seen = events.generation()
            rows, cursor, purged = _page(db, after, types, channel_id, limit)
            if from_cursor and after < purged:
                return _cursor_expired(after, purged)
            left = deadline - time.monotonic()
            if rows or left <= 0:
                break
            after = cursor
            events.wait_numbered(seen, min(POLL_SECONDS, left))
        return [events.public(row) for row in rows], {"Link": f'<{_link(cursor)}>; rel="next"'}
