"""Prometheus metrics (prometheus-client). With several gunicorn workers, set
``PROMETHEUS_MULTIPROC_DIR`` (``orderhooks serve`` and ``orderhooks web`` do) so ``/metrics``
adds up every process."""
from __future__ import annotations

import os

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
