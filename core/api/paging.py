"""Keyset paging for the lists: ``?limit=&cursor=``, the next page named by a
``Link: <...>; rel="next"`` header. A cursor is the last id of the page read, opaque to
clients (base64); the next page is ``WHERE id < last`` (newest first) or ``id > last`` (oldest
first) along the primary key, so page 1,000 costs what page 1 does — unlike an offset, which
reads and skips every row before it."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from flask import request
from flask_smorest import abort
from marshmallow import EXCLUDE, Schema, fields, validate

LINK_HEADER = {"Link": {"description": 'The next page: `<url>; rel="next"`; absent on the '
                                      'last page', "schema": {"type": "string"}}}


class PageQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000),
                           metadata={"description": "At most this many items"})
    cursor = fields.String(validate=validate.Length(max=64), metadata={
        "description": "Where the page starts: the `cursor` of the previous answer's "
                       "`Link: rel=\"next\"` URL (opaque)"})


def encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(b"id:%d" % last_id).decode().rstrip("=")


def decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, _, number = raw.partition(b":")
        if kind != b"id" or not number.isdigit() or len(number) > 19:
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error):
        abort(400, message="the cursor is not one this API gave: use the URL of the previous "
                           "answer's Link: rel=\"next\" header", errors={"query": {
                               "cursor": ["not a cursor this API gave"]}})


def page(session, query, key, args: dict, newest_first: bool = False):
    """One page of ``query`` ordered by ``key`` (an id column) and, when more follow, the
    headers naming the next page."""
    if args.get("cursor"):
        last = decode(args["cursor"])
        query = query.where(key < last if newest_first else key > last)
    query = query.order_by(key.desc() if newest_first else key)
    if args.get("offset"):
        query = query.offset(args["offset"])
    rows = session.scalars(query.limit(args["limit"] + 1)).all()
    if len(rows) <= args["limit"]:
        return rows, {}
    rows = rows[:args["limit"]]
    following = {k: v for k, v in request.args.items(multi=True) if k not in ("cursor", "offset")}
    following["cursor"] = encode(getattr(rows[-1], key.key))
    url = f"{request.base_url}?{urlencode(list(following.items()))}"
    return rows, {"Link": f'<{url}>; rel="next"'}
