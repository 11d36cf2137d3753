"""/api/v1/webhook-endpoints: where events are POSTed, their messages and every attempt."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import select, update

from .. import endpoints, events
from ..clock import utcnow
from ..db import get_db, get_session
from ..models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage
from . import paging
from .channels import SettingsBlueprint
from .lookup import get_or_404
from .schemas import (AttemptQuerySchema, AttemptSchema, EndpointCreatedSchema,
                      EndpointCreateSchema, EndpointPatchSchema, EndpointSchema,
                      MessageQuerySchema, MessageSchema, RecoverResultSchema, RecoverSchema,
                      RotatedSecretSchema, RotateSecretSchema)

PREFIX = "/webhook-endpoints"
blp = SettingsBlueprint("webhook_endpoints", __name__,
                        description="Outbound webhooks: endpoints, messages, attempts")

LOCATION = {"Location": {"description": "The new endpoint's URL", "schema": {"type": "string"}}}


def _get(session, endpoint_id: int) -> WebhookEndpoint:
    return get_or_404(session, WebhookEndpoint, endpoint_id, "webhook endpoint")


def _url(url: str) -> str:
    try:
        return endpoints.check_url(url, current_app.config["ALLOWED_WEBHOOK_URLS"])
    except ValueError as exc:
        abort(422, message=str(exc), errors={"json": {"url": [str(exc)]}})


def _version(row: WebhookEndpoint) -> dict:
    """What an endpoint's ETag is computed from: its settings, not what the sender keeps on it
    (its place in the feed, its lease, since when it fails), which change on their own."""
    return {"id": row.id, "url": row.url, "description": row.description,
            "event_types": list(row.event_types or ()), "channel_ids": list(row.channel_ids or ()),
            "enabled": row.enabled}


def _message_out(message: WebhookMessage, event: Event) -> dict:
    return {**{c.key: getattr(message, c.key) for c in WebhookMessage.__table__.columns},
            "event_id": event.event_id, "event_type": event.type}


@blp.route("")
class Endpoints(MethodView):
    @blp.arguments(paging.PageQuerySchema, location="query")
    @blp.response(200, EndpointSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """Outbound webhook endpoints, oldest first (secrets are never listed)"""
        return paging.page(get_session(), select(WebhookEndpoint), WebhookEndpoint.id, args)

    @blp.arguments(EndpointCreateSchema)
    @blp.response(201, EndpointCreatedSchema, headers=LOCATION)
    def post(self, data):
        """Create an endpoint. It receives the events written from now on; the answer holds
        its signing secret, shown this once (rotate it to get a new one)"""
        data["url"] = _url(data["url"])
        # Events committed before now are numbered first: the endpoint starts after them.
        events.sequence(get_db())
        session = get_session()
        row, secret = endpoints.create(session, current_app.extensions["orderhooks.box"],
                                       **data)
        session.commit()
        return {**_plain(row), "secret": secret}, {
            "Location": url_for("webhook_endpoints.EndpointById", endpoint_id=row.id)}


def _plain(row: WebhookEndpoint) -> dict:
    return {c.key: getattr(row, c.key) for c in WebhookEndpoint.__table__.columns}


@blp.route("/<int:endpoint_id>")
@blp.etag
class EndpointById(MethodView):
    @blp.response(200, EndpointSchema)
    def get(self, endpoint_id):
        """An endpoint; its ETag guards edits"""
        row = _get(get_session(), endpoint_id)
        blp.set_etag(_version(row))
        return row

    @blp.arguments(EndpointPatchSchema)
    @blp.response(200, EndpointSchema)
    def patch(self, data, endpoint_id):
        """Change URL, description, event types, channels or enabled (enabling a disabled
        endpoint resumes it where it stopped). `If-Match` is honoured as for channels"""
        session = get_session()
        row = _get(session, endpoint_id)
        session.refresh(row, with_for_update=True)
        blp.check_etag(_version(row))
        if "url" in data:
            data["url"] = _url(data["url"])
        endpoints.update(row, data)
        session.commit()
        blp.set_etag(_version(row))
        return row

    @blp.response(204)
    def delete(self, endpoint_id):
        """Delete an endpoint with its messages and attempts; nothing more is sent to it"""
        session = get_session()
        row = _get(session, endpoint_id)
        blp.check_etag(_version(row))
        endpoints.delete(session, row)
        session.commit()


@blp.route("/<int:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @blp.arguments(RotateSecretSchema)
    @blp.response(200, RotatedSecretSchema)
    def post(self, data, endpoint_id):
        """A new signing secret, shown this once. The current one keeps signing (a second
        signature in webhook-signature) for `overlap_seconds`, so the receiver can switch
        without refusing an event"""
        session = get_session()
        row = _get(session, endpoint_id)
        secret = endpoints.rotate(row, current_app.extensions["orderhooks.box"],
                                  data["overlap_seconds"])
        session.commit()
        return {"secret": secret, "previous_secret_until": row.previous_secret_until}


@blp.route("/<int:endpoint_id>/messages")
class Messages(MethodView):
    @blp.arguments(MessageQuerySchema, location="query")
    @blp.response(200, MessageSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args, endpoint_id):
        """The endpoint's messages (one per event sent to it), newest first"""
        session = get_session()
        _get(session, endpoint_id)
        query = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
        if args.get("state"):
            query = query.where(WebhookMessage.state == args["state"])
        rows, headers = paging.page(session, query, WebhookMessage.id, args, newest_first=True)
        found = {e.id: e for e in session.scalars(select(Event).where(
            Event.id.in_([m.event_id for m in rows])))}
        return [_message_out(m, found[m.event_id]) for m in rows], headers


