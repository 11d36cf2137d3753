"""/api/v1/channels: sales channels, their edit history and subscriptions."""
from __future__ import annotations

import logging

from flask import current_app, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError
from sqlalchemy import select

from .. import channel_store
from ..db import get_session
from ..clock import utcnow
from ..models import ChannelChange, SalesChannel, Subscription, SubscriptionEvent
from ..subscriptions import PublicURLMissing, public_base_url, reconcile
from . import paging
from .lookup import get_or_404
from .schemas import (ChannelChangeSchema, ChannelCreateSchema, ChannelPatchSchema, ChannelSchema,
                      SubscriptionReportSchema)

log = logging.getLogger("orderhooks.api")

PREFIX = "/channels"


class SettingsBlueprint(Blueprint):
    """ETags guard a channel's settings against lost updates: an edit sent with ``If-Match``
    of a version that is no longer current gets 412. An edit without ``If-Match`` is taken as
    it is (last writer wins) — what a one-off ``curl`` expects; clients that read, change and
    write back send ``If-Match``."""

    #: What the ETag guards, as a 412 names it.
    noun = "channel"

    def _check_precondition(self):
        return None  # If-Match is optional: no 428

    def _verify_check_etag(self):
        return None

    def check_etag(self, etag_data, etag_schema=None):
        if not request.if_match:
            return
        if self._generate_etag(etag_data) not in request.if_match:
            abort(412, message=f"the {self.noun} changed since you read it (If-Match names an "
                               "older version): GET it again, re-apply your change, and send "
                               "its new ETag")

    def _prepare_etag_doc(self, doc, doc_info, **kwargs):
        doc = super()._prepare_etag_doc(doc, doc_info, **kwargs)
        doc.get("responses", {}).pop(428, None)
        return doc


blp = SettingsBlueprint("channels", __name__, description="Sales channels and their settings")


def _adapter(channel_type: str):
    adapter = current_app.extensions["orderhooks.channel_types"].get(channel_type)
    if adapter is None:
        known = ", ".join(current_app.extensions["orderhooks.channel_types"].types) or "none"
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


def _check_webhooks(adapter, webhooks) -> None:
    """A ticked webhook must be one the channel offers (its plugin maps it to topics)."""
    if webhooks is None or not adapter.webhook_topics:
        return
    unknown = [name for name in webhooks if name not in adapter.webhook_topics]
    if unknown:
        offered = ", ".join(adapter.webhook_topics)
        abort(422, message=f"{adapter.title or adapter.type} channels have no "
                           f"{', '.join(unknown)} webhook; they offer: {offered}",
              errors={"json": {"webhooks": [f"not offered: {', '.join(unknown)}"]}})


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


def _version(row: SalesChannel) -> dict:
    """What a channel's ETag is computed from: its settings and when they last changed (a
    credentials change moves ``updated_at`` too); not its subscriptions, which the periodic
    check updates on its own."""
    return {"id": row.id, "name": row.name, "active": row.active,
            "valid_cancellation_statuses": list(row.valid_cancellation_statuses or ()),
            "valid_fulfillment_statuses": list(row.valid_fulfillment_statuses or ()),
            "alert_emails": list(row.alert_emails or ()),
            "webhooks": list(row.webhooks) if row.webhooks is not None else None,
            "import_test_orders": bool(row.import_test_orders),
            "refund_restock_actions": bool(row.refund_restock_actions),
            "updated_at": row.updated_at.isoformat() if row.updated_at else None}


def _out(session, row: SalesChannel) -> dict:
    subs = session.scalars(select(Subscription).where(Subscription.channel_id == row.id)
                           .order_by(Subscription.topic)).all()
    return {**{c: getattr(row, c) for c in ("id", "type", "name", "active",
                                            "valid_cancellation_statuses",
                                            "valid_fulfillment_statuses", "alert_emails",
                                            "webhooks", "import_test_orders",
                                            "refund_restock_actions", "created_at",
                                            "updated_at", "deleted_at")},
            "enabled_webhooks": list(channel_store.enabled_webhooks(row)),
            "webhook_url": channel_store.webhook_url(current_app.config["PUBLIC_BASE_URL"],
                                                     row.type, row.id),
            "subscriptions": subs}


def _get(session, channel_id: int, deleted: bool = False) -> SalesChannel:
    """The channel, or 404. ``deleted``: a deleted channel is found too (its histories)."""
    row = get_or_404(session, SalesChannel, channel_id, "channel")
    if row.deleted_at is not None and not deleted:
        abort(404, message=f"channel {channel_id} was deleted at "
                           f"{row.deleted_at.isoformat(timespec='seconds')}Z; its history, "
                           f"orders and deliveries stay readable")
    return row


def _locked(session, channel_id: int) -> SalesChannel:
    """The channel, its row locked for this transaction (PostgreSQL; SQLite's write
    transactions are serialised anyway), so an If-Match check and the write it guards see
    the same version."""
    row = _get(session, channel_id)
    session.refresh(row, with_for_update=True)
    return _get(session, channel_id)


def _save(session, adapter, row: SalesChannel) -> None:
    """Commit a created or edited channel — once its webhook URL is known to be usable when it
    wants hooks — and bring its subscriptions in line."""
    _check_destination(adapter, row.type, row.id, row.active and bool(
        channel_store.enabled_webhooks(row)))
    session.commit()
    _after_change(row.id)


