"""/api/v1/channels: sales channels, their edit history and subscriptions."""
from __future__ import annotations

import logging

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError
from sqlalchemy import select

from .. import channel_store
from ..db import get_session
from ..models import ChannelChange, SalesChannel, Subscription, SubscriptionEvent
from ..subscriptions import PublicURLMissing, public_base_url, reconcile
from .schemas import (ChannelChangeSchema, ChannelCreateSchema, ChannelPatchSchema, ChannelSchema,
                      SubscriptionReportSchema)

log = logging.getLogger("orderhooks.api")

PREFIX = "/channels"
blp = Blueprint("channels", __name__, description="Sales channels and their settings")


def _adapter(channel_type: str):
    adapter = current_app.extensions["orderhooks.channels"].get(channel_type)
    if adapter is None:
        known = ", ".join(current_app.extensions["orderhooks.channels"].types) or "none"
        abort(422, message=f"unknown channel type {channel_type!r}; installed types: {known}")
    return adapter


def _credentials(adapter, data: dict, partial: bool = False) -> dict:
    if adapter.credentials_schema is None:
        return data
    try:
        return adapter.credentials_schema().load(data, partial=partial)
    except ValidationError as exc:
        abort(422, message="invalid credentials: " + "; ".join(
            f"{k}: {' '.join(v) if isinstance(v, list) else v}"
            for k, v in exc.messages.items()), errors={"credentials": exc.messages})


def _public_base_url() -> str:
    try:
        return public_base_url(current_app.config)
    except PublicURLMissing as exc:
        abort(422, message=str(exc))


def _check_api_base_url(adapter, credentials: dict) -> None:
    """Credentials are sent only to the channel's own API, or where the operator allows
    (ORDERHOOKS_ALLOWED_API_BASE_URLS). The message repeats the URL's origin at most."""
    base = adapter.api_base_url(credentials)
    if base is None:
        return
    try:
        adapter.allowed_api_base_urls.check(base, adapter.own_api_base_urls(credentials))
    except ValueError as exc:
        abort(422, message=f"credentials.api_base_url: {exc}",
              errors={"credentials": {"api_base_url": [str(exc)]}})


def _moved(adapter, current: dict, new: dict) -> list[str]:
    """The destination fields this change really changes (a trailing slash is no change)."""
    def same(a, b):
        return a == b or (isinstance(a, str) and isinstance(b, str)
                          and a.rstrip("/") == b.rstrip("/"))
    return [f for f in adapter.destination_credentials
            if f in new and not same(new[f], current.get(f))]


def _require_resent(adapter, moved: list[str], new: dict) -> None:
    """Moving a channel's API takes its credentials again: the stored ones never follow a new
    destination on the admin token's word alone."""
    missing = [f for f in adapter.sent_credentials if not new.get(f)]
    if moved and missing:
        fields = " and ".join(f"credentials.{f}" for f in missing)
        abort(422, message=f"changing {', '.join(f'credentials.{f}' for f in moved)} changes "
                           f"where the channel's credentials are sent: send {fields} again in "
                           "the same request",
              errors={"credentials": {f: [f"required when {' or '.join(moved)} changes"]
                                      for f in missing}})


def _check_destination(adapter, row_type: str, channel_id: int, wants_hooks: bool) -> None:
    if not wants_hooks:
        return
    url = channel_store.webhook_url(_public_base_url(), row_type, channel_id)
    try:
        adapter.check_destination(url)
    except ValueError as exc:
        abort(422, message=f"ORDERHOOKS_PUBLIC_BASE_URL cannot be used: {exc}")


def _out(session, row: SalesChannel) -> dict:
    subs = session.scalars(select(Subscription).where(Subscription.channel_id == row.id)
                           .order_by(Subscription.topic)).all()
    return {**{c: getattr(row, c) for c in ("id", "type", "name", "active",
                                            "valid_cancellation_statuses",
                                            "valid_fulfillment_statuses", "created_at",
                                            "updated_at")},
            "webhook_url": channel_store.webhook_url(current_app.config["PUBLIC_BASE_URL"],
                                                     row.type, row.id),
            "subscriptions": subs}


def _get(session, channel_id: int) -> SalesChannel:
    row = session.get(SalesChannel, channel_id) if channel_id < 2**62 else None
    if row is None:
        abort(404, message=f"no channel {channel_id}")
    return row