@blp.route("/<int:endpoint_id>/messages/<int:message_id>/resend")
class Resend(MethodView):
    @blp.response(202, MessageSchema)
    def post(self, endpoint_id, message_id):
        """Send a message again now (delivered or failed alike), with a fresh retry schedule"""
        session = get_session()
        _get(session, endpoint_id)
        message = session.get(WebhookMessage, message_id)
        if message is None or message.endpoint_id != endpoint_id:
            abort(404, message=f"no message {message_id} of webhook endpoint {endpoint_id}")
        message.state, message.attempts, message.next_attempt_at = "pending", 0, utcnow()
        session.commit()
        return _message_out(message, session.get(Event, message.event_id))


@blp.route("/<int:endpoint_id>/recover")
class Recover(MethodView):
    @blp.arguments(RecoverSchema)
    @blp.response(202, RecoverResultSchema)
    def post(self, data, endpoint_id):
        """Send again every failed message made in a time window (`until` defaults to now),
        oldest first, each with a fresh retry schedule"""
        session = get_session()
        _get(session, endpoint_id)
        until = data["until"] or utcnow()
        if until < data["since"]:
            abort(422, message="'until' is before 'since'",
                  errors={"json": {"until": ["before 'since'"]}})
        done = session.execute(update(WebhookMessage).where(
            WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.state == "failed",
            WebhookMessage.created_at >= data["since"], WebhookMessage.created_at <= until)
            .values(state="pending", attempts=0, next_attempt_at=utcnow()))
        session.commit()
        return {"resent": done.rowcount}


@blp.route("/<int:endpoint_id>/attempts")
class Attempts(MethodView):
    @blp.arguments(AttemptQuerySchema, location="query")
    @blp.response(200, AttemptSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args, endpoint_id):
        """Every attempt to send to the endpoint, newest first: status, latency, the start of
        the answer or the error"""
        session = get_session()
        _get(session, endpoint_id)
        query = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
        if args.get("message_id"):
            query = query.where(WebhookAttempt.message_id == args["message_id"])
        return paging.page(session, query, WebhookAttempt.id, args, newest_first=True)
