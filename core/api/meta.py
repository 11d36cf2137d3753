"""/api/v1/statuses and /api/v1/plugins."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from .. import statuses
from .schemas import PluginSchema, StatusSchema

PREFIX = ""
blp = Blueprint("meta", __name__, description="Order statuses and installed plugins")


@blp.route("/statuses")
class Statuses(MethodView):
    @blp.response(200, StatusSchema(many=True))
    def get(self):
        """Network Manager order statuses; `selectable` ones may be valid statuses"""
        return [{"value": v, "label": label, "selectable": v in statuses.SELECTABLE}
                for v, label in statuses.STATUSES.items()]


@blp.route("/plugins")
class Plugins(MethodView):
    @blp.response(200, PluginSchema(many=True))
    def get(self):
        """Channel plugins: loaded, failed (with the error) or disabled"""
        return [p.to_dict() for p in current_app.extensions["orderhooks.channel_types"].plugins]
