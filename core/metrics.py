"""Prometheus metrics (prometheus-client). With several gunicorn workers, set
``PROMETHEUS_MULTIPROC_DIR`` (``orderhooks serve`` and ``orderhooks web`` do) so ``/metrics``
adds up every process."""
from __future__ import annotations

import os
import threading

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

DELIVERIES = Counter("orderhooks_deliveries_received_total",
                     "Webhook deliveries received, by channel type and result "
                     "(stored, duplicate)", ["channel_type", "result"])
REJECTED = Counter("orderhooks_deliveries_rejected_total",
                   "Webhook deliveries refused, by channel type and reason",
                   ["channel_type", "reason"])
OUTCOMES = Counter("orderhooks_delivery_outcomes_total",
                   "Outcomes recorded by workers", ["channel_type", "outcome"])
API_CALLS = Counter("orderhooks_channel_api_calls_total",
                    "Calls to channel APIs, by channel type and HTTP status (or error)",
                    ["channel_type", "status"])
SUBSCRIPTION_ACTIONS = Counter("orderhooks_subscription_actions_total",
                               "Subscription check actions (created, reactivated, recreated, "
                               "deleted, failed)", ["channel_type", "action"])
ALERTS = Counter("orderhooks_alerts_total", "Alert mails tried, by kind and result (sent; "
                 "failed: to be retried; given_up)", ["kind", "result"])
# "mostrecent": with several processes (gunicorn workers computing it at scrape time, worker
# processes in their housekeeping) the newest reading wins; a dead process's old value does not.
LAG = Gauge("orderhooks_worker_lag_seconds",
            "Age of the oldest delivery waiting to be processed", multiprocess_mode="mostrecent")
PROCESS_SECONDS = Histogram("orderhooks_delivery_processing_seconds",
                            "Time to process one delivery", ["channel_type"])
COMMIT_BATCH = Histogram("orderhooks_intake_commit_batch_size",
                         "Deliveries stored per intake transaction (group commit: one commit "
                         "for every delivery a process's threads had waiting)",
                         buckets=(1, 2, 4, 8, 16, 32, 64))

# Outbound webhooks. The endpoint label is the endpoint's id (never its URL, which may carry a
# token in its path): endpoints are created by an operator, so the series stay few.
WEBHOOK_ATTEMPTS = Counter("orderhooks_webhook_attempts_total",
                           "Outbound webhook POSTs, by endpoint id and result (2xx, 3xx, 4xx, "
                           "5xx; timeout: no answer in time; error: refused, reset, TLS, proxy)",
                           ["endpoint", "result"])
WEBHOOK_ATTEMPT_SECONDS = Histogram("orderhooks_webhook_attempt_seconds",
                                    "Time an endpoint took to answer a POST (or to fail)",
                                    ["endpoint"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1,
                                                           2.5, 5, 10, 30))
WEBHOOK_DELIVERY_SECONDS = Histogram("orderhooks_webhook_delivery_seconds",
                                     "From an event's writing to its delivery (a 2xx) at an "
                                     "endpoint, waits and retries included", ["endpoint"],
                                     buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60,
                                              300, 1800, 7200, 86400))
# Read from the database at each scrape (like the lag): right whichever process sends.
WEBHOOK_MESSAGES = Gauge("orderhooks_webhook_messages",
                         "Outbound webhook messages of an enabled or disabled endpoint by state: "
                         "pending (to send, or waiting for a retry), failed (retries used up, "
                         "waiting to be re-sent)", ["endpoint", "state"],
                         multiprocess_mode="mostrecent")
WEBHOOK_OLDEST = Gauge("orderhooks_webhook_oldest_pending_seconds",
                       "Age of an endpoint's oldest pending message (0: none): grows while the "
                       "endpoint fails or falls behind", ["endpoint"],
                       multiprocess_mode="mostrecent")


# The labelled children are kept (``labels`` takes a lock each time). Their channel_type is an
# installed adapter's type, or "unknown" for any other name a URL gives (the intake's rule): a
# label value taken from outside would be a new time series per name sent, a size /metrics and
# every scrape carry for ever. Reasons and results are the intake's own words; so both dicts
# stay small.
_received: dict[tuple[str, str], object] = {}
_rejected: dict[tuple[str, str], object] = {}


def received(channel_type: str, result: str) -> None:
    child = _received.get((channel_type, result))
    if child is None:
        child = _received[(channel_type, result)] = DELIVERIES.labels(channel_type, result)
    child.inc()


