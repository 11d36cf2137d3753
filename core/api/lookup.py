"""Finding the resource a path names, or answering 404 with what was missing."""
from __future__ import annotations

from flask_smorest import abort


def get_or_404(session, model, row_id: int, noun: str):
    """The ``model`` row with id ``row_id``, or a 404 naming the ``noun``. Path ids have at most
    18 digits (the ``int`` converter in core/api/__init__.py), so every one fits the key."""
    row = session.get(model, row_id)
    if row is None:
        abort(404, message=f"no {noun} {row_id}")
    return row
