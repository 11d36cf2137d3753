"""Retention of what the outbound side writes: delivered and failed webhook messages with their
attempts, events (only once every enabled endpoint took them and no message refers to them),
alert mails — and the feed's answer to a cursor older than what was deleted (410, never a silent
skip). Real receivers on loopback, the real sender, the real purge; rows are aged by moving
their timestamps back."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select, update

from core import events, retention
from core.clock import utcnow
from core.models import Alert, Event, WebhookAttempt, WebhookEndpoint, WebhookMessage, WorkerState
from tests.test_outbound_webhooks import sender  # noqa: F401  (fixture; receiver: tests/conftest.py)

DAYS = {"WEBHOOK_RETENTION_DAYS": 30, "WEBHOOK_FAILED_RETENTION_DAYS": 90,
        "EVENT_RETENTION_DAYS": 30, "ALERT_RETENTION_DAYS": 90, "RETENTION_DAYS": 30}


@pytest.fixture
def app_config(app_config):
    return {**app_config, **DAYS, "ALLOWED_WEBHOOK_URLS": "http://127.0.0.1:*",
            "WEBHOOK_RETRY_SCHEDULE": "0.1", "WEBHOOK_TIMEOUT_SECONDS": 1.0}


def db(app):
    return app.extensions["orderhooks.db"]


def write(app, n=1, order=1) -> list[str]:
    with db(app).session() as session:
        return [events.emit(session, "order.cancelled", {"order": {"id": order + i}},
                            channel_id=1, order_key=f"order:{order + i}").event_id
                for i in range(n)]


def ago(days: float):
    return utcnow() - timedelta(days=days)


def age_events(app, event_ids, days):
    with db(app).session() as session:
        session.execute(update(Event).where(Event.event_id.in_(event_ids))
                        .values(occurred_at=ago(days)))


def age_messages(app, event_ids, days, **values):
    """Messages of these events as if delivered (or last retried) ``days`` ago."""
    with db(app).session() as session:
        ids = select(Event.id).where(Event.event_id.in_(event_ids)).scalar_subquery()
        session.execute(update(WebhookMessage).where(WebhookMessage.event_id.in_(ids)).values(
            next_attempt_at=ago(days), created_at=ago(days), **values))
        if values.get("state", "delivered") == "delivered":
            session.execute(update(WebhookMessage).where(WebhookMessage.event_id.in_(ids))
                            .values(delivered_at=ago(days)))


def messages(app) -> dict[str, str]:
    """event id -> message state."""
    with db(app).Session() as session:
        return dict(session.execute(select(Event.event_id, WebhookMessage.state).join(
            Event, Event.id == WebhookMessage.event_id)).all())


def kept_events(app) -> list[str]:
    with db(app).Session() as session:
        return session.scalars(select(Event.event_id).order_by(Event.position)).all()


def attempts(app) -> int:
    with db(app).Session() as session:
        return session.scalar(select(func.count(WebhookAttempt.id)))


def test_delivered_messages_go_after_their_days_failed_ones_later_pending_ones_never(
        app, admin, receiver, sender):
    created = admin.post("/webhook-endpoints", {"url": receiver.url()})
    old, young, failed_long_ago, failed_lately, pending, resent = (
        write(app, 1, order=n * 10) for n in range(1, 7))
    assert sender.run_until_idle() == 6 and attempts(app) == 6
    age_messages(app, old, 31)
    age_messages(app, young, 29)
    age_messages(app, failed_long_ago, 91, state="failed")
    age_messages(app, failed_lately, 89, state="failed")
    age_messages(app, pending, 400, state="pending")
    age_messages(app, resent, 400, state="failed")
    [message] = [m for m in admin.get(f"/webhook-endpoints/{created['id']}/messages")
                 if m["event_id"] == resent[0]]
    admin.post(f"/webhook-endpoints/{created['id']}/messages/{message['id']}/resend",
               expect=202)
    # the re-sent message is pending again until its receiver answers
    with db(app).session() as session:
        session.execute(update(WebhookMessage).where(WebhookMessage.id == message["id"])
                        .values(next_attempt_at=ago(400)))

    done = retention.purge(db(app), app.config)

    assert (done.messages, done.attempts) == (2, 2)
    left = messages(app)
    assert old[0] not in left and failed_long_ago[0] not in left
    assert left[young[0]] == "delivered" and left[failed_lately[0]] == "failed"
    assert left[pending[0]] == "pending" and left[resent[0]] == "pending"
    assert attempts(app) == 4  # the attempts of the two deleted messages went with them
    listed = {m["event_id"] for m in admin.get(f"/webhook-endpoints/{created['id']}/messages")}
    assert listed == set(left)


def test_events_go_once_every_enabled_endpoint_took_them_and_no_message_refers_to_them(
        app, admin, receiver, sender):
    first = admin.post("/webhook-endpoints", {"url": receiver.url("/a")})
    taken = write(app, 3)
    assert sender.run_until_idle() == 3
    # a second endpoint, created now, starts after these; one behind them holds them back
    behind = admin.post("/webhook-endpoints", {"url": receiver.url("/b")})
    with db(app).session() as session:
        session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == behind["id"])
                        .values(position=1))
    fresh = write(app, 2, order=50)
    events.sequence(db(app))
    age_events(app, taken + fresh[:1], 40)
    age_messages(app, taken, 40)

    retention.purge(db(app), app.config)
    # the "behind" endpoint has not taken events 2..: only event 1 (delivered to the first
    # endpoint long ago, position 1 <= every enabled endpoint's) goes
    assert kept_events(app) == taken[1:] + fresh

    admin.patch(f"/webhook-endpoints/{behind['id']}", {"enabled": False})
    done = retention.purge(db(app), app.config)
    # a disabled endpoint holds nothing back; fresh[0] is old but the first endpoint has not
    # taken it yet (it was never sent): it stays, as does the young newest event
    assert done.events == 2
    assert kept_events(app) == fresh

    sender.run_until_idle()  # the first endpoint takes fresh[0] and fresh[1]
    retention.purge(db(app), app.config)
    assert kept_events(app) == fresh  # delivered messages still refer to them
    age_messages(app, fresh, 40)
    age_events(app, fresh, 40)
    retention.purge(db(app), app.config)
    # the newest event always stays: the feed's positions go on from it
    assert kept_events(app) == fresh[1:]
    assert messages(app) == {}
    write(app)
    events.sequence(db(app))
    with db(app).Session() as session:
        positions = session.scalars(select(Event.position).order_by(Event.position)).all()
    assert positions == [5, 6]
    assert first["id"]  # the first endpoint never lost an event
    assert len(receiver.at("/a")) == 5


def test_an_event_a_failed_message_refers_to_stays_for_its_resend(app, admin, receiver, sender):
    created = admin.post("/webhook-endpoints", {"url": receiver.url("/down")})
    receiver.behave("/down", "500")
    failing = write(app, 1)
    for _ in range(20):
        sender.run_until_idle()
        if messages(app).get(failing[0]) == "failed":
            break
        time.sleep(0.1)
    assert messages(app)[failing[0]] == "failed"
    write(app, 1, order=20)  # newer, so the failing one is not the newest event
    events.sequence(db(app))
    age_events(app, failing, 40)
    retention.purge(db(app), app.config)
    assert failing[0] in kept_events(app)  # its message may still be re-sent
    receiver.behave("/down", "ok")
    [message] = [m for m in admin.get(f"/webhook-endpoints/{created['id']}/messages")
                 if m["event_id"] == failing[0]]
    admin.post(f"/webhook-endpoints/{created['id']}/messages/{message['id']}/resend",
               expect=202)
    sender.run_until_idle()
    assert messages(app)[failing[0]] == "delivered"


def _feed(admin, **query):
    return admin.client.get("/api/v1/events", query_string=query, headers=admin.headers)


def _cursor(response) -> str:
    from urllib.parse import parse_qs, urlsplit
    link = response.headers["Link"]
    return parse_qs(urlsplit(link[1:link.index(">")]).query)["after"][0]


def test_a_feed_cursor_older_than_the_purge_is_410_with_the_oldest_cursor_that_reads_whole(
        app, admin):
    written = write(app, 6)
    first = _feed(admin, limit=2)
    assert [e["id"] for e in first.get_json()] == written[:2]
    stale = _cursor(first)
    age_events(app, written[:4], 40)
    assert retention.purge(db(app), app.config).events == 4

    gone = _feed(admin, after=stale, limit=2)
    assert gone.status_code == 410
    body = gone.get_json()
    assert body["error"] == "cursor_expired" and "retention" in body["message"]
    assert body["details"]["purged_through_position"] == 4
    assert body["details"]["cursor_position"] == 2
    assert "limit=2" in body["details"]["next"]
    again = _feed(admin, after=body["details"]["oldest_cursor"], limit=10)
    assert again.status_code == 200
    assert [e["id"] for e in again.get_json()] == written[4:]
    # without a cursor: from the oldest event kept, never 410
    assert [e["id"] for e in _feed(admin).get_json()] == written[4:]
    # a cursor at or past the purge reads on
    assert _feed(admin, after=events.encode_cursor(4)).status_code == 200
    # long polls check too
    assert _feed(admin, after=stale, wait=0.2).status_code == 410


def test_alert_mails_sent_or_given_up_go_each_channels_newest_summary_stays(app, bc):
    channel = bc.create()

    def alert(kind, status, days, channel_id=channel["id"]):
        with db(app).session() as session:
            row = Alert(kind=kind, channel_id=channel_id, recipients=["ops@example.com"],
                        subject=kind, body="", status=status, attempts=1,
                        next_attempt_at=ago(days), created_at=ago(days))
            session.add(row)
            session.flush()
            return row.id

    old_summary = alert("subscription.check", "sent", 200)
    newest_summary = alert("subscription.check", "sent", 100)
    given_up_summary = alert("subscription.check", "failed", 95)  # not what checks compare with
    dead = alert("deliveries.dead", "sent", 91)
    young = alert("deliveries.dead", "sent", 89)
    failed = alert("endpoint.disabled", "failed", 120, channel_id=None)
    waiting = alert("channel.deactivated", "pending", 300)
    done = retention.purge(db(app), app.config)
    assert done.alerts == 4
    with db(app).Session() as session:
        left = set(session.scalars(select(Alert.id)))
    assert left == {newest_summary, young, waiting}
    assert not {old_summary, given_up_summary, dead, failed} & left


def test_the_purge_command_and_the_worker_both_purge_in_bounded_rounds(app, app_config, admin,
                                                                      receiver, sender, worker):
    admin.post("/webhook-endpoints", {"url": receiver.url()})
    written = write(app, 7)
    sender.run_until_idle()
    age_messages(app, written, 40)
    age_events(app, written, 40)

    # a purge out of time stops after a batch and says so; the next one goes on
    first = retention.purge(db(app), app.config, seconds=0, batch=2)
    assert not first.finished and (first.messages, first.events) == (2, 0)

    worker.housekeeping(force=True)  # due: the worker purges within its round's budget
    assert messages(app) == {} and kept_events(app) == written[-1:]
    with db(app).Session() as session:
        assert session.get(WorkerState, "retention_purged_at") is not None
        assert retention.feed_purged_through(session) == 6

    env = {"ORDERHOOKS_DATABASE_URL": app_config["DATABASE_URL"],
           "ORDERHOOKS_SECRET_KEY": app_config["SECRET_KEY"], "ORDERHOOKS_LOG_LEVEL": "ERROR",
           "ORDERHOOKS_ALERT_RETENTION_DAYS": "10"}
    with db(app).session() as session:
        session.add(Alert(kind="endpoint.disabled", recipients=["a@example.com"], subject="s",
                          body="", status="sent", attempts=1, next_attempt_at=ago(11),
                          created_at=ago(11)))
    from core.cli import main
    result = CliRunner().invoke(main, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "0 webhook messages" in result.output and "1 alert mails" in result.output
    assert "alerts after 10)" in result.output


def test_a_purge_cut_short_goes_on_at_the_next_round_of_the_same_worker(app, admin, worker,
                                                                      monkeypatch):
    """The worker purges at most PURGE_ROUND_SECONDS per round (here: one batch); with more to
    do it goes on ROUND_SECONDS later instead of an hour later, while other workers still wait
    for the hourly lease."""
    from core import housekeeping
    from core.worker import Worker
    monkeypatch.setattr(housekeeping, "PURGE_ROUND_SECONDS", 0.0)
    created = admin.post("/webhook-endpoints", {"url": "https://routing.example.com/hooks"})
    with db(app).session() as session:
        written = [events.emit(session, "order.cancelled", {"n": n}) for n in range(1200)]
        session.flush()
        session.execute(insert(WebhookMessage), [
            {"endpoint_id": created["id"], "event_id": e.id, "state": "delivered",
             "attempts": 1, "next_attempt_at": ago(40), "created_at": ago(40),
             "delivered_at": ago(40)} for e in written])

    def left() -> int:
        with db(app).Session() as session:
            return session.scalar(select(func.count(WebhookMessage.id)))

    def a_while_later():
        with db(app).session() as session:
            session.execute(update(WorkerState).where(WorkerState.key == "retention_purged_at")
                            .values(value=(utcnow() - timedelta(seconds=10)).isoformat()))

    worker.housekeeping(force=True)
    assert left() == 1200 - retention.BATCH
    worker.housekeeping(force=True)  # within ROUND_SECONDS: not yet
    assert left() == 1200 - retention.BATCH
    a_while_later()
    Worker(app, name="another-worker").housekeeping(force=True)  # its lease is hourly
    assert left() == 1200 - retention.BATCH
    worker.housekeeping(force=True)
    assert left() == 1200 - 2 * retention.BATCH
    a_while_later()
    worker.housekeeping(force=True)
    assert left() == 0