def rejected(channel_type: str, reason: str) -> None:
    child = _rejected.get((channel_type, reason))
    if child is None:
        child = _rejected[(channel_type, reason)] = REJECTED.labels(channel_type, reason)
    child.inc()


_attempts: dict[tuple[str, str], object] = {}
_attempt_seconds: dict[str, object] = {}
_delivery_seconds: dict[str, object] = {}


def webhook_attempt(endpoint: str, result: str, seconds: float, written_at=None) -> None:
    """One outbound POST: its result and how long it took; ``written_at`` (naive UTC) when it
    delivered its event."""
    child = _attempts.get((endpoint, result))
    if child is None:
        child = _attempts[(endpoint, result)] = WEBHOOK_ATTEMPTS.labels(endpoint, result)
    child.inc()
    timing = _attempt_seconds.get(endpoint)
    if timing is None:
        timing = _attempt_seconds[endpoint] = WEBHOOK_ATTEMPT_SECONDS.labels(endpoint)
    timing.observe(seconds)
    if written_at is not None:
        from .clock import utcnow
        delivered = _delivery_seconds.get(endpoint)
        if delivered is None:
            delivered = _delivery_seconds[endpoint] = WEBHOOK_DELIVERY_SECONDS.labels(endpoint)
        delivered.observe(max(0.0, (utcnow() - written_at).total_seconds()))


def api_call(channel_type: str, status) -> None:
    API_CALLS.labels(channel_type, str(status)).inc()


def update_lag(db) -> None:
    """Read the worker lag from the inbox: the age of the oldest delivery that is due and not
    processed yet (0 when none is). Called at every scrape, so the gauge is current even when no
    worker runs — which is exactly when it matters."""
    from sqlalchemy import func, select

    from .clock import utcnow
    from .models import StoredDelivery, SalesChannel
    from .outcomes import DeliveryState
    now = utcnow()
    with db.Session() as session:
        # channel_id IN / state IN / next_attempt_at <=: ranges of ix_deliveries_claim, so the
        # scrape reads the waiting rows only, never the processed history.
        oldest = session.scalar(select(func.min(StoredDelivery.received_at)).where(
            StoredDelivery.channel_id.in_(select(SalesChannel.id)),
            StoredDelivery.state.in_((DeliveryState.PENDING, DeliveryState.PROCESSING)),
            StoredDelivery.next_attempt_at <= now))
    LAG.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def update_webhooks(db) -> None:
    """Read each endpoint's pending and failed messages and the age of its oldest pending one
    (ix_webhook_messages_pending: a range per endpoint and state, never the delivered
    history). Called at every scrape."""
    from sqlalchemy import func, select

    from .clock import utcnow
    from .models import WebhookEndpoint, WebhookMessage
    now = utcnow()
    with db.Session() as session:
        ids = session.scalars(select(WebhookEndpoint.id)).all()
        readings = []
        for endpoint_id in ids:
            counts = {state: session.scalar(select(func.count()).where(
                WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.state == state))
                for state in ("pending", "failed")}
            oldest = session.scalar(select(WebhookMessage.created_at).where(
                WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.state == "pending")
                .order_by(WebhookMessage.id).limit(1))
            readings.append((str(endpoint_id), counts, oldest))
    shown = {label for label, _, _ in readings}
    with _webhook_lock:  # scrapes may run side by side (a web process's threads)
        for label in _webhook_labels - shown:  # a deleted endpoint reads 0, not its last value
            readings.append((label, {"pending": 0, "failed": 0}, None))
        for label, counts, oldest in readings:
            for state, count in counts.items():
                WEBHOOK_MESSAGES.labels(label, state).set(count)
            WEBHOOK_OLDEST.labels(label).set(
                max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        _webhook_labels.clear()
        _webhook_labels.update(shown)


_webhook_labels: set[str] = set()
_webhook_lock = threading.Lock()


def _registry():
    """Every process's metrics when they share ``PROMETHEUS_MULTIPROC_DIR``, else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY
    return REGISTRY


def render() -> tuple[bytes, str]:
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def serve(address: str) -> None:
    """Serve /metrics on ``HOST:PORT`` from a thread of this process (a standalone worker's:
    its counters are not in any web process's /metrics unless they share the directory)."""
    from prometheus_client import start_http_server
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=_registry())
