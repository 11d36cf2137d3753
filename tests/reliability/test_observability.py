"""Observability for the bad day: /metrics in Prometheus format adding up every
gunicorn worker and worker process, with its metrics; structured JSON logs with
stable event names and the delivery id."""
from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from .live import SECRET_HEADER, db_engine, delivery_body, metric_sum, wait_for, wait_processed

#: Every event name the service may log (the contract operators build alerts on).
EVENTS = {
    "intake.stored", "intake.duplicate", "intake.unauthenticated", "intake.unreadable",
    "intake.database_unavailable", "worker.started", "worker.stopped", "worker.processed",
    "worker.failed", "worker.dead", "worker.error", "worker.apply_failed",
    "subscription.created", "subscription.ok", "subscription.reactivated",
    "subscription.recreated", "subscription.deleted", "subscription.failed",
    "subscription.check_failed", "retention.purged", "plugin.loaded", "plugin.failed",
    "plugin.disabled", "plugin.unknown_hook", "config.secret_key_generated",
    "config.secret_key_file_not_private",
    "readyz.database_unavailable", "http.database_unavailable", "http.unexpected_error",
    "metrics.lag_unavailable", "gunicorn.error", "gunicorn.access",
    "wakeup.unavailable", "sender.started", "sender.stopped",
    "sender.error", "sender.endpoint_error", "sender.endpoint_disabled",
}


def test_metrics_add_up_across_processes_and_logs_are_json(stack, database_url):
    stack.start_standin(default_status=5)
    stack.start_web(workers=3)
    channel = stack.create_channel("observed")
    for n in range(40):
        stack.create_order(channel["id"], n)
    session = requests.Session()
    ids = []
    for n in range(40):
        answer = stack.post_delivery(channel, delivery_body("observed", n)[0], session=session)
        ids.append(answer.json()["delivery_id"])
    for n in range(10):  # duplicates
        stack.post_delivery(channel, delivery_body("observed", n)[0], session=session)
    for n in range(5):  # strangers
        session.post(f"{stack.web_url}/webhooks/bigcommerce/{channel['id']}", data=b"{}",
                     headers={SECRET_HEADER: "guess"}, timeout=10)
    for n in range(3):
        session.post(f"{stack.web_url}/webhooks/bigcommerce/4242", data=b"{}", timeout=10)
    for n in range(2):
        session.post(f"{stack.web_url}/webhooks/bigcommerce/{channel['id']}",
                     data=b"x" * (2 * 2**20), headers={SECRET_HEADER: channel["secret"]},
                     timeout=10)

    # No worker yet: the lag is the age of the oldest waiting delivery, read at scrape time.
    time.sleep(1.2)
    assert metric_sum(stack.metrics(), "orderhooks_worker_lag_seconds") >= 1.0

    worker = stack.start_worker()
    engine = db_engine(database_url)
    assert wait_processed(engine, 40, timeout=60) == 40
    engine.dispose()
    wait_for(lambda: metric_sum(stack.metrics(), "orderhooks_delivery_outcomes_total",
                                outcome="applied") == 40, 30, what="the outcome counters")

    # Several scrapes land on different gunicorn workers: every one adds up every process.
    for _ in range(6):
        text = stack.metrics()
        names = {f.name for f in text_string_to_metric_families(text)}  # it parses
        assert {"orderhooks_deliveries_received", "orderhooks_deliveries_rejected",
                "orderhooks_delivery_outcomes", "orderhooks_worker_lag_seconds",
                "orderhooks_channel_api_calls", "orderhooks_subscription_actions",
                "orderhooks_delivery_processing_seconds"} <= names, names
        got = {
            "stored": metric_sum(text, "orderhooks_deliveries_received_total", result="stored"),
            "duplicate": metric_sum(text, "orderhooks_deliveries_received_total",
                                    result="duplicate"),
            "unauthenticated": metric_sum(text, "orderhooks_deliveries_rejected_total",
                                          reason="unauthenticated"),
            "unknown": metric_sum(text, "orderhooks_deliveries_rejected_total",
                                  reason="unknown_channel"),
            "too_large": metric_sum(text, "orderhooks_deliveries_rejected_total",
                                    reason="too_large"),
            "applied": metric_sum(text, "orderhooks_delivery_outcomes_total",
                                  outcome="applied"),
        }
        assert got == {"stored": 40, "duplicate": 10, "unauthenticated": 5, "unknown": 3,
                       "too_large": 2, "applied": 40}, got
        assert metric_sum(text, "orderhooks_channel_api_calls_total",
                          channel_type="bigcommerce") >= 40
        assert metric_sum(text, "orderhooks_subscription_actions_total",
                          action="created") >= 1
        assert metric_sum(text, "orderhooks_worker_lag_seconds") == 0  # caught up
    files = {p.name for p in stack.metrics_dir.glob("*.db")}
    assert len({f.rsplit("_", 1)[-1] for f in files}) >= 3  # gunicorn workers + the worker

    # Logs: one JSON object per line, known event names, delivery ids that match.
    worker.stop()
    stack.web.stop()
    stored, processed = set(), set()
    for proc in (stack.web, worker):
        lines = [line for line in proc.log_lines() if line.strip()]
        entries = proc.json_logs()
        assert lines and len(entries) == len(lines), [line for line in lines
                                                      if not line.startswith("{")][:5]
        for entry in entries:
            assert {"time", "level", "logger", "event"} <= set(entry), entry
            assert entry["event"] in EVENTS, entry["event"]
            if entry["event"] == "intake.stored":
                stored.add(entry["delivery_id"])
            if entry["event"] == "worker.processed":
                processed.add(entry["delivery_id"])
                assert entry["outcome"] == "applied"
            if entry["event"] in ("intake.unauthenticated", "intake.duplicate"):
                assert entry["channel_id"] == channel["id"]
    assert stored == processed == set(ids)