def _after_change(channel_id: int) -> None:
    current_app.extensions["orderhooks.channel_cache"].clear()
    try:
        reconcile(current_app._get_current_object(), channel_id)
    except PublicURLMissing as exc:
        # Only a change that needs no subscription gets here (one that does was refused): the
        # channel's old subscriptions stay until a check runs with the URL set.
        log.warning("subscription.check_skipped", extra={"channel_id": channel_id,
                                                        "detail": str(exc)})


LOCATION = {"Location": {"description": "The new channel's URL",
                         "schema": {"type": "string"}}}


@blp.route("")
class Channels(MethodView):
    @blp.arguments(paging.PageQuerySchema, location="query")
    @blp.response(200, ChannelSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args):
        """List sales channels, oldest first (deleted ones are not listed)"""
        session = get_session()
        rows, headers = paging.page(session, select(SalesChannel).where(
            SalesChannel.deleted_at.is_(None)), SalesChannel.id, args)
        return [_out(session, r) for r in rows], headers

    @blp.arguments(ChannelCreateSchema)
    @blp.response(201, ChannelSchema, headers=LOCATION)
    def post(self, data):
        """Create a sales channel; subscribes to the webhooks it uses (`enabled_webhooks`)"""
        adapter = _adapter(data["type"])
        credentials = _credentials(adapter, data["credentials"])
        _check_api_base_url(adapter, credentials)
        _check_webhooks(adapter, data["webhooks"])
        session = get_session()
        try:
            row = channel_store.create(session, current_app.extensions["orderhooks.box"],
                                       type=data["type"], name=data["name"],
                                       credentials=credentials, active=data["active"],
                                       valid_cancellation_statuses=data[
                                           "valid_cancellation_statuses"],
                                       valid_fulfillment_statuses=data[
                                           "valid_fulfillment_statuses"],
                                       alert_emails=data["alert_emails"],
                                       webhooks=data["webhooks"],
                                       import_test_orders=data["import_test_orders"],
                                       refund_restock_actions=data["refund_restock_actions"])
        except ValueError as exc:
            abort(422, message=str(exc))
        _save(session, adapter, row)
        return _out(session, row), {"Location": url_for("channels.ChannelById",
                                                        channel_id=row.id)}


@blp.route("/<int:channel_id>")
@blp.etag
class ChannelById(MethodView):
    @blp.response(200, ChannelSchema)
    def get(self, channel_id):
        """A sales channel (credentials are never returned); its ETag guards edits"""
        session = get_session()
        row = _get(session, channel_id)
        blp.set_etag(_version(row))
        return _out(session, row)

    @blp.arguments(ChannelPatchSchema)
    @blp.response(200, ChannelSchema)
    def patch(self, data, channel_id):
        """Change name, credentials, status lists, webhooks, import_test_orders,
        refund_restock_actions or active;
        every change is recorded, and the subscriptions follow the webhooks used.
        With `If-Match: <ETag of GET>` the change is made only if nobody changed the channel
        since (412 otherwise); without If-Match it is made as it is."""
        session = get_session()
        row = _locked(session, channel_id)
        blp.check_etag(_version(row))
        adapter = _adapter(row.type)
        _check_webhooks(adapter, data.get("webhooks"))
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
        _save(session, adapter, row)
        blp.set_etag(_version(row))
        return _out(session, row)

    @blp.response(200, ChannelSchema)
    def delete(self, channel_id):
        """Delete a channel. Its webhooks are unsubscribed at the channel, best effort: the
        answer's `subscriptions` lists any that could not be removed (with `last_error`), and
        the periodic check keeps trying. The channel is kept as deleted: gone from the list,
        no longer editable, its webhook URL answers 404 and its leftover deliveries are ignored
        by the worker — while its orders, deliveries, edit history and subscription events stay
        readable, so "why did order 250 cancel?" keeps its answer. `If-Match` is honoured as
        for PATCH."""
        session = get_session()
        row = _locked(session, channel_id)
        blp.check_etag(_version(row))
        channel_store.update(session, current_app.extensions["orderhooks.box"], row,
                             {"active": False})
        row.deleted_at = utcnow()
        session.add(ChannelChange(channel_id=row.id, field="deleted", old_value=None,
                                  new_value={"name": row.name, "type": row.type}))
        session.commit()
        _after_change(row.id)
        session.expire_all()
        return _out(session, _get(session, channel_id, deleted=True))


@blp.route("/<int:channel_id>/history")
class ChannelHistory(MethodView):
    @blp.arguments(paging.PageQuerySchema, location="query")
    @blp.response(200, ChannelChangeSchema(many=True), headers=paging.LINK_HEADER)
    def get(self, args, channel_id):
        """The channel's edit history, oldest first: what changed, old → new, when (a deleted
        channel's too)"""
        session = get_session()
        _get(session, channel_id, deleted=True)
        return paging.page(session, select(ChannelChange).where(
            ChannelChange.channel_id == channel_id), ChannelChange.id, args)


@blp.route("/<int:channel_id>/subscriptions")
class ChannelSubscriptions(MethodView):
    @blp.response(200, SubscriptionReportSchema)
    def get(self, channel_id):
        """Subscriptions as last checked, and what the checks found and did (a deleted
        channel's too)"""
        session = get_session()
        _get(session, channel_id, deleted=True)
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
