"""/api/v1/alerts: the alert mails — what was queued, to whom, and whether it went out."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..db import get_session
from ..models import Alert
from . import paging
from .lookup import get_or_404
from .schemas import AlertQuerySchema, AlertSchema

PREFIX = "/alerts"
blp = Blueprint("alerts", __name__, description="Alert mails: what was mailed, to whom, when, "
                                                "and why one was not (docs/alerts.md)")


@blp.route("")
class Alerts(MethodView):
    @blp.arguments(AlertQuerySchema, location="query")
    @blp.response(200, AlertSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Alerts, newest first; filter by channel, kind and status (pending, sending, sent,
        failed: given up, with last_error)"""
        query = select(Alert)
        if args.get("channel_id") is not None:
            query = query.where(Alert.channel_id == args["channel_id"])
        if args.get("kind"):
            query = query.where(Alert.kind == args["kind"])
        if args.get("status"):
            query = query.where(Alert.status == args["status"])
        return paging.page(get_session(), query, Alert.id, args, newest_first=True)


@blp.route("/<int:alert_id>")
class AlertById(MethodView):
    @blp.response(200, AlertSchema)
    def get(self, alert_id):
        """One alert: its recipients, subject, body, attempts and last error"""
        return get_or_404(get_session(), Alert, alert_id, "alert")
