"""Retention: raw delivery bodies (customers' personal data) older than
ORDERHOOKS_RETENTION_DAYS are dropped — by ``orderhooks deliveries purge`` and by the worker on a
timer — while the outcome metadata stays."""
from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from core.clock import utcnow
from core.models import StoredDelivery, WorkerState
from core.worker import Worker

KEPT = ("outcome", "reason", "intents", "dedupe_key", "topic", "channel_order_id",
        "received_at", "processed_at", "state", "headers")


def _rows(app) -> dict[int, StoredDelivery]:
    with app.extensions["orderhooks.db"].Session() as session:
        return {r.id: r for r in session.query(StoredDelivery).all()}


def _age(app, ids, days) -> None:
    with app.extensions["orderhooks.db"].session() as session:
        session.execute(update(StoredDelivery).where(StoredDelivery.id.in_(ids)).values(
            received_at=utcnow() - timedelta(days=days)))


def _deliveries(bc, make_order, worker, app):
    """Three processed deliveries aged 40, 20 and 0 days, and one unprocessed, 40 days old."""
    channel = bc.create()
    ids = []
    for n in range(3):
        make_order(channel["id"], 800 + n)
        bc.order(800 + n, status_id=5)
        ids.append(bc.send(order_id=800 + n).get_json()["delivery_id"])
    worker.run_until_idle()
    waiting = bc.send(order_id=899).get_json()["delivery_id"]  # never processed
    _age(app, [ids[0], waiting], 40)
    _age(app, [ids[1]], 20)
    return ids, waiting


def test_purge_command_drops_old_bodies_and_keeps_outcomes(bc, make_order, worker, app,
                                                            app_config, admin):
    (old, middle, new), waiting = _deliveries(bc, make_order, worker, app)
    before = _rows(app)
    env = {"ORDERHOOKS_DATABASE_URL": app_config["DATABASE_URL"],
           "ORDERHOOKS_SECRET_KEY": app_config["SECRET_KEY"], "ORDERHOOKS_RETENTION_DAYS": "30",
           "ORDERHOOKS_LOG_LEVEL": "ERROR"}
    from core.cli import main
    result = CliRunner().invoke(main, ["deliveries", "purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "purged 1 delivery bodies older than 30 days" in result.output
    after = _rows(app)
    assert after[old].body is None and after[old].body_purged_at is not None
    for name in KEPT:
        assert getattr(after[old], name) == getattr(before[old], name), name
    assert after[old].outcome == "applied"
    assert after[middle].body == before[middle].body and after[new].body is not None
    assert after[waiting].body is not None  # not processed yet: its body is still needed

    result = CliRunner().invoke(main, ["deliveries", "purge", "--days", "10"], env=env)
    assert "purged 1 delivery bodies older than 10 days" in result.output
    assert _rows(app)[middle].body is None and _rows(app)[new].body is not None

    detail = admin.get(f"/deliveries/{old}")
    assert detail["body"] is None and detail["body_purged_at"] and detail["outcome"] == "applied"
    # replaying a purged delivery is safe: nothing to read, nothing changes
    admin.post(f"/deliveries/{old}/replay", expect=202)
    worker.run_until_idle()
    replayed = admin.get(f"/deliveries/{old}")
    assert replayed["outcome"] == "ignored" and "purged" in replayed["reason"]


def test_the_worker_purges_on_a_timer(bc, make_order, worker, app):
    app.config["RETENTION_DAYS"] = 30
    (old, middle, new), waiting = _deliveries(bc, make_order, worker, app)
    worker.housekeeping(force=True)  # first round: due
    assert _rows(app)[old].body is None and _rows(app)[middle].body is not None

    _age(app, [middle], 45)
    other = Worker(app, name="another-worker")
    other.housekeeping(force=True)  # within the hour: not due again, for any worker
    assert _rows(app)[middle].body is not None

    with app.extensions["orderhooks.db"].session() as session:  # an hour later
        session.execute(update(WorkerState).where(WorkerState.key == "retention_purged_at")
                        .values(value=(utcnow() - timedelta(hours=2)).isoformat()))
    other.housekeeping(force=True)
    rows = _rows(app)
    assert rows[middle].body is None and rows[middle].outcome == "applied"
    assert rows[new].body is not None and rows[waiting].body is not None