def _after_change(channel_id: int) -> None:
    current_app.extensions["orderhooks.channel_cache"].clear()
    try:
        reconcile(current_app._get_current_object(), channel_id)
    except PublicURLMissing as exc:
        # Only a change that needs no subscription gets here (one that does was refused): the
        # channel's old subscriptions stay until a check runs with the URL set.
        log.warning("subscription.check_skipped", extra={"channel_id": channel_id,
                                                        "detail": str(exc)})


@blp.route("")
class Channels(MethodView):
    @blp.response(200, ChannelSchema(many=True))
    def get(self):
        """List sales channels"""
        session = get_session()
        return [_out(session, r) for r in session.scalars(select(SalesChannel)
                                                          .order_by(SalesChannel.id))]

    @blp.arguments(ChannelCreateSchema)
    @blp.response(201, ChannelSchema)
    def post(self, data):
        """Create a sales channel; subscribes to its webhooks when statuses are selected"""
        adapter = _adapter(data["type"])
        credentials = _credentials(adapter, data["credentials"])
        _check_api_base_url(adapter, credentials)
        session = get_session()
        try:
            row = channel_store.create(session, current_app.extensions["orderhooks.box"],
                                       type=data["type"], name=data["name"],
                                       credentials=credentials, active=data["active"],
                                       valid_cancellation_statuses=data[
                                           "valid_cancellation_statuses"],
                                       valid_fulfillment_statuses=data[
                                           "valid_fulfillment_statuses"])
        except ValueError as exc:
            abort(422, message=str(exc))
        _check_destination(adapter, row.type, row.id, row.active and bool(
            row.valid_cancellation_statuses or row.valid_fulfillment_statuses))
        session.commit()
        _after_change(row.id)
        return _out(session, row)


@blp.route("/<int:channel_id>")
class ChannelById(MethodView):
    @blp.response(200, ChannelSchema)
    def get(self, channel_id):
        """A sales channel (credentials are never returned)"""
        session = get_session()
        return _out(session, _get(session, channel_id))

    @blp.arguments(ChannelPatchSchema)
    @blp.response(200, ChannelSchema)
    def patch(self, data, channel_id):
        """Change name, credentials, status lists or active; every change is recorded"""
        session = get_session()
        row = _get(session, channel_id)
        adapter = _adapter(row.type)
        box = current_app.extensions["orderhooks.box"]
        moved = []
        if "credentials" in data:
            data["credentials"] = new = _credentials(adapter, data["credentials"], partial=True)
            current = box.open(row.credentials_sealed)
            moved = _moved(adapter, current, new)
            _require_resent(adapter, moved, new)
            _check_api_base_url(adapter, {**current, **new})
        try:
            channel_store.update(session, box, row, data, renew_webhook_secret=bool(moved))
        except ValueError as exc:
            abort(422, message=str(exc))
        _check_destination(adapter, row.type, row.id, row.active and bool(
            row.valid_cancellation_statuses or row.valid_fulfillment_statuses))
        session.commit()
        _after_change(row.id)
        return _out(session, row)


@blp.route("/<int:channel_id>/history")
class ChannelHistory(MethodView):
    @blp.response(200, ChannelChangeSchema(many=True))
    def get(self, channel_id):
        """The channel's edit history: what changed, old → new, when"""
        session = get_session()
        _get(session, channel_id)
        return session.scalars(select(ChannelChange).where(ChannelChange.channel_id == channel_id)
                               .order_by(ChannelChange.id)).all()


@blp.route("/<int:channel_id>/subscriptions")
class ChannelSubscriptions(MethodView):
    @blp.response(200, SubscriptionReportSchema)
    def get(self, channel_id):
        """Subscriptions as last checked, and what the checks found and did"""
        session = get_session()
        _get(session, channel_id)
        return _report(session, channel_id)

    @blp.response(200, SubscriptionReportSchema)
    def post(self, channel_id):
        """Check and repair the channel's subscriptions now"""
        session = get_session()
        _get(session, channel_id)
        _public_base_url()
        # End this read transaction first: reconcile writes in its own, and on SQLite every
        # transaction takes the write lock (BEGIN IMMEDIATE), so holding this one would block it.
        session.rollback()
        reconcile(current_app._get_current_object(), channel_id)
        return _report(session, channel_id)


def _report(session, channel_id: int) -> dict:
    return {"subscriptions": session.scalars(select(Subscription).where(
                Subscription.channel_id == channel_id).order_by(Subscription.topic)).all(),
            "events": session.scalars(select(SubscriptionEvent).where(
                SubscriptionEvent.channel_id == channel_id)
                .order_by(SubscriptionEvent.id.desc()).limit(100)).all()}
