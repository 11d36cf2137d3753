"""/api/v1/rmas: the RMAs channel refunds opened; a person sets unset line actions and moves
an RMA on (open -> received -> closed, or open -> cancelled). Its ETag guards both edits."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import select

from .. import rmas
from ..db import get_session
from ..models import Rma
from . import paging
from .channels import SettingsBlueprint
from .lookup import get_or_404
from .schemas import (RmaDetailSchema, RmaLinePatchSchema, RmaPatchSchema, RmaQuerySchema,
                      RmaSchema)

PREFIX = "/rmas"


class RmaBlueprint(SettingsBlueprint):
    noun = "RMA"


blp = RmaBlueprint("rmas", __name__, description="RMAs opened by channel refunds")


def _version(rma: Rma) -> dict:
    return {"id": rma.id, "status": rma.status,
            "actions": [[line.id, line.action] for line in rma.lines]}


def _locked(session, rma_id: int) -> Rma:
    rma = get_or_404(session, Rma, rma_id, "RMA")
    session.refresh(rma, with_for_update=True)
    return rma


def _detail(rma: Rma) -> dict:
    return {**{c.key: getattr(rma, c.key) for c in Rma.__table__.columns},
            "lines": rma.lines, "history": rma.history}


@blp.route("")
class Rmas(MethodView):
    @blp.arguments(RmaQuerySchema, location="query")
    @blp.response(200, RmaSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Find RMAs by channel, order and status, oldest first"""
        query = select(Rma)
        for name in ("channel_id", "order_id", "status"):
            if args.get(name) is not None:
                query = query.where(getattr(Rma, name) == args[name])
        return paging.page(get_session(), query, Rma.id, args)


@blp.route("/<int:rma_id>")
@blp.etag
class RmaById(MethodView):
    @blp.response(200, RmaDetailSchema)
    def get(self, rma_id):
        """An RMA with its lines and history; its ETag guards edits"""
        rma = get_or_404(get_session(), Rma, rma_id, "RMA")
        blp.set_etag(_version(rma))
        return _detail(rma)

    @blp.arguments(RmaPatchSchema)
    @blp.response(200, RmaDetailSchema)
    def patch(self, data, rma_id):
        """Move the RMA on: open -> received -> closed (every line's action set first), or
        open -> cancelled. `If-Match` is honoured as for channels (412 when stale)."""
        session = get_session()
        rma = _locked(session, rma_id)
        blp.check_etag(_version(rma))
        try:
            rmas.move(session, rma, data["status"])
        except rmas.RmaRefused as exc:
            abort(422, message=str(exc), errors={"json": {"status": [str(exc)]}})
        session.commit()
        blp.set_etag(_version(rma))
        return _detail(rma)


@blp.route("/<int:rma_id>/lines/<int:line_id>")
@blp.etag
class RmaLineById(MethodView):
    @blp.arguments(RmaLinePatchSchema)
    @blp.response(200, RmaDetailSchema)
    def patch(self, data, rma_id, line_id):
        """Set a line's action (Reinsert / Write Off) while the RMA is open or received.
        `If-Match` takes the RMA's ETag."""
        session = get_session()
        rma = _locked(session, rma_id)
        blp.check_etag(_version(rma))
        try:
            rmas.set_line_action(session, rma, line_id, data["action"])
        except LookupError as exc:
            abort(404, message=str(exc.args[0]))
        except rmas.RmaRefused as exc:
            abort(422, message=str(exc), errors={"json": {"action": [str(exc)]}})
        session.commit()
        blp.set_etag(_version(rma))
        return _detail(rma)
